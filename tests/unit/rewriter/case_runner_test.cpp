// Data-driven rewriter tests, like DuckDB's sqllogictest: every case lives in
// tests/unit/rewriter/cases/*.test; a new case is a new entry in a file. The
// format is described in cases/README.md.
#include <pg_query.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "dpgate/rewriter/rewriter.h"
#include "fixtures.h"

namespace dpgate::rewriter {
namespace {

struct Expectation {
  int statement = 0;
  std::string key;
  std::string value;
  int line = 0;
};

struct Case {
  std::string file;
  int line = 0;
  std::string name;
  std::string sql;
  std::vector<std::string> search_path = {"$user", "public"};
  std::string user = "alice";
  std::string unique;  // schema facts (fixtures.h ParseFacts); none by default
  std::string types;
  std::vector<Expectation> expectations;
};

std::string Trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  const auto end = text.find_last_not_of(" \t\r");
  return text.substr(begin, end - begin + 1);
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) out.push_back(Trim(item));
  return out;
}

const std::vector<std::string>& Keys() {
  static const std::vector<std::string> keys = {
      "sql",          "search_path", "user",        "statements",    "class",
      "sqlstate",     "reason",      "rewritten",   "not_rewritten", "partition",
      "column",       "sensitivity", "sql_columns", "having",        "order",
      "limit",        "offset",      "command",     "value",         "search_path_after",
      "size_catalog", "relations",   "dataset",     "public_keys",   "unique",
      "types",        "shape",       "shape_reason"};
  return keys;
}

// Parses "key: value" or "[i] key: value"; returns false for SQL continuation lines.
bool ParseKeyLine(const std::string& line, Expectation* out) {
  std::string rest = line;
  int statement = 0;
  if (!rest.empty() && rest[0] == '[') {
    const auto close = rest.find(']');
    if (close == std::string::npos) return false;
    statement = std::stoi(rest.substr(1, close - 1));
    rest = Trim(rest.substr(close + 1));
  }
  const auto colon = rest.find(':');
  if (colon == std::string::npos) return false;
  const std::string key = rest.substr(0, colon);
  const auto& keys = Keys();
  if (std::find(keys.begin(), keys.end(), key) == keys.end()) return false;
  out->statement = statement;
  out->key = key;
  out->value = Trim(rest.substr(colon + 1));
  return true;
}

std::vector<Case> LoadCases(const std::filesystem::path& file) {
  std::vector<Case> cases;
  std::ifstream in(file);
  std::string line;
  int number = 0;
  bool in_sql = false;
  while (std::getline(in, line)) {
    ++number;
    if (line.rfind("===", 0) == 0) {
      Case c;
      c.file = file.filename().string();
      c.line = number;
      c.name = Trim(line.substr(3));
      cases.push_back(c);
      in_sql = false;
      continue;
    }
    if (cases.empty() || line.rfind("#", 0) == 0) continue;
    Case& c = cases.back();
    Expectation e;
    if (ParseKeyLine(line, &e)) {
      e.line = number;
      in_sql = false;
      if (e.key == "sql") {
        c.sql = e.value;
        in_sql = true;
      } else if (e.key == "search_path") {
        c.search_path = SplitList(e.value);
      } else if (e.key == "user") {
        c.user = e.value;
      } else if (e.key == "unique") {
        c.unique = e.value;
      } else if (e.key == "types") {
        c.types = e.value;
      } else {
        c.expectations.push_back(e);
      }
      continue;
    }
    if (in_sql) {
      c.sql += "\n" + line;
    } else if (!Trim(line).empty()) {
      FAIL(c.file << ":" << number << ": unrecognised line: " << line);
    }
  }
  for (auto& c : cases) {
    // Escapes for bytes a text file cannot hold conveniently.
    std::string sql;
    for (size_t i = 0; i < c.sql.size(); ++i) {
      if (c.sql.compare(i, 4, "\\x00") == 0) {
        sql += '\0';
        i += 3;
      } else {
        sql += c.sql[i];
      }
    }
    c.sql = Trim(sql);
  }
  return cases;
}

bool Parses(const std::string& sql) {
  PgQueryProtobufParseResult result = pg_query_parse_protobuf(sql.c_str());
  const bool ok = result.error == nullptr;
  pg_query_free_protobuf_parse_result(result);
  return ok;
}

