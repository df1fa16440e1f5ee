// The cheaper shapes of issue 4 item 7 (docs/REWRITER.md §8.4, §8.5), run on
// a real PostgreSQL 15 without noise:
// - per_row: with a unique unit, the per-row query returns exactly what the
//   full per-unit bounded shape returns (same clamps), and removing any one
//   unit moves at most one group, by at most the plan's (k = c = 1)
//   sensitivity;
// - per_unit_no_row_number: when the declared keys allow at most k groups,
//   leaving row_number() out changes nothing, and a heavy unit still moves at
//   most k groups by at most c rows each;
// - the catalog loader behind `dpgate rewrite --upstream` (and serve) turns
//   exactly the right indexes into facts.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <vector>

#include "dpgate/rewriter/rewriter.h"
#include "test_pg.h"

namespace dpgate::rewriter {
namespace {

using Catch::Matchers::Contains;
using dpgate::testing::TestPg;

constexpr double kLower = -5;
constexpr double kUpper = 10;

config::TableSpec PrivateTable(const std::string& name, std::vector<std::string> kind_values) {
  config::TableSpec table;
  table.schema = "shape";
  table.name = name;
  table.privacy_unit = "uid";
  table.max_groups_contributed = 3;
  table.max_rows_per_group = 2;
  table.columns.push_back({"amount", kLower, kUpper, {}});
  table.columns.push_back({"kind", std::nullopt, std::nullopt, std::move(kind_values)});
  return table;
}

// shape.people (unique unit) and shape.visits (many rows per unit), private;
// shape.regions public. `visit_kinds` are the declared keys of visits.kind.
config::Config MakeShapeConfig(std::vector<std::string> visit_kinds) {
  config::Config config;
  config::Dataset dataset;
  dataset.name = "shape";
  dataset.tables.push_back(PrivateTable("people", {"0", "1", "2", "3", "4"}));
  dataset.tables.push_back(PrivateTable("visits", std::move(visit_kinds)));
  config::TableSpec regions;
  regions.schema = "shape";
  regions.name = "regions";
  regions.is_public = true;
  dataset.tables.push_back(regions);
  config.datasets.push_back(dataset);
  return config;
}

// What app/schema_facts_loader.cpp reads from the schema LoadShapeData makes.
SchemaFacts ShapeFacts() {
  SchemaFacts facts;
  facts.AddUniqueNotNull("shape.people", "uid");
  facts.AddUniqueNotNull("shape.regions", "code");
  facts.SetColumnType("shape.people", "region", "character");
  facts.SetColumnType("shape.regions", "code", "character");
  return facts;
}

// 3,000 people, one row each: amounts from -50 to 150 against bounds
// [-5, 10] (so the clamp bites) and some NULL; regions 1..5 of which 1..4
// exist in `regions`, which also has a region 9 that no one lives in.
// visits: 300 small units (one or two rows in one to three kinds, and rows of
// the undeclared kind 5), and unit 0 with 3,000 rows in kinds 0, 1, 2.
void LoadShapeData(const TestPg& pg, const std::string& db) {
  dpgate::testing::ExecSql(pg, db, R"(
    CREATE SCHEMA shape;
    CREATE TABLE shape.people (uid int PRIMARY KEY, grp text, kind int,
                               amount double precision, region char(2));
    INSERT INTO shape.people
      SELECT u, 'g' || (u % 10), u % 5,
             CASE WHEN u % 11 = 0 THEN NULL ELSE (u * 37) % 201 - 50 END,
             ((u % 5) + 1)::text
      FROM generate_series(1, 3000) AS u;
    CREATE TABLE shape.regions (code char(2) PRIMARY KEY, name text, zone text);
    INSERT INTO shape.regions VALUES ('1', 'one', 'a'), ('2', 'two', 'a'), ('3', 'three', 'b'),
                                     ('4', 'four', 'b'), ('9', 'nine', 'c');
    CREATE TABLE shape.visits (uid int, kind int, amount double precision);
    INSERT INTO shape.visits
      SELECT u, (u + j) % 3, ((u * 3 + j) % 40) - 15
      FROM generate_series(1, 300) AS u, generate_series(0, 2) AS j, generate_series(1, 2) AS r
      WHERE j <= u % 3 AND r <= 1 + (u + j) % 2;
    INSERT INTO shape.visits SELECT u, 5, 1 FROM generate_series(1, 300, 7) AS u;
    INSERT INTO shape.visits SELECT 0, g % 3, 100 FROM generate_series(1, 3000) AS g;
    ANALYZE;
  )");
}

StatementResult Rewrite(const std::string& sql, const config::Config& config,
                        const SchemaFacts& facts) {
  SessionContext session;
  session.user = "alice";
  auto results = Classify(sql, config, session, facts);
  REQUIRE(results.ok());
  REQUIRE(results->size() == 1);
  const StatementResult& result = results->front();
  INFO(sql << "\n-> " << result.reason.message);
  REQUIRE(result.statement_class == StatementClass::kPrivateAggregate);
  REQUIRE(result.plan.has_value());
  return result;
}

// One result row per group: the group key (first key column as text, or ""
// for a global aggregate) -> the plan's quantities by kind, in column order.
using Quantities = std::vector<std::pair<std::string, double>>;
using Groups = std::map<std::string, Quantities>;

Groups ReadGroups(pqxx::transaction_base& tx, const StatementResult& result) {
  const ReleasePlan& plan = *result.plan;
  const pqxx::result rows = tx.exec(result.rewritten_sql);
  REQUIRE(rows.columns() == static_cast<pqxx::row::size_type>(plan.sql_columns.size()));
  int key_column = -1;
  for (const auto& column : plan.columns) {
    if (column.role == ColumnRole::kGroupKey && key_column < 0)
      key_column = column.group_key_sql_column;
  }
  Groups out;
  for (const auto& row : rows) {
    std::string key;
    if (key_column >= 0) key = row[key_column].is_null() ? "<null>" : row[key_column].c_str();
    REQUIRE(out.count(key) == 0);
    Quantities values;
    for (const auto& column : plan.columns) {
      for (const auto& input : column.inputs) {
        // NULL (an empty global sum) is 0 to the proxy (docs/REWRITER.md §8.2).
        const auto field = row[input.sql_column];
        values.emplace_back(column.name + "." + input.kind,
                            field.is_null() ? 0.0 : field.as<double>());
      }
    }
    out[key] = values;
  }
  return out;
}

void CheckSameGroups(const Groups& got, const Groups& expected) {
  REQUIRE(got.size() == expected.size());
  for (const auto& [key, values] : expected) {
    INFO("group " << key);
    REQUIRE(got.count(key) == 1);
    const auto& other = got.at(key);
    REQUIRE(other.size() == values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      INFO(values[i].first);
      CHECK(other[i].first == values[i].first);
      CHECK(other[i].second == Approx(values[i].second).margin(1e-6).epsilon(1e-12));
    }
  }
}

const std::vector<std::string> kPerRowQueries = {
    "SELECT grp, count(*), count(amount), sum(amount), avg(amount), variance(amount), "
    "count(DISTINCT uid) FROM shape.people GROUP BY grp",
    "SELECT count(*), sum(amount), stddev(amount) FROM shape.people WHERE kind > 1",
    "SELECT kind, count(*), sum(amount) FROM shape.people GROUP BY kind",
    "SELECT r.name, count(*), sum(p.amount) FROM shape.people p "
    "JOIN shape.regions r ON r.code = p.region GROUP BY r.name",
    "SELECT r.zone, count(*), avg(p.amount) FROM shape.people p "
    "LEFT JOIN shape.regions r ON p.region = r.code AND r.zone <> 'c' GROUP BY r.zone",
    "SELECT count(*), sum(p.amount), count(DISTINCT uid) FROM shape.people p "
    "RIGHT JOIN shape.regions r ON r.code = p.region",
    "SELECT count(*), sum(amount) FROM shape.people WHERE grp = 'none'",
};

TEST_CASE("shapes: with a unique unit, per_row equals the per-unit bounded shape") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_shape_eq");
  LoadShapeData(pg, db);
  const config::Config config = MakeShapeConfig({"0", "1", "2"});
  pqxx::connection connection(pg.Dsn(db));
  pqxx::work tx(connection);
  tx.exec("SET LOCAL search_path = pg_catalog");  // as the proxy runs it
  for (const auto& sql : kPerRowQueries) {
    INFO(sql);
    const StatementResult full = Rewrite(sql, config, SchemaFacts());
    const StatementResult per_row = Rewrite(sql, config, ShapeFacts());
    REQUIRE(full.plan->shape != PlanShape::kPerRow);
    REQUIRE(per_row.plan->shape == PlanShape::kPerRow);
    INFO("full: " << full.rewritten_sql << "\nper row: " << per_row.rewritten_sql);
    CheckSameGroups(ReadGroups(tx, per_row), ReadGroups(tx, full));
  }
  // Not vacuous: the clamp bites (raw sums differ from the clamped ones), and
  // the outer joins have rows without a unit, which neither shape counts.
  const auto raw = tx.exec1("SELECT sum(amount) FROM shape.people")[0].as<double>();
  const auto clamped =
      ReadGroups(tx, Rewrite("SELECT sum(amount) FROM shape.people", config, ShapeFacts()));
  CHECK(std::abs(raw - clamped.at("").front().second) > 1000);
  CHECK(tx.exec1("SELECT count(*) FROM shape.people p RIGHT JOIN shape.regions r "
                 "ON r.code = p.region WHERE p.uid IS NULL")[0]
            .as<int>() == 1);
}

TEST_CASE("shapes: per_row moves one group by at most its k = c = 1 sensitivity per unit") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_shape_bound");
  LoadShapeData(pg, db);
  const config::Config config = MakeShapeConfig({"0", "1", "2"});
  pqxx::connection connection(pg.Dsn(db));
  for (const auto& sql : {kPerRowQueries[0], kPerRowQueries[3]}) {
    INFO(sql);
    const StatementResult result = Rewrite(sql, config, ShapeFacts());
    const ReleasePlan& plan = *result.plan;
    REQUIRE(plan.shape == PlanShape::kPerRow);
    REQUIRE(plan.max_groups_contributed == 1);
    REQUIRE(plan.max_rows_per_group == 1);
    REQUIRE(plan.partition_selection.max_groups_contributed == 1);
    std::vector<double> delta;  // per quantity, in ReadGroups order
    for (const auto& column : plan.columns) {
      for (const auto& input : column.inputs) {
        REQUIRE(input.sensitivity.max_groups == 1);
        delta.push_back(input.sensitivity.per_group);
      }
    }
    Groups base;
    {
      pqxx::work tx(connection);
      base = ReadGroups(tx, result);
    }
    int exact_moves = 0;
    // Units with an amount above the bound, below it, NULL, and in a region
    // without a row in `regions` (which the inner join drops).
    for (int uid : {1, 2, 4, 5, 11, 22, 37, 50, 64, 99, 100, 101, 1234, 2999, 3000}) {
      INFO("without unit " << uid);
      pqxx::work tx(connection);
      tx.exec("DELETE FROM shape.people WHERE uid = " + std::to_string(uid));
      const Groups without = ReadGroups(tx, result);
      tx.abort();
      int moved = 0;
      for (const auto& [key, values] : base) {
        const auto it = without.find(key);
        bool changed = false;
        for (size_t i = 0; i < values.size(); ++i) {
          const double after = it == without.end() ? 0.0 : it->second[i].second;
          const double change = std::abs(values[i].second - after);
          CHECK(change <= delta[i] + 1e-9);
          if (change > 1e-9) changed = true;
          if (std::abs(change - delta[i]) < 1e-9) ++exact_moves;
        }
        if (changed) ++moved;
      }
      CHECK(moved <= 1);  // k = 1: one unit is one row in one group
      for (const auto& [key, values] : without) CHECK(base.count(key) == 1);
    }
    CHECK(exact_moves > 0);  // the bound is reached, so the check is not loose
  }
}

