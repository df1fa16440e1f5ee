// The YAML walker: turns a yaml-cpp tree into a Config, collecting every
// problem with its line and field path. Pure checks on single values live in
// validators.cpp; this file knows the shape of the document (DESIGN.md §4).
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "dpgate/config/config.h"
#include "parse.h"
#include "validators.h"

namespace dpgate::config::detail {
namespace {

// One value in the document: its node, where it is (line of its key for map
// entries, of the element for list items) and its path for messages.
struct Field {
  YAML::Node node;
  std::string path;
  int line = 1;
};

std::string Join(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += ", ";
    out += words[i];
  }
  return out;
}

bool IsQuoted(const YAML::Node& node) {
  return node.Tag() == "!";
}

// How a value looks, for "expected X, got Y" messages.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "no value";
    case YAML::NodeType::Scalar: {
      std::string text = node.Scalar();
      if (text.size() > 40) text = text.substr(0, 37) + "...";
      return IsQuoted(node) ? "the string \"" + text + "\"" : "'" + text + "'";
    }
  }
  return "an unknown value";
}

int LineOf(const YAML::Node& node, int fallback) {
  const YAML::Mark mark = node.Mark();
  return mark.line >= 0 ? mark.line + 1 : fallback;
}

std::string FormatNumber(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

using Entries = std::map<std::string, Field>;

class Walker {
 public:
  Walker(std::string source, std::filesystem::path base_dir, const EnvLookup& env)
      : source_(std::move(source)), base_dir_(std::move(base_dir)), env_(env) {}

  Result<Config> Run(const std::string& text);

 private:
  void Fail(int line, const std::string& path, const std::string& what) {
    std::string message = source_ + ":" + std::to_string(line) + ": ";
    if (!path.empty()) message += path + ": ";
    errors_.emplace_back(line, message + what);
  }
  void Fail(const Field& f, const std::string& what) { Fail(f.line, f.path, what); }

  // Generic shape readers. Each reports its own error and returns nullopt.
  std::optional<Entries> Map(const Field& f, const std::vector<std::string>& allowed);
  std::optional<std::vector<Field>> List(const Field& f);
  std::optional<std::string> String(const Field& f);
  std::optional<double> Number(const Field& f);
  std::optional<int64_t> Integer(const Field& f, int64_t min, int64_t max);
  std::optional<bool> Bool(const Field& f);
  std::optional<std::string> OneOf(const Field& f, const std::vector<std::string>& words);

  static const Field* Get(const Entries& entries, const std::string& key) {
    auto it = entries.find(key);
    return it == entries.end() ? nullptr : &it->second;
  }
  const Field* Require(const Entries& entries, const Field& parent, const std::string& key,
                       const std::string& what) {
    const Field* f = Get(entries, key);
    if (f == nullptr) Fail(parent, "missing required key '" + key + "': " + what);
    return f;
  }

  // Document parts.
  void ReadListen(const Field& f, Listen* out);
  std::optional<Tls> ReadTls(const Field& f);
  std::string ReadDsn(const Field& f);
  void ReadUpstream(const Field& f, Upstream* out);
  void ReadLedger(const Field& f, Ledger* out);
  std::optional<Budget> ReadBudget(const Field& f);
  std::optional<double> ReadEpsilon(const Field& f);
  std::optional<double> ReadDelta(const Field& f);
  void ReadAnalysts(const Field& f, AuthMode auth, std::vector<Analyst>* out);
  void ReadLimits(const Field& f, Limits* out);
  std::optional<std::chrono::seconds> Duration(const Field& f);
  void ReadQuery(const Field& f, QueryDefaults* out);
  void ReadDatasets(const Field& f, std::vector<Dataset>* out);
  std::optional<TableSpec> ReadTable(const Field& f);
  std::optional<ColumnSpec> ReadColumn(const Field& f, const std::string& name);

  std::string source_;
  std::filesystem::path base_dir_;
  const EnvLookup& env_;
  std::vector<std::pair<int, std::string>> errors_;
};

std::optional<Entries> Walker::Map(const Field& f, const std::vector<std::string>& allowed) {
  if (!f.node.IsMap()) {
    Fail(f, "expected a mapping with keys " + Join(allowed) + ", got " + Describe(f.node));
    return std::nullopt;
  }
  Entries entries;
  for (auto it = f.node.begin(); it != f.node.end(); ++it) {
    const int key_line = LineOf(it->first, f.line);
    if (!it->first.IsScalar()) {
      Fail(key_line, f.path, "a key must be a plain word, got " + Describe(it->first));
      continue;
    }
    const std::string key = it->first.Scalar();
    const std::string path = f.path.empty() ? key : f.path + "." + key;
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string what = "unknown key '" + key + "'";
      if (auto suggestion = ClosestMatch(key, allowed))
        what += "; did you mean '" + *suggestion + "'?";
      what += " (allowed keys: " + Join(allowed) + ")";
      Fail(key_line, f.path.empty() ? key : f.path + "." + key, what);
      continue;
    }
    if (auto previous = entries.find(key); previous != entries.end()) {
      Fail(key_line, path,
           "duplicate key (first given at line " + std::to_string(previous->second.line) +
               "); each key may appear once");
      continue;
    }
    entries.emplace(key, Field{it->second, path, key_line});
  }
  return entries;
}

