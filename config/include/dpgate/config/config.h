// The validated, typed configuration of dpgate (DESIGN.md §4, docs/CONFIG.md).
// Only config/ reads YAML; every other library takes these structs. A Config
// returned by LoadConfig has passed every check: the rest of the code may rely
// on its invariants (documented per field) without re-checking.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dpgate/common/result.h"

namespace dpgate::config {

enum class AuthMode { kScram, kTrust };
enum class Period { kDay, kWeek, kMonth, kNever };
enum class Mechanism { kLaplace, kGaussian };
// Session pooling: a client keeps one upstream connection while connected;
// transaction pooling: it holds one only while a statement or transaction runs.
enum class PoolMode { kSession, kTransaction };

const char* ToString(AuthMode mode);
const char* ToString(Period period);
const char* ToString(Mechanism mechanism);
const char* ToString(PoolMode mode);

// A privacy budget. Invariants: 0 < epsilon (finite), 0 <= delta < 1.
struct Budget {
  double epsilon = 0;
  double delta = 0;
  Period period = Period::kMonth;
};

struct Listen {
  std::string host = "127.0.0.1";
  uint16_t port = 6543;  // 1..65535
};

// TLS for client connections. Both files exist and are readable at load time.
struct Tls {
  std::string cert;  // path, resolved relative to the config file's directory
  std::string key;
};

struct Upstream {
  std::string dsn;     // libpq connection string; non-empty
  int pool_size = 16;  // 1..1024
  PoolMode pool_mode = PoolMode::kSession;
};

struct Ledger {
  std::string dsn;                   // libpq connection string; non-empty
  std::string schema = "dp_ledger";  // a plain SQL identifier ([a-z_][a-z0-9_]*)
};

struct Analyst {
  std::string name;  // unique; [A-Za-z_][A-Za-z0-9_.@-]*, at most 63 bytes
  std::string
      scram;  // "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>"; empty only with auth: trust
  Budget budget;
};

struct QueryDefaults {
  double epsilon = 0.5;  // 0 < epsilon <= max_epsilon
  double delta = 1e-7;   // 0 <= delta < 1
  double max_epsilon = 2.0;
  Mechanism mechanism = Mechanism::kLaplace;
  std::chrono::seconds cache_ttl{3600};  // >= 0; 0 disables the cache
};

// Limits on client connections (docs/CONFIG.md `limits`, docs/PROXY.md §1
// item 11). A client past one of them gets a FATAL that names the key.
struct Limits {
  int max_connections = 1000;             // 1..100000
  uint32_t max_message_size = 4u << 20;   // bytes, 1 KiB..1 GiB
  std::chrono::seconds auth_timeout{30};  // 1s..10m, from connect to ReadyForQuery
  std::chrono::seconds idle_timeout{0};   // 0 (none)..365d, waiting for the next message
};

// A column of a private table. Either numeric bounds (lower <= upper, both
// finite) for use inside SUM/AVG/VARIANCE, or public `values` (non-empty,
// distinct) for use as a group key without partition selection, or neither
// (usable as a group key with thresholding, or in filters).
struct ColumnSpec {
  std::string name;
  std::optional<double> lower;
  std::optional<double> upper;
  std::vector<std::string> values;  // public group keys; empty if not declared
  bool has_bounds() const { return lower.has_value() && upper.has_value(); }
  bool has_public_values() const { return !values.empty(); }
};

struct TableSpec {
  std::string schema = "public";  // "public.employees" -> schema "public", name "employees"
  std::string name;
  bool is_public = false;           // public tables are forwarded unchanged; no other field applies
  std::string privacy_unit;         // required for private tables
  int max_groups_contributed = 1;   // k >= 1
  int max_rows_per_group = 1;       // c >= 1
  std::vector<ColumnSpec> columns;  // order as written in the file

  std::string qualified_name() const { return schema + "." + name; }
  const ColumnSpec* FindColumn(const std::string& column) const;
};

struct Dataset {
  std::string name;  // unique
  Budget budget;     // global budget: all analysts together
  std::vector<TableSpec> tables;
};

struct Config {
  std::string source_path;  // the file this was loaded from (for messages)
  Listen listen;
  std::optional<Tls> tls;
  Upstream upstream;
  Ledger ledger;
  AuthMode auth = AuthMode::kScram;
  std::vector<Analyst> analysts;
  QueryDefaults query;
  Limits limits;
  std::vector<Dataset> datasets;

  const Analyst* FindAnalyst(const std::string& name) const;
  // Looks a table up by schema and name; returns the table and its dataset.
  struct TableRef {
    const Dataset* dataset = nullptr;
    const TableSpec* table = nullptr;
  };
  std::optional<TableRef> FindTable(const std::string& schema, const std::string& name) const;
};

// Reads and validates a config file. On error (code "config"), the message
// names the file, the line and the field at fault and what is expected, e.g.
//   dpgate.yaml:12: datasets[0].tables[0].columns.salary: lower (10) is greater
//   than upper (5); expected lower <= upper
// Every problem found is reported, one per line, sorted by line (a YAML syntax
// error stops the reading, so only it is reported). ${VAR} in upstream.dsn and
// ledger.dsn is replaced from the environment (docs/CONFIG.md).
Result<Config> LoadConfig(const std::string& path);

// Same, from text already in memory; `source_name` stands in for the file name.
Result<Config> ParseConfig(const std::string& yaml_text, const std::string& source_name);

}  // namespace dpgate::config