TEST_CASE("shapes: without row_number() a heavy unit still reaches at most k groups") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_shape_norank");
  LoadShapeData(pg, db);
  const std::string sql =
      "SELECT kind, count(*), sum(amount), count(DISTINCT uid) "
      "FROM shape.visits GROUP BY kind";
  // Three declared kinds and k = 3: no row_number(). The same query with two
  // more declared kinds that hold no rows needs it, and must agree.
  const config::Config declared3 = MakeShapeConfig({"0", "1", "2"});
  const config::Config declared5 = MakeShapeConfig({"0", "1", "2", "8", "9"});
  const StatementResult cheap = Rewrite(sql, declared3, ShapeFacts());
  const StatementResult full = Rewrite(sql, declared5, ShapeFacts());
  REQUIRE(cheap.plan->shape == PlanShape::kPerUnitNoRowNumber);
  REQUIRE(full.plan->shape == PlanShape::kPerUnitBounded);
  REQUIRE(cheap.rewritten_sql.find("row_number") == std::string::npos);
  // The configured k and c stay in the sensitivities.
  REQUIRE(cheap.plan->columns[1].inputs[0].sensitivity.per_group == 2);
  REQUIRE(cheap.plan->columns[1].inputs[0].sensitivity.max_groups == 3);
  pqxx::connection connection(pg.Dsn(db));
  pqxx::work tx(connection);
  const Groups with = ReadGroups(tx, cheap);
  CheckSameGroups(with, ReadGroups(tx, full));
  REQUIRE(with.size() == 3);  // the undeclared kind 5 is filtered in SQL
  tx.exec("DELETE FROM shape.visits WHERE uid = 0");
  const Groups without = ReadGroups(tx, cheap);
  CheckSameGroups(without, ReadGroups(tx, full));
  int moved = 0;
  for (const auto& [key, values] : with) {
    const auto& base = without.at(key);
    // count by c = 2, sum by c·hi = 20 (its 1,000 rows of 100 per kind),
    // units by 1.
    CHECK(values[0].second - base[0].second == 2);
    CHECK(values[1].second - base[1].second == Approx(2 * kUpper));
    CHECK(values[2].second - base[2].second == 1);
    ++moved;
  }
  CHECK(moved <= 3);
}