std::optional<std::vector<Field>> Walker::List(const Field& f) {
  if (!f.node.IsSequence()) {
    Fail(f, "expected a list, got " + Describe(f.node));
    return std::nullopt;
  }
  std::vector<Field> items;
  for (size_t i = 0; i < f.node.size(); ++i) {
    const YAML::Node item = f.node[i];
    items.push_back(Field{item, f.path + "[" + std::to_string(i) + "]", LineOf(item, f.line)});
  }
  return items;
}

std::optional<std::string> Walker::String(const Field& f) {
  if (!f.node.IsScalar()) {
    Fail(f, "expected a string, got " + Describe(f.node));
    return std::nullopt;
  }
  return f.node.Scalar();
}

std::optional<double> Walker::Number(const Field& f) {
  if (!f.node.IsScalar() || IsQuoted(f.node)) {
    Fail(f, "expected a number, got " + Describe(f.node) +
                (f.node.IsScalar() ? " (numbers are written without quotes)" : ""));
    return std::nullopt;
  }
  const std::string& text = f.node.Scalar();
  static const std::regex kInfinity(R"([-+]?\.(inf|Inf|INF))");
  static const std::regex kNan(R"(\.(nan|NaN|NAN))");
  if (std::regex_match(text, kInfinity) || std::regex_match(text, kNan)) {
    Fail(f, "expected a finite number, got " + text);
    return std::nullopt;
  }
  static const std::regex kDecimal(R"([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)");
  if (!std::regex_match(text, kDecimal)) {
    Fail(f, "expected a number, got " + Describe(f.node));
    return std::nullopt;
  }
  errno = 0;
  const double value = std::strtod(text.c_str(), nullptr);
  if (errno == ERANGE || !std::isfinite(value)) {
    Fail(f, "expected a finite number, got " + text + " (out of range)");
    return std::nullopt;
  }
  return value;
}

std::optional<int64_t> Walker::Integer(const Field& f, int64_t min, int64_t max) {
  const auto number = Number(f);
  if (!number) return std::nullopt;
  static const std::regex kWhole(R"([-+]?\d+)");
  if (!std::regex_match(f.node.Scalar(), kWhole)) {
    Fail(f, "expected a whole number between " + std::to_string(min) + " and " +
                std::to_string(max) + ", got " + f.node.Scalar());
    return std::nullopt;
  }
  if (*number < static_cast<double>(min) || *number > static_cast<double>(max)) {
    Fail(f, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                f.node.Scalar());
    return std::nullopt;
  }
  return static_cast<int64_t>(*number);
}

std::optional<bool> Walker::Bool(const Field& f) {
  if (f.node.IsScalar() && !IsQuoted(f.node)) {
    const std::string& text = f.node.Scalar();
    if (text == "true" || text == "True" || text == "TRUE") return true;
    if (text == "false" || text == "False" || text == "FALSE") return false;
  }
  Fail(f, "expected true or false, got " + Describe(f.node));
  return std::nullopt;
}

