// dpgate check -c FILE: validate the config, then connect to the upstream
// warehouse and the ledger and check that everything the config names exists
// there (DESIGN.md §3). Prints one line per item and exits 0 only when all
// holds, 1 otherwise, 2 on a usage error.
#include <libpq-fe.h>

#include <cstdio>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <regex>
#include <string>
#include <vector>

#include "commands.h"
#include "dpgate/config/config.h"

namespace dpgate::app {
namespace {

// A dead or firewalled server must fail the check in seconds, not hang.
constexpr int kConnectTimeoutSeconds = 5;

void PrintCheckUsage(std::FILE* out) {
  std::fprintf(out,
               "usage: dpgate check -c FILE\n"
               "\n"
               "Validates the config FILE, then connects to the upstream warehouse and to the\n"
               "ledger and checks that every configured table and column exists, that columns\n"
               "with bounds are numeric, and that the upstream role can read them (and warns\n"
               "when it can write). Prints one line per item.\n"
               "\n"
               "options:\n"
               "  -c, --config FILE   the dpgate YAML config (see docs/CONFIG.md)\n"
               "  -h, --help          show this help\n"
               "\n"
               "exit status: 0 when everything holds, 1 on any error, 2 on a usage error\n");
}

// Counts and prints the per-item lines.
class Report {
 public:
  void Ok(const std::string& what) {
    Line("ok", what);
    ++ok_;
  }
  void Warn(const std::string& what) {
    Line("warning", what);
    ++warnings_;
  }
  void Error(const std::string& what) {
    Line("error", what);
    ++errors_;
  }
  void Skip(const std::string& what) { Line("skipped", what); }

  int Finish() const {
    const auto plural = [](int n, const char* word) {
      return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
    };
    if (errors_ == 0) {
      std::printf("check passed: %d ok, %s\n", ok_, plural(warnings_, "warning").c_str());
      return 0;
    }
    std::printf("check failed: %s, %s, %d ok\n", plural(errors_, "error").c_str(),
                plural(warnings_, "warning").c_str(), ok_);
    return 1;
  }

 private:
  static void Line(const char* level, const std::string& what) {
    std::printf("%s: %s\n", level, what.c_str());
    std::fflush(stdout);
  }
  int ok_ = 0;
  int warnings_ = 0;
  int errors_ = 0;
};

// What the check needs to know about a connection string, parsed by libpq
// itself so every form (key=value, URI) is understood the same way.
struct Target {
  std::string label;        // "upstream" or "ledger"
  std::string description;  // user@host:port/dbname, never the password
  std::string dsn;          // with connect_timeout added when absent
  std::string password;     // to redact from server messages
};

Target DescribeTarget(const std::string& label, const std::string& dsn) {
  Target target{label, "", dsn, ""};
  std::map<std::string, std::string> values;
  char* error = nullptr;
  if (PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error)) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (o->val != nullptr) values[o->keyword] = o->val;
    }
    PQconninfoFree(options);
  }
  if (error != nullptr) PQfreemem(error);
  const auto value_or = [&](const char* key, const char* fallback) {
    auto it = values.find(key);
    return it == values.end() || it->second.empty() ? std::string(fallback) : it->second;
  };
  target.password = value_or("password", "");
  target.description = value_or("user", "(default user)") + "@" +
                       value_or("host", "(default host)") + ":" + value_or("port", "5432") + "/" +
                       value_or("dbname", "(default database)");
  if (values.count("connect_timeout") == 0 || values["connect_timeout"].empty()) {
    const bool is_uri = dsn.rfind("postgresql://", 0) == 0 || dsn.rfind("postgres://", 0) == 0;
    const std::string timeout = "connect_timeout=" + std::to_string(kConnectTimeoutSeconds);
    if (is_uri) {
      target.dsn += (dsn.find('?') == std::string::npos ? "?" : "&") + timeout;
    } else {
      target.dsn += " " + timeout;
    }
  }
  return target;
}

// Server and libpq messages do not normally repeat the password, but a
// message that echoes the connection string would: remove it in every form.
std::string Redact(std::string text, const Target& target) {
  if (!target.password.empty()) {
    for (size_t at = text.find(target.password); at != std::string::npos;
         at = text.find(target.password, at + 3)) {
      text.replace(at, target.password.size(), "***");
    }
  }
  static const std::regex kKeyValue(R"(password\s*=\s*('([^'\\]|\\.)*'|\S+))");
  static const std::regex kUriUserInfo(R"(((postgres|postgresql)://[^:/@\s]*:)[^@\s]*@)");
  text = std::regex_replace(text, kKeyValue, "password=***");
  text = std::regex_replace(text, kUriUserInfo, "$1***@");
  // One report line per item: fold libpq's multi-line messages.
  text = std::regex_replace(text, std::regex(R"(\s*\n\s*)"), "; ");
  while (!text.empty() && (text.back() == ' ' || text.back() == ';')) text.pop_back();
  return text;
}