void CheckExpectation(const Case& c, const std::vector<StatementResult>& results,
                      const Expectation& e) {
  INFO(c.file << ":" << e.line << " (" << e.key << ": " << e.value << ")");
  if (e.key == "statements") {
    CHECK(results.size() == static_cast<size_t>(std::stoi(e.value)));
    return;
  }
  REQUIRE(static_cast<size_t>(e.statement) < results.size());
  const StatementResult& r = results[e.statement];
  INFO("class: " << ToString(r.statement_class) << "\nreason: " << r.reason.code << " "
                 << r.reason.message << "\nrewritten: " << r.rewritten_sql);
  if (e.key == "class") {
    CHECK(std::string(ToString(r.statement_class)) == e.value);
  } else if (e.key == "sqlstate") {
    CHECK(r.reason.code == e.value);
  } else if (e.key == "reason") {
    CHECK(r.reason.message.find(e.value) != std::string::npos);
  } else if (e.key == "rewritten") {
    CHECK(r.rewritten_sql.find(e.value) != std::string::npos);
  } else if (e.key == "not_rewritten") {
    CHECK(r.rewritten_sql.find(e.value) == std::string::npos);
  } else if (e.key == "command") {
    CHECK(std::string(ToString(r.command)) == e.value);
  } else if (e.key == "value") {
    REQUIRE(r.command_value.has_value());
    CHECK(*r.command_value == Approx(std::stod(e.value)));
  } else if (e.key == "search_path_after") {
    REQUIRE(r.new_search_path.has_value());
    CHECK(*r.new_search_path == SplitList(e.value));
  } else if (e.key == "size_catalog") {
    CHECK(r.reads_size_catalog == (e.value == "true"));
  } else if (e.key == "relations") {
    CHECK(r.relations == SplitList(e.value));
  } else if (e.key == "dataset") {
    CHECK(r.dataset == e.value);
  } else {
    REQUIRE(r.plan.has_value());
    const ReleasePlan& plan = *r.plan;
    INFO("plan: " << ToJson(plan));
    std::stringstream words(e.value);
    if (e.key == "partition") {
      CHECK(std::string(ToString(plan.partition_selection.kind)) == e.value);
    } else if (e.key == "shape") {
      CHECK(std::string(ToString(plan.shape)) == e.value);
    } else if (e.key == "shape_reason") {
      CHECK(plan.shape_reason.find(e.value) != std::string::npos);
    } else if (e.key == "public_keys") {
      std::vector<std::string> flat;
      for (const auto& keys : plan.partition_selection.public_keys) {
        for (const auto& key : keys) flat.push_back(key);
      }
      CHECK(flat == SplitList(e.value));
    } else if (e.key == "sql_columns") {
      CHECK(plan.sql_columns == SplitList(e.value));
    } else if (e.key == "column") {  // index name role [lower upper]
      size_t index = 0;
      std::string name, role;
      words >> index >> name >> role;
      REQUIRE(index < plan.columns.size());
      CHECK(plan.columns[index].name == name);
      CHECK(std::string(ToString(plan.columns[index].role)) == role);
      double lower = 0, upper = 0;
      if (words >> lower >> upper) {
        REQUIRE(plan.columns[index].lower.has_value());
        CHECK(*plan.columns[index].lower == Approx(lower));
        CHECK(*plan.columns[index].upper == Approx(upper));
      }
    } else if (e.key == "sensitivity") {  // column input kind per_group l1 l2
      size_t column = 0, input = 0;
      std::string kind;
      double per_group = 0, l1 = 0, l2 = 0;
      words >> column >> input >> kind >> per_group >> l1 >> l2;
      REQUIRE(column < plan.columns.size());
      REQUIRE(input < plan.columns[column].inputs.size());
      const auto& q = plan.columns[column].inputs[input];
      CHECK(q.kind == kind);
      CHECK(q.sensitivity.per_group == Approx(per_group));
      CHECK(q.sensitivity.L1() == Approx(l1));
      CHECK(q.sensitivity.L2() == Approx(l2));
      REQUIRE(q.sql_column >= 0);
      REQUIRE(static_cast<size_t>(q.sql_column) < plan.sql_columns.size());
    } else if (e.key == "having") {
      CHECK(plan.having.has_value() == (e.value != "none"));
    } else if (e.key == "order") {  // column asc|desc
      size_t index = 0;
      std::string direction;
      words >> index >> direction;
      bool found = false;
      for (const auto& key : plan.order_by) {
        if (static_cast<size_t>(key.output_column) == index &&
            key.descending == (direction == "desc"))
          found = true;
      }
      CHECK(found);
    } else if (e.key == "limit") {
      REQUIRE(plan.limit.has_value());
      CHECK(*plan.limit == std::stoll(e.value));
    } else if (e.key == "offset") {
      REQUIRE(plan.offset.has_value());
      CHECK(*plan.offset == std::stoll(e.value));
    }
  }
}