std::optional<std::string> Walker::OneOf(const Field& f, const std::vector<std::string>& words) {
  auto text = f.node.IsScalar() ? std::optional<std::string>(f.node.Scalar()) : std::nullopt;
  if (text && std::find(words.begin(), words.end(), *text) != words.end()) return text;
  std::string what = "expected one of " + Join(words) + ", got " + Describe(f.node);
  if (text) {
    if (auto suggestion = ClosestMatch(*text, words))
      what += "; did you mean '" + *suggestion + "'?";
  }
  Fail(f, what);
  return std::nullopt;
}

void Walker::ReadListen(const Field& f, Listen* out) {
  const auto entries = Map(f, {"host", "port"});
  if (!entries) return;
  if (const Field* host = Get(*entries, "host")) {
    if (auto text = String(*host)) {
      if (text->empty()) {
        Fail(*host, "expected a host name or IP address, got an empty string");
      } else {
        out->host = *text;
      }
    }
  }
  if (const Field* port = Get(*entries, "port")) {
    if (auto value = Integer(*port, 1, 65535)) out->port = static_cast<uint16_t>(*value);
  }
}

std::optional<Tls> Walker::ReadTls(const Field& f) {
  const auto entries = Map(f, {"cert", "key"});
  if (!entries) return std::nullopt;
  Tls tls;
  bool complete = true;
  for (const std::string key : {"cert", "key"}) {
    const Field* file =
        Require(*entries, f, key,
                key == "cert" ? "the server certificate (PEM) file" : "the private key (PEM) file");
    const auto name = file ? String(*file) : std::nullopt;
    if (!name) {
      complete = false;
      continue;
    }
    if (name->empty()) {
      Fail(*file, "expected a file path, got an empty string");
      complete = false;
      continue;
    }
    // Relative paths are relative to the config file, not to dpgate's working
    // directory, so a config and its certificates can move together.
    std::filesystem::path path(*name);
    if (path.is_relative()) path = (base_dir_ / path).lexically_normal();
    std::error_code ec;
    const bool is_dir = std::filesystem::is_directory(path, ec);
    std::ifstream probe(path);
    if (is_dir || !probe) {
      const std::string why = is_dir ? "it is a directory" : std::strerror(errno);
      Fail(*file, "cannot read " + path.string() + ": " + why + "; expected a readable PEM file");
      complete = false;
      continue;
    }
    (key == "cert" ? tls.cert : tls.key) = path.string();
  }
  if (!complete) return std::nullopt;
  return tls;
}

std::string Walker::ReadDsn(const Field& f) {
  const auto text = String(f);
  if (!text) return {};
  const auto substituted = SubstituteEnv(*text, env_);
  if (!substituted.value) {
    Fail(f, substituted.problem);
    return {};
  }
  if (substituted.value->find_first_not_of(" \t\r\n") == std::string::npos) {
    Fail(f,
         "expected a libpq connection string such as \"host=... port=... dbname=... "
         "user=...\", got an empty string");
    return {};
  }
  if (const std::string problem = CheckConnectionString(*substituted.value); !problem.empty()) {
    Fail(f, problem);
    return {};
  }
  return *substituted.value;
}

void Walker::ReadUpstream(const Field& f, Upstream* out) {
  const auto entries = Map(f, {"dsn", "pool_size", "pool_mode"});
  if (!entries) return;
  if (const Field* dsn = Require(
          *entries, f, "dsn", "the libpq connection string of the warehouse (a read-only role)")) {
    out->dsn = ReadDsn(*dsn);
  }
  if (const Field* pool = Get(*entries, "pool_size")) {
    if (auto value = Integer(*pool, 1, 1024)) out->pool_size = static_cast<int>(*value);
  }
  if (const Field* mode = Get(*entries, "pool_mode")) {
    if (auto word = OneOf(*mode, {"session", "transaction"})) {
      out->pool_mode = *word == "transaction" ? PoolMode::kTransaction : PoolMode::kSession;
    }
  }
}