std::unique_ptr<pqxx::connection> Connect(const Target& target, Report& report) {
  try {
    auto connection = std::make_unique<pqxx::connection>(target.dsn);
    report.Ok(target.label + " reachable (" + target.description + ")");
    return connection;
  } catch (const std::exception& e) {
    report.Error(target.label + " not reachable (" + target.description +
                 "): " + Redact(e.what(), target));
    return nullptr;
  }
}

// Types whose values can be clamped to numeric bounds (domains over them too).
bool IsNumericType(long type_oid) {
  switch (type_oid) {
    case 20:    // bigint
    case 21:    // smallint
    case 23:    // integer
    case 700:   // real
    case 701:   // double precision
    case 1700:  // numeric
      return true;
    default:
      return false;
  }
}

struct ColumnInfo {
  std::string type;  // as format_type prints it
  long base_type_oid = 0;
  bool can_select = false;
};

void CheckTable(pqxx::transaction_base& tx, const std::string& role, const config::Dataset& dataset,
                const config::TableSpec& table, Report& report) {
  const std::string where = table.qualified_name();
  const pqxx::result relation = tx.exec_params(
      "SELECT c.oid::pg_catalog.int8, c.relkind::pg_catalog.text, "
      "       pg_catalog.has_any_column_privilege(c.oid, 'SELECT'), "
      "       pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') "
      "FROM pg_catalog.pg_class c "
      "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
      table.schema, table.name);
  if (relation.empty()) {
    // A near miss is usually a case or schema slip: name it.
    const pqxx::result similar = tx.exec_params(
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) "
        "FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE pg_catalog.lower(c.relname) = pg_catalog.lower($1) "
        "  AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
        "ORDER BY 1 LIMIT 3",
        table.name);
    std::string hint;
    for (const auto& row : similar)
      hint += (hint.empty() ? "; did you mean " : " or ") + row[0].as<std::string>();
    report.Error(where + ": table does not exist in the upstream database (dataset " +
                 dataset.name + ")" + hint);
    return;
  }
  const std::string oid = relation[0][0].as<std::string>();
  if (!relation[0][2].as<bool>()) {
    report.Error(where + ": upstream role " + role +
                 " cannot SELECT from this table; grant "
                 "SELECT on it to " +
                 role);
    return;
  }
  if (relation[0][3].as<bool>()) {
    report.Warn(where + ": upstream role " + role +
                " can write to this table (INSERT, UPDATE, DELETE or TRUNCATE); upstream should "
                "be a read-only role");
  }
  if (table.is_public) {
    report.Ok(where + ": public table exists and is readable");
    return;
  }

  std::map<std::string, ColumnInfo> columns;
  const pqxx::result attributes = tx.exec_params(
      "SELECT a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod), "
      "       (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END)::pg_catalog.int8, "
      "       pg_catalog.has_column_privilege(a.attrelid, a.attnum, 'SELECT') "
      "FROM pg_catalog.pg_attribute a "
      "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
      "WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped",
      oid);
  std::string all_columns;
  for (const auto& row : attributes) {
    const auto name = row[0].as<std::string>();
    columns[name] = ColumnInfo{row[1].as<std::string>(), row[2].as<long>(), row[3].as<bool>()};
    all_columns += (all_columns.empty() ? "" : ", ") + name;
  }

  int problems = 0;
  const auto readable = [&](const std::string& column,
                            const std::string& what) -> const ColumnInfo* {
    auto it = columns.find(column);
    if (it == columns.end()) {
      report.Error(where + "." + column + ": " + what +
                   " does not exist (the table has: " + all_columns + ")");
      ++problems;
      return nullptr;
    }
    if (!it->second.can_select) {
      report.Error(where + "." + column + ": upstream role " + role +
                   " cannot SELECT this column; grant SELECT on it to " + role);
      ++problems;
      return nullptr;
    }
    return &it->second;
  };

  readable(table.privacy_unit, "privacy_unit column");
  for (const auto& column : table.columns) {
    const ColumnInfo* info = readable(column.name, "column");
    if (info != nullptr && column.has_bounds() && !IsNumericType(info->base_type_oid)) {
      report.Error(where + "." + column.name + ": column has type " + info->type +
                   "; bounds need a numeric column (smallint, integer, bigint, numeric, real or "
                   "double precision)");
      ++problems;
    }
  }
  if (problems == 0) {
    report.Ok(where + ": table exists; privacy unit " + table.privacy_unit + " and " +
              std::to_string(table.columns.size()) + " configured column" +
              (table.columns.size() == 1 ? "" : "s") + " present and readable");
  }
}

