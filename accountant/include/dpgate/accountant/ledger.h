// The privacy ledger (DESIGN.md §5, docs/LEDGER.md): budgets, charges and the
// tamper-evident hash chain, in a PostgreSQL schema that dpgate creates and
// migrates. A `Ledger` is one connection and is used by one thread at a time;
// `AsyncLedger` (async_ledger.h) is the pool the proxy uses.
//
// Errors are values. Error::code is one of:
//   "ledger.refused"      the budget does not cover the charge (message says how much is left)
//   "ledger.unavailable"  the ledger cannot be reached, or a commit's outcome is unknown:
//                         fail closed, the query must not run
//   "ledger.busy"         AsyncLedger's queue is full
//   "ledger.invalid"      a malformed request (e.g. negative epsilon)
//   "ledger.error"        anything else PostgreSQL refused (message says what)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dpgate/accountant/chain.h"
#include "dpgate/accountant/period.h"
#include "dpgate/common/result.h"
#include "dpgate/config/config.h"

namespace dpgate::accountant {

struct LedgerOptions {
  std::string dsn;                   // libpq connection string (never logged unredacted)
  std::string schema = "dp_ledger";  // a plain SQL identifier
  Clock clock;                       // empty: the system clock
  int connect_timeout_seconds = 5;   // added to the DSN unless it sets connect_timeout
  bool migrate = true;  // create/migrate the schema when opening; if false, it must exist
};

// One query's cost. `rho` is its zCDP cost when it was accounted that way
// (Gaussian releases); (epsilon, delta) is then the converted figure that is
// actually charged, and both are stored.
struct ChargeRequest {
  std::string analyst;
  std::string dataset;
  double epsilon = 0;
  double delta = 0;
  std::optional<double> rho;
  std::string fingerprint;
  std::string original_sql;
  std::string rewritten_sql;
};

enum class PrincipalKind { kAnalyst, kDataset };
const char* ToString(PrincipalKind kind);

// One budget (an analyst's on a dataset, or a dataset's global budget) in one
// period.
struct BudgetState {
  PrincipalKind kind = PrincipalKind::kAnalyst;
  std::string principal;  // analyst name, or the dataset name for a global budget
  std::string dataset;
  config::Period period = config::Period::kMonth;
  TimePoint period_start;
  std::string period_label;  // "2026-11", "2026-W48", ...
  double granted_epsilon = 0;
  double granted_delta = 0;
  double spent_epsilon = 0;
  double spent_delta = 0;
  int64_t charges = 0;   // accepted charges in this period
  int64_t refusals = 0;  // refused attempts in this period
  double remaining_epsilon() const;
  double remaining_delta() const;
};

// Proof of a committed charge: it is durable when this is returned.
struct ChargeReceipt {
  int64_t charge_id = 0;
  TimePoint at;
  std::string hash_hex;
  BudgetState analyst;  // after this charge
  BudgetState dataset;  // after this charge
};

struct GrantRequest {
  PrincipalKind kind = PrincipalKind::kAnalyst;
  std::string analyst;  // ignored for kDataset
  std::string dataset;
  double epsilon = 0;
  double delta = 0;
  std::string note;
};

struct BudgetFilter {
  std::optional<std::string> analyst;
  std::optional<std::string> dataset;
};

struct VerifyReport {
  bool ok = true;
  int64_t rows_checked = 0;
  std::optional<int64_t> first_bad_id;  // the first bad row, when a row is at fault
  std::string reason;                   // "hash mismatch ...", "broken link ...", ...
  std::string head_hash_hex;            // the last verified row's hash
};

// One row of `charges` as stored, for reports.
struct ChargeRow {
  int64_t id = 0;
  TimePoint at;
  std::string analyst;
  std::string dataset;
  double epsilon = 0;
  double delta = 0;
  std::optional<double> rho;
  std::string fingerprint;
  std::string outcome;
  TimePoint period_start;
  double period_cumulative_epsilon = 0;  // analyst's charged ε in its period up to this row
};

// One grant row of `budgets`.
struct GrantRow {
  PrincipalKind kind = PrincipalKind::kAnalyst;
  std::string principal;
  std::string dataset;
  std::optional<TimePoint> period_start;  // empty: recurring (every period)
  double epsilon = 0;
  double delta = 0;
  std::string source;  // "config" | "grant"
  TimePoint granted_at;
  std::string note;
};

// Creates or migrates `schema` in the database at `dsn`. Safe to run from
// several processes at once (one takes a transaction-scoped advisory lock, the
// others wait and then find nothing to do) and idempotent.
Status MigrateLedger(const std::string& dsn, const std::string& schema,
                     int connect_timeout_seconds = 5);

// The schema version this build migrates to.
int LatestLedgerSchemaVersion();

class Ledger {
 public:
  // Connects (and migrates unless options.migrate is false).
  static Result<std::unique_ptr<Ledger>> Open(LedgerOptions options);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Makes the ledger's budgets match the config: every analyst gets a budget
  // on every dataset, every dataset a global budget. A budget that is absent is
  // created; a configured amount that differs from the recorded allowance adds
  // one grant row for the difference (append-only history). Lowering reduces
  // the allowance but never un-spends: past charges still count.
  Status SyncBudgets(const config::Config& config);

  // Charges one query in one transaction; see docs/LEDGER.md "Charging".
  Result<ChargeReceipt> Charge(const ChargeRequest& request);

  // Charges several requests in one transaction (group commit). Each request is
  // checked in order against the budgets as left by the ones before it, exactly
  // as if charged one by one; the results line up with `requests`.
  std::vector<Result<ChargeReceipt>> ChargeBatch(const std::vector<ChargeRequest>& requests);

  // Adds budget to the current period of an existing budget (a top-up).
  Status Grant(const GrantRequest& request);

  // Budget states in the current period.
  Result<std::vector<BudgetState>> Budgets(const BudgetFilter& filter);

  // Recomputes the hash chain, then checks the running totals the budget
  // checks use against the charged rows; see docs/LEDGER.md "Verification".
  Result<VerifyReport> Verify();

  // Charges (charged and refused) with since <= at < until, for reports, in id
  // order; period_cumulative_epsilon counts the whole period, including charges
  // before `since`.
  Result<std::vector<ChargeRow>> Charges(TimePoint since, TimePoint until);
  Result<std::vector<GrantRow>> Grants();

  // True when the connection is known to be broken (AsyncLedger reconnects).
  bool broken() const;

  const std::string& schema() const;

 private:
  struct Impl;
  explicit Ledger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The DSN with any password removed, for messages and logs.
std::string RedactDsn(const std::string& dsn);

}  // namespace dpgate::accountant