void Walker::ReadLedger(const Field& f, Ledger* out) {
  const auto entries = Map(f, {"dsn", "schema"});
  if (!entries) return;
  if (const Field* dsn =
          Require(*entries, f, "dsn", "the libpq connection string of the ledger database")) {
    out->dsn = ReadDsn(*dsn);
  }
  if (const Field* schema = Get(*entries, "schema")) {
    if (auto text = String(*schema)) {
      static const std::regex kPlainIdentifier("[a-z_][a-z0-9_]{0,62}");
      if (std::regex_match(*text, kPlainIdentifier)) {
        out->schema = *text;
      } else {
        Fail(*schema, "'" + *text +
                          "' is not a plain schema name; expected lower-case letters, digits and "
                          "'_', starting with a letter or '_', at most 63 characters");
      }
    }
  }
}

std::optional<double> Walker::ReadEpsilon(const Field& f) {
  const auto value = Number(f);
  if (!value) return std::nullopt;
  if (*value <= 0) {
    Fail(f, "epsilon must be greater than 0, got " + f.node.Scalar() +
                "; expected a positive finite number");
    return std::nullopt;
  }
  return value;
}

std::optional<double> Walker::ReadDelta(const Field& f) {
  const auto value = Number(f);
  if (!value) return std::nullopt;
  if (*value < 0 || *value >= 1) {
    Fail(f, "delta must be at least 0 and less than 1, got " + f.node.Scalar() +
                "; expected a small probability such as 1.0e-6");
    return std::nullopt;
  }
  return value;
}