// ---- the loader, through `dpgate rewrite --upstream` --------------------------

struct LoaderDb {
  TestPg pg = dpgate::testing::RequireTestPg();
  std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_shape_facts");
  std::filesystem::path dir;

  LoaderDb() {
    LoadShapeData(pg, db);
    // Each table's `uid` is declared unique in some way; only `pk`, `unique_nn`,
    // `incl` and `part` make it unique and NOT NULL for every row FROM reads.
    dpgate::testing::ExecSql(pg, db, R"(
      CREATE TABLE shape.pk (uid int PRIMARY KEY, amount float8);
      CREATE TABLE shape.unique_nn (uid int NOT NULL UNIQUE, amount float8);
      CREATE TABLE shape.nopk (uid int, amount float8);
      CREATE TABLE shape.nullable (uid int UNIQUE, amount float8);
      CREATE TABLE shape.partial (uid int NOT NULL, amount float8);
      CREATE UNIQUE INDEX ON shape.partial (uid) WHERE amount > 0;
      CREATE TABLE shape.parent (uid int PRIMARY KEY, amount float8);
      CREATE TABLE shape.child () INHERITS (shape.parent);
      CREATE TABLE shape.deferred (uid int NOT NULL UNIQUE DEFERRABLE INITIALLY DEFERRED,
                                   amount float8);
      CREATE TABLE shape.expr (uid int NOT NULL, amount float8);
      CREATE UNIQUE INDEX ON shape.expr ((uid + 0));
      CREATE TABLE shape.multi (uid int NOT NULL, amount float8 NOT NULL, UNIQUE (uid, amount));
      CREATE TABLE shape.incl (uid int NOT NULL, amount float8);
      CREATE UNIQUE INDEX ON shape.incl (uid) INCLUDE (amount);
      CREATE TABLE shape.part (uid int PRIMARY KEY, amount float8) PARTITION BY RANGE (uid);
      CREATE TABLE shape.part1 PARTITION OF shape.part FOR VALUES FROM (0) TO (1000);
      CREATE TABLE shape.opclass (uid text NOT NULL, amount float8);
      CREATE UNIQUE INDEX ON shape.opclass (uid text_pattern_ops);
      CREATE TABLE shape.collated (uid text NOT NULL, amount float8);
      CREATE UNIQUE INDEX ON shape.collated (uid COLLATE "C");
      CREATE TABLE shape.invalid (uid int NOT NULL, amount float8);
      INSERT INTO shape.invalid VALUES (1, 1), (1, 2);
    )");
    // A unique index that failed to build stays behind, invalid.
    try {
      dpgate::testing::ExecSql(pg, db, "CREATE UNIQUE INDEX CONCURRENTLY ON shape.invalid (uid)");
    } catch (const std::exception&) {
    }
    std::string pattern =
        (std::filesystem::temp_directory_path() / "dpgate-shape-test.XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    dir = pattern;
  }
  ~LoaderDb() { std::filesystem::remove_all(dir); }

  static std::vector<std::string> Tables() {
    return {"pk",    "unique_nn", "nopk", "nullable", "partial",  "parent",  "deferred", "expr",
            "multi", "incl",      "part", "opclass",  "collated", "invalid", "people"};
  }

  std::string WriteConfig(const std::string& dsn) const {
    std::string tables;
    for (const auto& table : Tables()) {
      tables += "      - name: shape." + table +
                "\n"
                "        privacy_unit: uid\n"
                "        max_groups_contributed: 3\n"
                "        max_rows_per_group: 2\n"
                "        columns:\n"
                "          amount: { lower: -5, upper: 10 }\n";
    }
    tables +=
        "      - name: shape.regions\n"
        "        public: true\n";
    const auto path = dir / "dpgate.yaml";
    std::ofstream(path) << "upstream: { dsn: \"" << dsn << "\" }\n"
                        << "ledger: { dsn: \"" << dsn << "\" }\n"
                        << "auth: trust\n"
                           "analysts:\n"
                           "  - name: alice\n"
                           "    budget: { epsilon: 10, delta: 1.0e-6 }\n"
                           "datasets:\n"
                           "  - name: shape\n"
                           "    budget: { epsilon: 50, delta: 1.0e-5 }\n"
                           "    tables:\n"
                        << tables;
    return path.string();
  }

  std::string Dsn() const {
    return "host=" + pg.host + " port=" + std::to_string(pg.port) + " dbname=" + db +
           " user=" + pg.user + " password=" + pg.password;
  }
};

std::string ShapeOf(const std::string& json) {
  const std::string marker = "\"shape\":\"";
  const auto at = json.find(marker);
  if (at == std::string::npos) return "";
  const auto start = at + marker.size();
  return json.substr(start, json.find('"', start) - start);
}

TEST_CASE("shapes: dpgate rewrite --upstream reads exactly the unique NOT NULL columns") {
  LoaderDb w;
  const std::string config = w.WriteConfig(w.Dsn());
  {
    // Not vacuous: the failed CONCURRENTLY build left an invalid unique index.
    pqxx::connection connection(w.pg.Dsn(w.db));
    pqxx::nontransaction tx(connection);
    REQUIRE(tx.exec1("SELECT count(*) FROM pg_catalog.pg_index WHERE indisunique AND NOT "
                     "indisvalid AND indrelid = 'shape.invalid'::regclass")[0]
                .as<int>() == 1);
  }
  const std::set<std::string> per_row = {"pk", "unique_nn", "incl", "part", "people"};
  for (const auto& table : LoaderDb::Tables()) {
    INFO("table shape." << table);
    std::string out;
    const int status = dpgate::testing::RunCommand(
        std::string(DPGATE_BINARY) + " rewrite -c " + config + " --upstream --json " +
            "'SELECT count(*), sum(amount) FROM shape." + table + "'",
        &out);
    INFO(out);
    REQUIRE(status == 0);
    CHECK(ShapeOf(out) == (per_row.count(table) ? "per_row" : "per_unit_no_row_number"));
  }
  // Types come through too: a join on the public table's primary key from a
  // column of the same type is per_row; from a text column it is not.
  std::string out;
  REQUIRE(dpgate::testing::RunCommand(
              std::string(DPGATE_BINARY) + " rewrite -c " + config + " --upstream " +
                  "'SELECT r.name, count(*) FROM shape.people p JOIN shape.regions r "
                  "ON r.code = p.region GROUP BY r.name'",
              &out) == 0);
  CHECK_THAT(out, Contains("shape: per_row"));
  CHECK_THAT(out, Contains("schema facts: "));
  REQUIRE(dpgate::testing::RunCommand(
              std::string(DPGATE_BINARY) + " rewrite -c " + config + " --upstream " +
                  "'SELECT r.name, count(*) FROM shape.people p JOIN shape.regions r "
                  "ON r.name = p.grp GROUP BY r.name'",
              &out) == 0);
  CHECK_THAT(out, Contains("shape: per_unit_bounded"));
  CHECK_THAT(out, Contains("not on a column known to be unique"));
  // Without --upstream nothing is read: the full shapes.
  REQUIRE(dpgate::testing::RunCommand(std::string(DPGATE_BINARY) + " rewrite -c " + config +
                                          " 'SELECT count(*) FROM shape.pk'",
                                      &out) == 0);
  CHECK_THAT(out, Contains("shape: per_unit_no_row_number"));
  CHECK_THAT(out, !Contains("schema facts: "));
}

TEST_CASE("shapes: dpgate rewrite --upstream fails clearly when upstream is unreachable") {
  LoaderDb w;
  const std::string secret = "not-the-real-password-4711";
  const std::string config = w.WriteConfig(
      "host=127.0.0.1 port=1 dbname=x user=nobody password=" + secret + " connect_timeout=2");
  std::string out;
  const int status = dpgate::testing::RunCommand(
      std::string(DPGATE_BINARY) + " rewrite -c " + config + " --upstream 'SELECT 1'", &out);
  INFO(out);
  CHECK(status == 1);
  CHECK_THAT(out, Contains("cannot connect to upstream to read schema facts"));
  CHECK_THAT(out, !Contains(secret));
}

}  // namespace
}  // namespace dpgate::rewriter