void CheckUpstream(pqxx::connection& connection, const config::Config& config, const Target& target,
                   Report& report) {
  try {
    pqxx::read_transaction tx(connection);
    const pqxx::row role = tx.exec1(
        "SELECT current_user::pg_catalog.text, r.rolsuper "
        "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user");
    const auto role_name = role[0].as<std::string>();
    if (role[1].as<bool>()) {
      report.Warn("upstream role " + role_name +
                  " is a superuser; upstream should be a read-only role with SELECT on the "
                  "configured tables only");
    }
    for (const auto& dataset : config.datasets) {
      for (const auto& table : dataset.tables) CheckTable(tx, role_name, dataset, table, report);
    }
  } catch (const std::exception& e) {
    report.Error("upstream: catalog query failed: " + Redact(e.what(), target));
  }
}

void CheckLedger(pqxx::connection& connection, const config::Config& config, const Target& target,
                 Report& report) {
  try {
    pqxx::read_transaction tx(connection);
    const pqxx::row row = tx.exec_params1(
        "SELECT current_user::pg_catalog.text, "
        "       EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1), "
        "       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')",
        config.ledger.schema);
    const auto role = row[0].as<std::string>();
    const std::string& schema = config.ledger.schema;
    if (row[1].as<bool>()) {
      const bool usable =
          tx.exec_params1("SELECT pg_catalog.has_schema_privilege($1, 'USAGE')", schema)[0]
              .as<bool>();
      if (usable) {
        report.Ok("ledger schema " + schema + " exists and role " + role + " can use it");
      } else {
        report.Error("ledger schema " + schema + " exists but role " + role +
                     " has no USAGE on it; grant USAGE on schema " + schema + " to " + role);
      }
    } else if (row[2].as<bool>()) {
      report.Ok("ledger schema " + schema + " does not exist yet; dpgate will create it (role " +
                role + " may create schemas)");
    } else {
      report.Error("ledger schema " + schema + " does not exist and role " + role +
                   " cannot create it; create the schema or grant CREATE on the database to " +
                   role);
    }
  } catch (const std::exception& e) {
    report.Error("ledger: catalog query failed: " + Redact(e.what(), target));
  }
}

}  // namespace

int RunCheck(const Args& args) {
  std::string config_path;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      PrintCheckUsage(stdout);
      return 0;
    }
    if (arg == "-c" || arg == "--config") {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "dpgate check: %s needs a file name\n\n", arg.c_str());
        PrintCheckUsage(stderr);
        return 2;
      }
      config_path = args[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else {
      std::fprintf(stderr, "dpgate check: unknown argument '%s'\n\n", arg.c_str());
      PrintCheckUsage(stderr);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "dpgate check: no config given\n\n");
    PrintCheckUsage(stderr);
    return 2;
  }

  Report report;
  auto loaded = config::LoadConfig(config_path);
  if (!loaded.ok()) {
    std::string message = loaded.error().message;
    size_t start = 0;
    while (start <= message.size()) {
      const size_t end = message.find('\n', start);
      report.Error(message.substr(start, end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
    report.Skip("connection checks (the config is invalid)");
    return report.Finish();
  }
  const config::Config& config = *loaded;
  size_t tables = 0;
  for (const auto& d : config.datasets) tables += d.tables.size();
  const auto count = [](size_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
  };
  report.Ok("config " + config_path + " is valid (" + count(config.analysts.size(), "analyst") +
            ", " + count(config.datasets.size(), "dataset") + ", " + count(tables, "table") + ")");

  const Target upstream = DescribeTarget("upstream", config.upstream.dsn);
  if (auto connection = Connect(upstream, report)) {
    CheckUpstream(*connection, config, upstream, report);
  } else {
    report.Skip("table and column checks (upstream not reachable)");
  }
  const Target ledger = DescribeTarget("ledger", config.ledger.dsn);
  if (auto connection = Connect(ledger, report)) CheckLedger(*connection, config, ledger, report);
  return report.Finish();
}

}  // namespace dpgate::app