std::optional<Budget> Walker::ReadBudget(const Field& f) {
  const auto entries = Map(f, {"epsilon", "delta", "period"});
  if (!entries) return std::nullopt;
  Budget budget;
  bool ok = true;
  if (const Field* eps = Require(*entries, f, "epsilon", "the budget's total epsilon (> 0)")) {
    if (auto value = ReadEpsilon(*eps))
      budget.epsilon = *value;
    else
      ok = false;
  } else {
    ok = false;
  }
  if (const Field* delta = Get(*entries, "delta")) {
    if (auto value = ReadDelta(*delta))
      budget.delta = *value;
    else
      ok = false;
  }
  if (const Field* period = Get(*entries, "period")) {
    if (auto word = OneOf(*period, {"day", "week", "month", "never"})) {
      budget.period = *word == "day"     ? Period::kDay
                      : *word == "week"  ? Period::kWeek
                      : *word == "month" ? Period::kMonth
                                         : Period::kNever;
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return budget;
}

void Walker::ReadAnalysts(const Field& f, AuthMode auth, std::vector<Analyst>* out) {
  const auto items = List(f);
  if (!items) return;
  if (items->empty()) {
    Fail(f, "expected at least one analyst (name, scram, budget); nobody could connect");
    return;
  }
  std::map<std::string, int> first_line;
  for (const Field& item : *items) {
    const auto entries = Map(item, {"name", "scram", "budget"});
    if (!entries) continue;
    Analyst analyst;
    if (const Field* name = Require(*entries, item, "name", "the analyst's login name")) {
      if (auto text = String(*name)) {
        if (!IsPlainName(*text)) {
          Fail(*name, "'" + *text +
                          "' is not a valid analyst name; expected letters, digits, '_', '.', "
                          "'@' or '-', starting with a letter or '_', at most 63 characters");
        } else if (auto [it, inserted] = first_line.emplace(*text, name->line); !inserted) {
          Fail(*name, "duplicate analyst '" + *text + "' (first defined at line " +
                          std::to_string(it->second) + "); analyst names must be unique");
        }
        analyst.name = *text;
      }
    }
    if (const Field* scram = Get(*entries, "scram")) {
      if (auto text = String(*scram)) {
        // The verifier is a secret-equivalent: messages describe it, never echo it.
        if (const std::string problem = CheckScramVerifier(*text); !problem.empty()) {
          Fail(*scram, problem);
        }
        analyst.scram = *text;
      }
    } else if (auth == AuthMode::kScram) {
      Fail(item,
           "missing required key 'scram': auth is scram, so every analyst needs a "
           "SCRAM-SHA-256 verifier; generate one with `dpgate passwd " +
               (analyst.name.empty() ? std::string("NAME") : analyst.name) + "`");
    }
    if (const Field* budget =
            Require(*entries, item, "budget", "the analyst's budget { epsilon, delta, period }")) {
      if (auto value = ReadBudget(*budget)) analyst.budget = *value;
    }
    out->push_back(std::move(analyst));
  }
}

void Walker::ReadQuery(const Field& f, QueryDefaults* out) {
  const auto entries = Map(f, {"epsilon", "delta", "max_epsilon", "mechanism", "cache_ttl"});
  if (!entries) return;
  const Field* epsilon = Get(*entries, "epsilon");
  const Field* max_epsilon = Get(*entries, "max_epsilon");
  const Field* delta = Get(*entries, "delta");
  const Field* mechanism = Get(*entries, "mechanism");
  bool epsilon_ok = true;
  if (epsilon) {
    if (auto v = ReadEpsilon(*epsilon))
      out->epsilon = *v;
    else
      epsilon_ok = false;
  }
  if (max_epsilon) {
    if (auto v = ReadEpsilon(*max_epsilon))
      out->max_epsilon = *v;
    else
      epsilon_ok = false;
  }
  if (epsilon_ok && out->epsilon > out->max_epsilon) {
    const Field& at = epsilon ? *epsilon : *max_epsilon;
    Fail(at.line, "query.epsilon",
         "the default epsilon (" + FormatNumber(out->epsilon) + ") is greater than max_epsilon (" +
             FormatNumber(out->max_epsilon) + "); expected epsilon <= max_epsilon");
  }
  bool delta_ok = true;
  if (delta) {
    if (auto v = ReadDelta(*delta))
      out->delta = *v;
    else
      delta_ok = false;
  }
  if (mechanism) {
    if (auto word = OneOf(*mechanism, {"laplace", "gaussian"})) {
      out->mechanism = *word == "gaussian" ? Mechanism::kGaussian : Mechanism::kLaplace;
    }
  }
  if (delta_ok && out->mechanism == Mechanism::kGaussian && out->delta == 0) {
    const Field& at = delta ? *delta : *mechanism;
    Fail(at.line, "query.delta",
         "the Gaussian mechanism needs delta > 0, got 0; set query.delta (e.g. 1.0e-7) or use "
         "mechanism: laplace");
  }
  if (const Field* ttl = Get(*entries, "cache_ttl")) {
    if (auto value = Duration(*ttl)) out->cache_ttl = *value;
  }
}

std::optional<std::chrono::seconds> Walker::Duration(const Field& f) {
  if (!f.node.IsScalar()) {
    Fail(f, "expected a duration such as 0, 30s, 15m, 1h or 1d, got " + Describe(f.node));
    return std::nullopt;
  }
  auto parsed = ParseDuration(f.node.Scalar());
  if (!parsed.value) {
    Fail(f, parsed.problem);
    return std::nullopt;
  }
  return *parsed.value;
}

void Walker::ReadLimits(const Field& f, Limits* out) {
  const auto entries =
      Map(f, {"max_connections", "max_message_size", "auth_timeout", "idle_timeout"});
  if (!entries) return;
  if (const Field* n = Get(*entries, "max_connections")) {
    if (auto value = Integer(*n, 1, 100000)) out->max_connections = static_cast<int>(*value);
  }
  if (const Field* size = Get(*entries, "max_message_size")) {
    // PostgreSQL's own bound on a message is 1 GiB (MaxAllocSize); below
    // 1 KiB a client could not send an ordinary query.
    if (auto value = Integer(*size, 1024, 1 << 30)) {
      out->max_message_size = static_cast<uint32_t>(*value);
    }
  }
  if (const Field* auth = Get(*entries, "auth_timeout")) {
    // As PostgreSQL's authentication_timeout (1s..600s): a login that
    // never ends would hold a connection slot for ever.
    if (auto value = Duration(*auth)) {
      if (value->count() < 1 || value->count() > 600) {
        Fail(*auth, "expected a duration from 1s to 10m, got " + auth->node.Scalar() +
                        "; authentication must end, so 0 is not allowed");
      } else {
        out->auth_timeout = *value;
      }
    }
  }
  if (const Field* idle = Get(*entries, "idle_timeout")) {
    if (auto value = Duration(*idle)) out->idle_timeout = *value;
  }
}

std::optional<ColumnSpec> Walker::ReadColumn(const Field& f, const std::string& name) {
  ColumnSpec column;
  column.name = name;
  // `age:` or `age: {}` declares a column with neither bounds nor values.
  if (f.node.IsNull()) return column;
  const auto entries = Map(f, {"lower", "upper", "values"});
  if (!entries) return std::nullopt;
  const Field* lower = Get(*entries, "lower");
  const Field* upper = Get(*entries, "upper");
  const Field* values = Get(*entries, "values");
  bool ok = true;
  if (lower) {
    if (auto v = Number(*lower))
      column.lower = *v;
    else
      ok = false;
  }
  if (upper) {
    if (auto v = Number(*upper))
      column.upper = *v;
    else
      ok = false;
  }
  if ((lower == nullptr) != (upper == nullptr)) {
    Fail((lower ? lower : upper)->line, f.path,
         std::string("only ") + (lower ? "lower" : "upper") +
             " is given; expected both lower and "
             "upper (the clamping bounds for SUM/AVG)");
    ok = false;
  } else if (column.lower && column.upper && *column.lower > *column.upper) {
    Fail(lower->line, f.path,
         "lower (" + lower->node.Scalar() + ") is greater than upper (" + upper->node.Scalar() +
             "); expected lower <= upper");
    ok = false;
  }
  if (values) {
    if (lower || upper) {
      Fail(values->line, f.path,
           "has both bounds and values; a column has either lower/upper (a measure for "
           "SUM/AVG) or values (the public keys of a GROUP BY column), not both");
      ok = false;
    }
    if (auto items = List(*values)) {
      if (items->empty()) {
        Fail(*values,
             "expected at least one value; omit 'values' for a column without public keys");
        ok = false;
      }
      std::map<std::string, int> seen;
      for (const Field& item : *items) {
        if (!item.node.IsScalar()) {
          Fail(item, "expected a scalar value, got " + Describe(item.node));
          ok = false;
          continue;
        }
        const std::string& text = item.node.Scalar();
        if (auto [it, inserted] = seen.emplace(text, item.line); !inserted) {
          Fail(item, "duplicate value '" + text + "' (already listed at line " +
                         std::to_string(it->second) + "); values must be distinct");
          ok = false;
          continue;
        }
        column.values.push_back(text);
      }
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return column;
}

std::optional<TableSpec> Walker::ReadTable(const Field& f) {
  const std::vector<std::string> keys = {
      "name", "public", "privacy_unit", "max_groups_contributed", "max_rows_per_group", "columns"};
  const auto entries = Map(f, keys);
  if (!entries) return std::nullopt;
  TableSpec table;
  bool ok = true;
  if (const Field* name = Require(*entries, f, "name", "the table, as schema.table or table")) {
    if (auto text = String(*name)) {
      if (auto parsed = ParseTableName(*text); parsed.value) {
        table.schema = parsed.value->first;
        table.name = parsed.value->second;
      } else {
        Fail(*name, parsed.problem);
        ok = false;
      }
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (const Field* is_public = Get(*entries, "public")) {
    if (auto value = Bool(*is_public))
      table.is_public = *value;
    else
      ok = false;
  }
  if (table.is_public) {
    // A public table is forwarded unchanged; privacy settings on it would
    // suggest a protection that does not exist.
    for (const std::string key :
         {"privacy_unit", "max_groups_contributed", "max_rows_per_group", "columns"}) {
      if (const Field* extra = Get(*entries, key)) {
        Fail(*extra, "a public table takes no " + key +
                         " (public tables are forwarded unchanged, without privacy); remove it "
                         "or set public: false");
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return table;
  }
  if (const Field* unit = Require(*entries, f, "privacy_unit",
                                  "the column identifying the person or entity a private table "
                                  "protects (or mark the table public: true)")) {
    if (auto text = String(*unit)) {
      if (auto id = ParseSqlIdentifier(*text); id.value) {
        table.privacy_unit = *id.value;
      } else {
        Fail(*unit, id.problem);
        ok = false;
      }
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (const Field* k = Get(*entries, "max_groups_contributed")) {
    if (auto v = Integer(*k, 1, 1000000))
      table.max_groups_contributed = static_cast<int>(*v);
    else
      ok = false;
  }
  if (const Field* c = Get(*entries, "max_rows_per_group")) {
    if (auto v = Integer(*c, 1, 1000000))
      table.max_rows_per_group = static_cast<int>(*v);
    else
      ok = false;
  }
  if (const Field* columns = Get(*entries, "columns")) {
    if (!columns->node.IsMap()) {
      Fail(*columns, "expected a mapping of column name to { lower, upper } or { values }, got " +
                         Describe(columns->node));
      return std::nullopt;
    }
    std::map<std::string, int> seen;
    for (auto it = columns->node.begin(); it != columns->node.end(); ++it) {
      const int line = LineOf(it->first, columns->line);
      const std::string written = it->first.IsScalar() ? it->first.Scalar() : std::string();
      const std::string path = columns->path + "." + written;
      auto id = ParseSqlIdentifier(written);
      if (!it->first.IsScalar() || !id.value) {
        Fail(line, path, it->first.IsScalar() ? id.problem : "a column name must be a plain word");
        ok = false;
        continue;
      }
      if (auto [prev, inserted] = seen.emplace(*id.value, line); !inserted) {
        Fail(line, path,
             "duplicate column '" + *id.value + "' (first given at line " +
                 std::to_string(prev->second) + "); each column may appear once");
        ok = false;
        continue;
      }
      if (auto column = ReadColumn(Field{it->second, path, line}, *id.value)) {
        table.columns.push_back(std::move(*column));
      } else {
        ok = false;
      }
    }
  }
  if (!ok) return std::nullopt;
  return table;
}

void Walker::ReadDatasets(const Field& f, std::vector<Dataset>* out) {
  const auto items = List(f);
  if (!items) return;
  if (items->empty()) {
    Fail(f, "expected at least one dataset (name, budget, tables)");
    return;
  }
  std::map<std::string, int> dataset_lines;
  // Which dataset and line first named each table: a table belongs to one
  // dataset, or its budget could be spent twice.
  std::map<std::string, std::pair<std::string, int>> table_owner;
  for (const Field& item : *items) {
    const auto entries = Map(item, {"name", "budget", "tables"});
    if (!entries) continue;
    Dataset dataset;
    if (const Field* name = Require(*entries, item, "name", "the dataset's name")) {
      if (auto text = String(*name)) {
        if (!IsPlainName(*text)) {
          Fail(*name, "'" + *text +
                          "' is not a valid dataset name; expected letters, digits, '_', '.', "
                          "'@' or '-', starting with a letter or '_', at most 63 characters");
        } else if (auto [it, inserted] = dataset_lines.emplace(*text, name->line); !inserted) {
          Fail(*name, "duplicate dataset '" + *text + "' (first defined at line " +
                          std::to_string(it->second) + "); dataset names must be unique");
        }
        dataset.name = *text;
      }
    }
    if (const Field* budget = Require(*entries, item, "budget",
                                      "the dataset's global budget { epsilon, delta, period }")) {
      if (auto value = ReadBudget(*budget)) dataset.budget = *value;
    }
    if (const Field* tables = Require(*entries, item, "tables", "the list of tables")) {
      if (auto table_items = List(*tables)) {
        if (table_items->empty()) Fail(*tables, "expected at least one table");
        for (const Field& table_item : *table_items) {
          auto table = ReadTable(table_item);
          if (!table) continue;
          const std::string qualified = table->qualified_name();
          auto [it, inserted] =
              table_owner.emplace(qualified, std::pair{dataset.name, table_item.line});
          if (!inserted) {
            Fail(table_item, "table " + qualified + " is already configured in dataset '" +
                                 it->second.first + "' at line " +
                                 std::to_string(it->second.second) +
                                 "; a table belongs to exactly one dataset, once");
            continue;
          }
          dataset.tables.push_back(std::move(*table));
        }
      }
    }
    out->push_back(std::move(dataset));
  }
}

Result<Config> Walker::Run(const std::string& text) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    const int line = e.mark.line >= 0 ? e.mark.line + 1 : 1;
    return MakeError("config", source_ + ":" + std::to_string(line) + ": YAML syntax error: " +
                                   e.msg + " (column " + std::to_string(e.mark.column + 1) + ")");
  }
  if (documents.size() > 1) {
    Fail(LineOf(documents[1], 1), "", "the file holds several YAML documents (---); expected one");
  }
  const std::vector<std::string> top_keys = {"listen",   "tls",   "upstream", "ledger",  "auth",
                                             "analysts", "query", "limits",   "datasets"};
  Config config;
  config.source_path = source_;
  if (documents.empty() || documents[0].IsNull()) {
    Fail(1, "", "the config is empty; expected a mapping with keys " + Join(top_keys));
  } else if (const Field root{documents[0], "", LineOf(documents[0], 1)};
             const auto entries = Map(root, top_keys)) {
    const Field* listen = Get(*entries, "listen");
    const Field* tls = Get(*entries, "tls");
    const Field* auth = Get(*entries, "auth");
    if (listen) ReadListen(*listen, &config.listen);
    if (tls) config.tls = ReadTls(*tls);
    if (const Field* upstream = Require(*entries, root, "upstream",
                                        "upstream: { dsn: \"host=... dbname=... user=...\" }")) {
      ReadUpstream(*upstream, &config.upstream);
    }
    if (const Field* ledger = Require(*entries, root, "ledger",
                                      "ledger: { dsn: \"host=... dbname=... user=...\" }")) {
      ReadLedger(*ledger, &config.ledger);
    }
    if (auth) {
      if (auto word = OneOf(*auth, {"scram", "trust"})) {
        config.auth = *word == "trust" ? AuthMode::kTrust : AuthMode::kScram;
      }
    }
    if (const Field* analysts =
            Require(*entries, root, "analysts", "the list of analysts who may connect")) {
      ReadAnalysts(*analysts, config.auth, &config.analysts);
    }
    if (const Field* query = Get(*entries, "query")) ReadQuery(*query, &config.query);
    if (const Field* limits = Get(*entries, "limits")) ReadLimits(*limits, &config.limits);
    if (const Field* datasets =
            Require(*entries, root, "datasets", "the list of datasets (name, budget, tables)")) {
      ReadDatasets(*datasets, &config.datasets);
    }
    // Cross-field rules: a listener reachable from other machines must not
    // accept anyone without a password, nor send passwords in clear text.
    if (!IsLoopbackHost(config.listen.host)) {
      const int line = listen ? listen->line : 1;
      if (config.auth == AuthMode::kTrust) {
        Fail(auth->line, "auth",
             "trust is only allowed when listen.host is a loopback address (127.0.0.0/8, "
             "::1 or localhost), but listen.host is " +
                 config.listen.host + "; use auth: scram");
      }
      if (!tls) {
        Fail(line, "listen.host",
             "tls is required for non-local listen (host " + config.listen.host +
                 "); add tls: { cert: ..., key: ... } or listen on 127.0.0.1");
      }
    }
  }
  if (!errors_.empty()) {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string message;
    for (const auto& [line, text] : errors_) {
      if (!message.empty()) message += "\n";
      message += text;
    }
    return MakeError("config", message);
  }
  return config;
}

}  // namespace

Result<Config> ParseConfigText(const std::string& yaml_text, const std::string& source_name,
                               const EnvLookup& env) {
  std::filesystem::path base = std::filesystem::path(source_name).parent_path();
  if (base.empty()) base = ".";
  return Walker(source_name, base, env).Run(yaml_text);
}

}  // namespace dpgate::config::detail