// Checks that hold for every case, whatever it expects.
void CheckInvariants(const Case& c, const std::vector<StatementResult>& results,
                     const config::Config& config) {
  INFO(c.file << ":" << c.line << " " << c.name);
  bool has_reason = false;
  for (const auto& e : c.expectations) has_reason = has_reason || e.key == "reason";
  for (const auto& r : results) {
    INFO("statement: " << r.original_sql << "\nrewritten: " << r.rewritten_sql);
    if (r.statement_class == StatementClass::kRefused) {
      // Every refusal says why, and every case that expects one checks the words.
      CHECK(!r.reason.code.empty());
      CHECK(r.reason.message.size() > 20);
      CHECK(r.rewritten_sql.empty());
      CHECK(!r.plan.has_value());
      CHECK(has_reason);
      continue;
    }
    if (!r.rewritten_sql.empty()) CHECK(Parses(r.rewritten_sql));
    for (const auto& relation : r.relations) {
      // Every relation is schema-qualified in what goes upstream.
      if (!r.rewritten_sql.empty()) CHECK(r.rewritten_sql.find(relation) != std::string::npos);
    }
    if (r.statement_class == StatementClass::kPrivateAggregate ||
        (r.statement_class == StatementClass::kDpgateCommand && r.plan)) {
      REQUIRE(r.plan.has_value());
      const auto& plan = *r.plan;
      CHECK(r.rewritten_sql.find(plan.privacy_unit + " IS NOT NULL") != std::string::npos);
      CHECK(r.rewritten_sql.find("dp_units") != std::string::npos);
      CHECK(plan.sql_columns.back() == "dp_units");
      const auto table = config.FindTable(plan.table.substr(0, plan.table.find('.')),
                                          plan.table.substr(plan.table.find('.') + 1));
      REQUIRE(table.has_value());
      // k and c of the query: the largest over every private table it joins
      // (docs/REWRITER.md §5.5), computed here from the config.
      int64_t config_k = table->table->max_groups_contributed;
      int64_t config_c = table->table->max_rows_per_group;
      for (const auto& joined : plan.joined_tables) {
        const auto other = config.FindTable(joined.substr(0, joined.find('.')),
                                            joined.substr(joined.find('.') + 1));
        REQUIRE(other.has_value());
        REQUIRE(other->dataset == table->dataset);
        config_k = std::max<int64_t>(config_k, other->table->max_groups_contributed);
        config_c = std::max<int64_t>(config_c, other->table->max_rows_per_group);
      }
      const std::string c_text = "LEAST(";
      for (const auto& column : plan.columns) {
        for (const auto& input : column.inputs) {
          CHECK(input.sensitivity.per_group > 0);
          CHECK(input.sql_column >= 0);
        }
        if (column.lower) {
          // The clamp constants from the config are in the SQL.
          CHECK(r.rewritten_sql.find(c_text) != std::string::npos);
          // A joined private table's column has its own bounds (§5.5).
          const std::string source = column.source_table.empty() ? plan.table : column.source_table;
          const auto source_table = config.FindTable(source.substr(0, source.find('.')),
                                                     source.substr(source.find('.') + 1));
          REQUIRE(source_table.has_value());
          const auto* spec = source_table->table->FindColumn(column.source_column);
          REQUIRE(spec != nullptr);
          CHECK(*column.lower == *spec->lower);
          std::ostringstream hi;
          hi << *spec->upper;
          CHECK(r.rewritten_sql.find(hi.str()) != std::string::npos);
        }
      }
      // The shape (docs/REWRITER.md §8, §8.4, §8.5): row_number() and its
      // filter exactly in the bounded shape, which a global aggregate never
      // needs; per-unit pre-aggregation in every shape but per_row, whose
      // sensitivities use k = c = 1.
      const bool bounded = plan.shape == PlanShape::kPerUnitBounded;
      CHECK(!plan.shape_reason.empty());
      CHECK((r.rewritten_sql.find("row_number() OVER (PARTITION BY dp_unit ORDER BY "
                                  "pg_catalog.random())") != std::string::npos) == bounded);
      CHECK((r.rewritten_sql.find("dp_rank <= " + std::to_string(config_k)) != std::string::npos) ==
            bounded);
      if (bounded) CHECK(plan.partition_selection.kind != PartitionSelection::Kind::kNone);
      const bool per_row = plan.shape == PlanShape::kPerRow;
      CHECK((r.rewritten_sql.find("dp_per_unit") == std::string::npos) == per_row);
      if (per_row) {
        CHECK(plan.max_groups_contributed == 1);
        CHECK(plan.max_rows_per_group == 1);
        CHECK(plan.partition_selection.max_groups_contributed == 1);
        for (const auto& column : plan.columns) {
          for (const auto& input : column.inputs) CHECK(input.sensitivity.max_groups == 1);
        }
      } else {
        CHECK(plan.max_groups_contributed == config_k);
        CHECK(plan.max_rows_per_group == config_c);
      }
    }
  }
}

}  // namespace

TEST_CASE("rewriter case files", "[rewriter]") {
  const auto directory = std::filesystem::path(__FILE__).parent_path() / "cases";
  const config::Config config = testing::MakeTestConfig();
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    if (entry.path().extension() == ".test") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  REQUIRE(!files.empty());
  size_t total = 0;
  for (const auto& file : files) {
    for (const auto& c : LoadCases(file)) {
      ++total;
      INFO(c.file << ":" << c.line << " case: " << c.name << "\nsql: " << c.sql);
      SessionContext session;
      session.search_path = c.search_path;
      session.user = c.user;
      const SchemaFacts facts = testing::ParseFacts(c.unique, c.types);
      auto results = Classify(c.sql, config, session, facts);
      REQUIRE(results.ok());
      CheckInvariants(c, *results, config);
      for (const auto& e : c.expectations) CheckExpectation(c, *results, e);
    }
  }
  CHECK(total >= 60);
}

}  // namespace dpgate::rewriter
