// Schema facts from the upstream catalog (docs/REWRITER.md §8.5). The
// per-row shape's privacy argument (docs/PRIVACY.md §2.3) rests on what is
// declared unique here, so every condition below excludes a way in which a
// "unique" index could still let `FROM table` return two rows with equal,
// or NULL, values in the column.
#include "schema_facts_loader.h"

#include <libpq-fe.h>

namespace dpgate::app {
namespace {

// A dead upstream must not hang `dpgate serve` at start.
constexpr const char* kConnectTimeout = "5";

// One row per column of the relation: name, type (with collation, as an
// opaque text compared for equality only), and whether it is unique and NOT
// NULL on its own:
// - attnotnull: a NULL could pool several people (unique indexes allow many
//   NULLs), so only NOT NULL columns count;
// - a unique index with one key column that is this plain column
//   (indnkeyatts = 1, no expression, no predicate: a partial index says
//   nothing about the rows outside it), valid, ready and live (an index left
//   by a failed CREATE INDEX CONCURRENTLY is invalid and may not hold),
//   immediate (a deferrable constraint may be violated inside a transaction);
// - the type's default operator class and the column's own collation, so the
//   index's equality is the `=` that GROUP BY and a join use;
// - no inheritance children for an ordinary table: `FROM t` also reads the
//   children, which its index does not cover. (A partitioned table's unique
//   index covers all partitions: it must contain the partition key.)
// A primary key is such an index, so it needs no separate query.
constexpr const char* kColumnsQuery = R"(
SELECT a.attname::pg_catalog.text,
       pg_catalog.format_type(a.atttypid, NULL) ||
         CASE WHEN a.attcollation = 0 THEN ''
              ELSE ' COLLATE #' || a.attcollation::pg_catalog.text END,
       a.attnotnull
         AND NOT (c.relkind = 'r' AND c.relhassubclass)
         AND EXISTS (
           SELECT 1
           FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_opclass o ON o.oid = i.indclass[0]
           WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indisready
             AND i.indislive AND i.indimmediate AND i.indnkeyatts = 1
             AND i.indkey[0] = a.attnum AND i.indexprs IS NULL AND i.indpred IS NULL
             AND i.indcollation[0] = a.attcollation AND o.opcdefault)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'm', 'v', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
)";

// The DSN's password, so that no message repeats it.
std::string PasswordOf(const std::string& dsn, bool* has_timeout) {
  std::string password;
  *has_timeout = false;
  char* error = nullptr;
  if (PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error)) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (o->val == nullptr || o->val[0] == '\0') continue;
      if (std::string(o->keyword) == "password") password = o->val;
      if (std::string(o->keyword) == "connect_timeout") *has_timeout = true;
    }
    PQconninfoFree(options);
  }
  if (error != nullptr) PQfreemem(error);
  return password;
}

// One line (libpq's messages span several), without the password.
std::string WithoutPassword(std::string text, const std::string& password) {
  if (!password.empty()) {
    for (size_t at = text.find(password); at != std::string::npos;
         at = text.find(password, at + 3)) {
      text.replace(at, password.size(), "***");
    }
  }
  std::string line;
  for (const char ch : text) {
    const bool space = ch == '\n' || ch == '\t' || ch == ' ';
    if (space && (line.empty() || line.back() == ' ')) continue;
    if (ch == '\n') {
      line += "; ";
    } else {
      line += space ? ' ' : ch;
    }
  }
  while (!line.empty() && (line.back() == ' ' || line.back() == ';')) line.pop_back();
  return line;
}

}  // namespace

Result<rewriter::SchemaFacts> LoadSchemaFacts(const config::Config& config,
                                              pqxx::connection& connection) {
  rewriter::SchemaFacts facts;
  try {
    pqxx::read_transaction tx(connection);
    for (const auto& dataset : config.datasets) {
      for (const auto& table : dataset.tables) {
        const std::string relation = table.qualified_name();
        for (const auto& row : tx.exec_params(kColumnsQuery, table.schema, table.name)) {
          const auto column = row[0].as<std::string>();
          facts.SetColumnType(relation, column, row[1].as<std::string>());
          if (row[2].as<bool>()) facts.AddUniqueNotNull(relation, column);
        }
      }
    }
  } catch (const std::exception& e) {
    return MakeError("upstream", std::string("reading schema facts failed: ") + e.what());
  }
  return facts;
}

Result<rewriter::SchemaFacts> LoadSchemaFacts(const config::Config& config,
                                              const std::string& dsn) {
  bool has_timeout = false;
  const std::string password = PasswordOf(dsn, &has_timeout);
  std::string target = dsn;
  if (!has_timeout) {
    const bool uri = dsn.rfind("postgresql://", 0) == 0 || dsn.rfind("postgres://", 0) == 0;
    target += uri ? (dsn.find('?') == std::string::npos ? "?" : "&") : " ";
    target += std::string("connect_timeout=") + kConnectTimeout;
  }
  try {
    pqxx::connection connection(target);
    auto facts = LoadSchemaFacts(config, connection);
    if (!facts.ok()) {
      return MakeError(facts.error().code, WithoutPassword(facts.error().message, password));
    }
    return facts;
  } catch (const std::exception& e) {
    return MakeError("upstream", "cannot connect to upstream to read schema facts: " +
                                     WithoutPassword(e.what(), password));
  }
}

}  // namespace dpgate::app
