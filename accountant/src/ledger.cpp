#include "dpgate/accountant/ledger.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <tuple>

#include "schema_internal.h"
#include "text_util.h"

namespace dpgate::accountant {

using internal::Human;
using internal::JsonString;

namespace {

constexpr char kRefused[] = "ledger.refused";
constexpr char kUnavailable[] = "ledger.unavailable";
constexpr char kInvalid[] = "ledger.invalid";
constexpr char kLedgerError[] = "ledger.error";

// A budget may be exhausted exactly despite rounding (ten charges of 0.1 sum to
// 0.9999999999999999 or 1.0000000000000002): allow an overshoot of at most one
// part in 10^9 of the grant, and none at all when nothing was granted.
bool Covers(double granted, double spent, double need) {
  return spent + need <= granted + 1e-9 * std::fabs(granted);
}

std::string WithConnectTimeout(const std::string& dsn, int seconds) {
  if (dsn.find("connect_timeout") != std::string::npos || seconds <= 0) return dsn;
  const std::string kv = "connect_timeout=" + std::to_string(seconds);
  if (dsn.rfind("postgres://", 0) == 0 || dsn.rfind("postgresql://", 0) == 0) {
    return dsn + (dsn.find('?') == std::string::npos ? "?" : "&") + kv;
  }
  return dsn.empty() ? kv : dsn + " " + kv;
}

std::string PeriodName(config::Period p) {
  switch (p) {
    case config::Period::kDay:
      return "day";
    case config::Period::kWeek:
      return "week";
    case config::Period::kMonth:
      return "month";
    case config::Period::kNever:
      return "never";
  }
  return "never";
}

config::Period PeriodFromDb(const std::string& s) {
  config::Period p = config::Period::kNever;
  ParsePeriod(s, &p);
  return p;
}

PrincipalKind KindFromDb(const std::string& s) {
  return s == "dataset" ? PrincipalKind::kDataset : PrincipalKind::kAnalyst;
}

double Remaining(double granted, double spent) {
  return std::max(0.0, granted - spent);
}

bool HasNul(const std::string& s) {
  return s.find('\0') != std::string::npos;
}

Status ValidateRequest(const ChargeRequest& r) {
  auto bad = [](const std::string& what) { return MakeError(kInvalid, "invalid charge: " + what); };
  if (r.analyst.empty()) return bad("no analyst");
  if (r.dataset.empty()) return bad("no dataset");
  if (!std::isfinite(r.epsilon) || r.epsilon < 0) return bad("epsilon must be finite and >= 0");
  if (!std::isfinite(r.delta) || r.delta < 0 || r.delta >= 1) return bad("delta must be in [0, 1)");
  if (r.rho && (!std::isfinite(*r.rho) || *r.rho < 0)) return bad("rho must be finite and >= 0");
  for (const std::string* s :
       {&r.analyst, &r.dataset, &r.fingerprint, &r.original_sql, &r.rewritten_sql}) {
    if (HasNul(*s)) return bad("text contains a NUL byte");
  }
  return Status::Ok();
}

using AccountKey = std::tuple<std::string, std::string, std::string>;  // kind, principal, dataset

struct Account {
  config::Period period = config::Period::kNever;
  TimePoint period_start;
  double granted_epsilon = 0, granted_delta = 0;
  double spent_epsilon = 0, spent_delta = 0;
  int64_t charges = 0, refusals = 0;
  bool touched = false;
};

BudgetState StateOf(const AccountKey& key, const Account& a) {
  BudgetState s;
  s.kind = KindFromDb(std::get<0>(key));
  s.principal = std::get<1>(key);
  s.dataset = std::get<2>(key);
  s.period = a.period;
  s.period_start = a.period_start;
  s.period_label = BudgetPeriodLabel(a.period, a.period_start);
  s.granted_epsilon = a.granted_epsilon;
  s.granted_delta = a.granted_delta;
  s.spent_epsilon = a.spent_epsilon;
  s.spent_delta = a.spent_delta;
  s.charges = a.charges;
  s.refusals = a.refusals;
  return s;
}

std::string Who(const AccountKey& key) {
  if (std::get<0>(key) == "dataset") {
    return "dataset " + std::get<2>(key) + " (global budget, all analysts together)";
  }
  return "analyst " + std::get<1>(key) + " on dataset " + std::get<2>(key);
}

// Why `a` cannot pay `need`, or "" when it can.
std::string RefusalReason(const AccountKey& key, const Account& a, const ChargeRequest& r) {
  const std::string period =
      BudgetPeriodLabel(a.period, a.period_start) + " (" + PeriodName(a.period) + ")";
  if (!Covers(a.granted_epsilon, a.spent_epsilon, r.epsilon)) {
    return "budget exhausted: " + Who(key) +
           " has ε=" + Human(Remaining(a.granted_epsilon, a.spent_epsilon)) + " of " +
           Human(a.granted_epsilon) + " left in period " + period + ", this query needs " +
           Human(r.epsilon) + "; ask an administrator to grant more or lower SET dp.epsilon";
  }
  if (!Covers(a.granted_delta, a.spent_delta, r.delta)) {
    return "budget exhausted: " + Who(key) +
           " has δ=" + Human(Remaining(a.granted_delta, a.spent_delta)) + " of " +
           Human(a.granted_delta) + " left in period " + period +
           ", this query needs δ=" + Human(r.delta) +
           "; ask an administrator to grant more or lower SET dp.delta";
  }
  return "";
}

Error FromException(const std::exception& e, bool* broken) {
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    *broken = true;
    return MakeError(kUnavailable,
                     "the ledger connection broke while committing a charge, so its outcome is "
                     "unknown; the query does not run (fail closed): " +
                         std::string(e.what()));
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    *broken = true;
    return MakeError(kUnavailable,
                     "the ledger is unreachable, so no query can be charged and "
                     "none runs (fail closed): " +
                         std::string(e.what()));
  }
  return MakeError(kLedgerError, std::string("ledger: ") + e.what());
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

}  // namespace

const char* ToString(PrincipalKind kind) {
  return kind == PrincipalKind::kDataset ? "dataset" : "analyst";
}

double BudgetState::remaining_epsilon() const {
  return Remaining(granted_epsilon, spent_epsilon);
}
double BudgetState::remaining_delta() const {
  return Remaining(granted_delta, spent_delta);
}

std::string RedactDsn(const std::string& dsn) {
  std::string out = dsn;
  // URI form: postgresql://user:secret@host/db
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const size_t at = out.find('@', scheme + 3);
    const size_t colon = out.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // key=value form (and URI query parameters): password=... up to a space or
  // '&', or a quoted value with backslash escapes.
  size_t pos = 0;
  while ((pos = out.find("password", pos)) != std::string::npos) {
    size_t i = pos + 8;
    while (i < out.size() && out[i] == ' ') ++i;
    if (i >= out.size() || out[i] != '=') {
      pos = i;
      continue;
    }
    ++i;
    while (i < out.size() && out[i] == ' ') ++i;
    size_t end = i;
    if (end < out.size() && out[end] == '\'') {
      ++end;
      while (end < out.size() && out[end] != '\'') end += (out[end] == '\\') ? 2 : 1;
      end = std::min(out.size(), end + 1);
    } else {
      while (end < out.size() && out[end] != ' ' && out[end] != '&') ++end;
    }
    out.replace(i, end - i, "***");
    pos = i + 3;
  }
  return out;
}

struct Ledger::Impl {
  LedgerOptions options;
  std::string qs;  // quoted schema
  std::unique_ptr<pqxx::connection> conn;
  bool broken = false;

  TimePoint Now() const {
    return options.clock ? options.clock() : std::chrono::system_clock::now();
  }

  // Loads the accounts in `keys` (those that exist) with their state in the
  // current period, locking their period_spend rows when `lock` is set.
  std::map<AccountKey, Account> LoadAccounts(pqxx::transaction_base& tx,
                                             const std::set<AccountKey>& keys, TimePoint now,
                                             bool lock);

  std::vector<Result<ChargeReceipt>> ChargeBatchOnce(const std::vector<ChargeRequest>& requests,
                                                     const std::vector<size_t>& which);
};

Ledger::Ledger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Ledger::~Ledger() = default;
bool Ledger::broken() const {
  return impl_->broken || !impl_->conn || !impl_->conn->is_open();
}
const std::string& Ledger::schema() const {
  return impl_->options.schema;
}

Status MigrateLedger(const std::string& dsn, const std::string& schema,
                     int connect_timeout_seconds) {
  LedgerOptions o;
  o.dsn = dsn;
  o.schema = schema;
  o.connect_timeout_seconds = connect_timeout_seconds;
  o.migrate = true;
  auto ledger = Ledger::Open(o);
  return ledger.status();
}

Result<std::unique_ptr<Ledger>> Ledger::Open(LedgerOptions options) {
  if (!internal::IsPlainIdentifier(options.schema)) {
    return MakeError(kInvalid, "ledger schema name '" + options.schema +
                                   "' is not a plain SQL identifier ([a-z_][a-z0-9_]*)");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  try {
    impl->conn = std::make_unique<pqxx::connection>(
        WithConnectTimeout(impl->options.dsn, impl->options.connect_timeout_seconds));
    impl->qs = impl->conn->quote_name(impl->options.schema);
    {
      // Our own session settings, whatever PGOPTIONS or the role's defaults
      // say: no search_path dependence, UTC, shortest-exact float output.
      pqxx::nontransaction tx(*impl->conn);
      tx.exec(
          "SELECT pg_catalog.set_config('search_path', '', false), "
          "pg_catalog.set_config('TimeZone', 'UTC', false), "
          "pg_catalog.set_config('extra_float_digits', '3', false)");
    }
    Status s = impl->options.migrate ? internal::MigrateOn(*impl->conn, impl->options.schema)
                                     : internal::CheckVersion(*impl->conn, impl->options.schema);
    if (!s.ok()) return s.error();
  } catch (const pqxx::broken_connection& e) {
    return MakeError(kUnavailable, "cannot reach the ledger at '" + RedactDsn(impl->options.dsn) +
                                       "': " + Trim(e.what()) +
                                       "; no query can be charged, so none runs (fail closed)");
  } catch (const std::exception& e) {
    return MakeError(kLedgerError,
                     "ledger at '" + RedactDsn(impl->options.dsn) + "': " + Trim(e.what()));
  }
  return std::unique_ptr<Ledger>(new Ledger(std::move(impl)));
}

std::map<AccountKey, Account> Ledger::Impl::LoadAccounts(pqxx::transaction_base& tx,
                                                         const std::set<AccountKey>& keys,
                                                         TimePoint now, bool lock) {
  std::map<AccountKey, Account> out;
  if (keys.empty()) return out;
  std::string json = "[";
  for (const auto& k : keys) {
    if (json.size() > 1) json += ',';
    json += "{\"kind\":" + JsonString(std::get<0>(k)) +
            ",\"principal\":" + JsonString(std::get<1>(k)) +
            ",\"dataset\":" + JsonString(std::get<2>(k)) + "}";
  }
  json += "]";
  const pqxx::result accounts = tx.exec_params(
      "SELECT a.principal_kind, a.principal, a.dataset, a.period FROM " + qs +
          ".budget_accounts a JOIN pg_catalog.jsonb_to_recordset($1::text::jsonb) AS "
          "k(kind text, principal text, dataset text) ON a.principal_kind = k.kind AND "
          "a.principal = k.principal AND a.dataset = k.dataset",
      json);
  if (accounts.empty()) return out;
  std::string want = "[";
  for (const auto& row : accounts) {
    AccountKey key{row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>()};
    Account a;
    a.period = PeriodFromDb(row[3].as<std::string>());
    a.period_start = BudgetPeriodStart(a.period, now);
    if (want.size() > 1) want += ',';
    want += "{\"kind\":" + JsonString(std::get<0>(key)) +
            ",\"principal\":" + JsonString(std::get<1>(key)) +
            ",\"dataset\":" + JsonString(std::get<2>(key)) + ",\"period_start\":\"" +
            FormatTimestampUtc(a.period_start) + "\"}";
    out.emplace(std::move(key), a);
  }
  want += "]";
  const std::string granted =
      "(SELECT coalesce(pg_catalog.sum(b.epsilon), 0) FROM " + qs +
      ".budgets b WHERE b.principal_kind = s.principal_kind AND b.principal = s.principal AND "
      "b.dataset = s.dataset AND (b.period_start IS NULL OR b.period_start = s.period_start)), "
      "(SELECT coalesce(pg_catalog.sum(b.delta), 0) FROM " +
      qs +
      ".budgets b WHERE b.principal_kind = s.principal_kind AND b.principal = s.principal AND "
      "b.dataset = s.dataset AND (b.period_start IS NULL OR b.period_start = s.period_start))";
  pqxx::result spend;
  if (lock) {
    // Creates this period's row if needed and locks it, in one statement. The
    // ORDER BY fixes the lock order: dataset budgets before analyst budgets,
    // then by name.
    spend = tx.exec_params(
        "INSERT INTO " + qs +
            ".period_spend AS s (principal_kind, principal, dataset, period_start) "
            "SELECT k.kind, k.principal, k.dataset, k.period_start::timestamptz FROM "
            "pg_catalog.jsonb_to_recordset($1::text::jsonb) AS "
            "k(kind text, principal text, dataset text, period_start text) "
            "ORDER BY k.kind DESC, k.dataset, k.principal "
            "ON CONFLICT (principal_kind, principal, dataset, period_start) "
            "DO UPDATE SET charges = s.charges "
            "RETURNING s.principal_kind, s.principal, s.dataset, s.epsilon, s.delta, s.charges, "
            "s.refusals, " +
            granted,
        want);
  } else {
    spend = tx.exec_params(
        "SELECT s.principal_kind, s.principal, s.dataset, coalesce(p.epsilon, 0), "
        "coalesce(p.delta, 0), coalesce(p.charges, 0), "
        "coalesce(p.refusals, 0), " +
            granted +
            " FROM (SELECT k.kind AS principal_kind, k.principal, k.dataset, "
            "k.period_start::timestamptz AS period_start FROM "
            "pg_catalog.jsonb_to_recordset($1::text::jsonb) AS "
            "k(kind text, principal text, dataset text, period_start text)) s LEFT JOIN " +
            qs +
            ".period_spend p ON p.principal_kind = s.principal_kind AND p.principal = "
            "s.principal AND p.dataset = s.dataset AND p.period_start = s.period_start",
        want);
  }
  for (const auto& row : spend) {
    AccountKey key{row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>()};
    auto it = out.find(key);
    if (it == out.end()) continue;
    Account& a = it->second;
    a.spent_epsilon = row[3].as<double>();
    a.spent_delta = row[4].as<double>();
    a.charges = row[5].as<int64_t>();
    a.refusals = row[6].as<int64_t>();
    a.granted_epsilon = row[7].as<double>();
    a.granted_delta = row[8].as<double>();
  }
  return out;
}

Result<ChargeReceipt> Ledger::Charge(const ChargeRequest& request) {
  return std::move(ChargeBatch({request}).front());
}

std::vector<Result<ChargeReceipt>> Ledger::ChargeBatch(const std::vector<ChargeRequest>& requests) {
  std::vector<Result<ChargeReceipt>> results(requests.size(),
                                             Result<ChargeReceipt>(MakeError(kLedgerError, "")));
  std::vector<size_t> valid;
  for (size_t i = 0; i < requests.size(); ++i) {
    Status s = ValidateRequest(requests[i]);
    if (s.ok()) {
      valid.push_back(i);
    } else {
      results[i] = s.error();
    }
  }
  if (valid.empty()) return results;
  auto batch = impl_->ChargeBatchOnce(requests, valid);
  // One bad request (say, text PostgreSQL rejects) must not sink the others:
  // when a multi-request batch fails for a reason other than the connection,
  // charge each request on its own.
  const bool all_failed_same =
      !batch.empty() && !batch.front().ok() && batch.front().error().code == kLedgerError;
  if (valid.size() > 1 && all_failed_same && !broken()) {
    for (size_t i : valid) results[i] = std::move(impl_->ChargeBatchOnce(requests, {i}).front());
    return results;
  }
  for (size_t j = 0; j < valid.size(); ++j) results[valid[j]] = std::move(batch[j]);
  return results;
}

std::vector<Result<ChargeReceipt>> Ledger::Impl::ChargeBatchOnce(
    const std::vector<ChargeRequest>& requests, const std::vector<size_t>& which) {
  std::vector<Result<ChargeReceipt>> out;
  if (broken || !conn || !conn->is_open()) {
    broken = true;
    for (size_t n = 0; n < which.size(); ++n) {
      out.emplace_back(MakeError(kUnavailable,
                                 "the ledger connection is broken; no query can be "
                                 "charged, so none runs (fail closed)"));
    }
    return out;
  }
  const TimePoint now = Now();
  const int64_t at_us = ToMicros(now);
  const std::string at_text = FormatTimestampUtc(FromMicros(at_us));
  try {
    pqxx::work tx(*conn);
    // The chain head is locked first by every charging transaction: appends
    // are serialised (one chain), and since everything else is locked after
    // it, lock order is total and there can be no deadlock.
    const pqxx::row head = tx.exec1("SELECT last_id, pg_catalog.encode(last_hash, 'hex') FROM " +
                                    qs + ".chain_head FOR UPDATE");
    int64_t last_id = head[0].as<int64_t>();
    Hash prev{};
    if (!FromHex(head[1].as<std::string>(), &prev)) {
      throw std::runtime_error("chain_head.last_hash is not 32 bytes");
    }
    std::set<AccountKey> keys;
    for (size_t i : which) {
      keys.emplace("dataset", requests[i].dataset, requests[i].dataset);
      keys.emplace("analyst", requests[i].analyst, requests[i].dataset);
    }
    std::map<AccountKey, Account> accounts = LoadAccounts(tx, keys, now, /*lock=*/true);

    std::string rows_json = "[";
    std::vector<std::pair<AccountKey, AccountKey>> used;
    std::vector<ChargeRecord> records;
    std::vector<std::string> refusal;
    for (size_t i : which) {
      const ChargeRequest& r = requests[i];
      const AccountKey dkey{"dataset", r.dataset, r.dataset};
      const AccountKey akey{"analyst", r.analyst, r.dataset};
      auto ait = accounts.find(akey);
      auto dit = accounts.find(dkey);
      std::string reason;
      if (ait == accounts.end()) {
        reason = "no budget: analyst " + r.analyst + " has no budget on dataset " + r.dataset +
                 " in the ledger (is the analyst in the config, and has dpgate synced budgets?)";
      } else if (dit == accounts.end()) {
        reason = "no budget: dataset " + r.dataset + " has no global budget in the ledger";
      } else {
        reason = RefusalReason(dkey, dit->second, r);
        const std::string analyst_reason = RefusalReason(akey, ait->second, r);
        // Name the analyst's own budget first: it is the one they can act on.
        if (!analyst_reason.empty()) reason = analyst_reason;
      }
      ChargeRecord rec;
      rec.id = ++last_id;
      rec.at_us = at_us;
      rec.analyst = r.analyst;
      rec.dataset = r.dataset;
      rec.fingerprint = r.fingerprint;
      rec.original_sql = r.original_sql;
      rec.rewritten_sql = r.rewritten_sql;
      rec.rho = r.rho;
      rec.period_start_us = ait != accounts.end() ? ToMicros(ait->second.period_start) : 0;
      rec.dataset_period_start_us = dit != accounts.end() ? ToMicros(dit->second.period_start) : 0;
      if (reason.empty()) {
        rec.outcome = "charged";
        rec.epsilon = r.epsilon;
        rec.delta = r.delta;
        for (Account* a : {&ait->second, &dit->second}) {
          a->spent_epsilon += r.epsilon;
          a->spent_delta += r.delta;
          a->charges += 1;
          a->touched = true;
        }
      } else {
        // A refusal is recorded (so reports count it) but costs nothing.
        rec.outcome = "refused";
        rec.epsilon = 0;
        rec.delta = 0;
        rec.rho.reset();
        rec.detail = reason;
        for (auto it : {ait, dit}) {
          if (it == accounts.end()) continue;
          it->second.refusals += 1;
          it->second.touched = true;
        }
      }
      rec.prev_hash = prev;
      const Hash h = ChainHash(rec);
      prev = h;
      if (rows_json.size() > 1) rows_json += ',';
      rows_json +=
          "{\"id\":" + std::to_string(rec.id) + ",\"at\":\"" + at_text +
          "\",\"analyst\":" + JsonString(rec.analyst) + ",\"dataset\":" + JsonString(rec.dataset) +
          ",\"epsilon\":\"" + CanonicalDouble(rec.epsilon) + "\",\"delta\":\"" +
          CanonicalDouble(rec.delta) +
          "\",\"rho\":" + (rec.rho ? "\"" + CanonicalDouble(*rec.rho) + "\"" : "null") +
          ",\"fingerprint\":" + JsonString(rec.fingerprint) +
          ",\"original_sql\":" + JsonString(rec.original_sql) +
          ",\"rewritten_sql\":" + JsonString(rec.rewritten_sql) + ",\"outcome\":\"" + rec.outcome +
          "\",\"detail\":" + JsonString(rec.detail) + ",\"period_start\":\"" +
          FormatTimestampUtc(FromMicros(rec.period_start_us)) + "\",\"dataset_period_start\":\"" +
          FormatTimestampUtc(FromMicros(rec.dataset_period_start_us)) + "\",\"prev_hash\":\"" +
          ToHex(rec.prev_hash) + "\",\"hash\":\"" + ToHex(h) + "\"}";
      records.push_back(std::move(rec));
      used.emplace_back(akey, dkey);
      refusal.push_back(std::move(reason));
    }
    rows_json += "]";
    std::string spend_json = "[";
    for (const auto& [key, a] : accounts) {
      if (!a.touched) continue;
      if (spend_json.size() > 1) spend_json += ',';
      spend_json += "{\"kind\":" + JsonString(std::get<0>(key)) +
                    ",\"principal\":" + JsonString(std::get<1>(key)) +
                    ",\"dataset\":" + JsonString(std::get<2>(key)) + ",\"period_start\":\"" +
                    FormatTimestampUtc(a.period_start) + "\",\"epsilon\":\"" +
                    CanonicalDouble(a.spent_epsilon) + "\",\"delta\":\"" +
                    CanonicalDouble(a.spent_delta) + "\",\"charges\":" + std::to_string(a.charges) +
                    ",\"refusals\":" + std::to_string(a.refusals) + "}";
    }
    spend_json += "]";
    // All writes in one statement (one round trip while holding the chain).
    tx.exec_params(
        "WITH ins AS (INSERT INTO " + qs +
            ".charges (id, at, analyst, dataset, epsilon, delta, rho, fingerprint, original_sql, "
            "rewritten_sql, outcome, detail, period_start, dataset_period_start, prev_hash, hash) "
            "SELECT r.id, r.at::timestamptz, r.analyst, r.dataset, r.epsilon::float8, "
            "r.delta::float8, r.rho::float8, r.fingerprint, r.original_sql, r.rewritten_sql, "
            "r.outcome, r.detail, r.period_start::timestamptz, "
            "r.dataset_period_start::timestamptz, "
            "pg_catalog.decode(r.prev_hash, 'hex'), pg_catalog.decode(r.hash, 'hex') FROM "
            "pg_catalog.jsonb_to_recordset($1::text::jsonb) AS r(id bigint, at text, analyst text, "
            "dataset text, epsilon text, delta text, rho text, fingerprint text, original_sql "
            "text, "
            "rewritten_sql text, outcome text, detail text, period_start text, "
            "dataset_period_start text, prev_hash text, hash text) ORDER BY r.id), "
            "sp AS (UPDATE " +
            qs +
            ".period_spend s SET epsilon = v.epsilon::float8, delta = v.delta::float8, "
            "charges = v.charges, refusals = v.refusals FROM "
            "pg_catalog.jsonb_to_recordset($2::text::jsonb) AS v(kind text, principal text, "
            "dataset text, period_start text, epsilon text, delta text, charges bigint, refusals "
            "bigint) WHERE s.principal_kind = v.kind AND s.principal = v.principal AND s.dataset = "
            "v.dataset AND s.period_start = v.period_start::timestamptz) "
            "UPDATE " +
            qs + ".chain_head SET last_id = $3, last_hash = pg_catalog.decode($4, 'hex')",
        rows_json, spend_json, last_id, ToHex(prev));
    tx.commit();
    for (size_t j = 0; j < records.size(); ++j) {
      if (!refusal[j].empty()) {
        out.emplace_back(MakeError(kRefused, refusal[j]));
        continue;
      }
      ChargeReceipt receipt;
      receipt.charge_id = records[j].id;
      receipt.at = FromMicros(at_us);
      receipt.hash_hex = ToHex(j + 1 < records.size() ? records[j + 1].prev_hash : prev);
      // The state after the whole batch: an upper bound on the spend as of this
      // charge, which is what a caller deciding on the next query needs.
      receipt.analyst = StateOf(used[j].first, accounts.at(used[j].first));
      receipt.dataset = StateOf(used[j].second, accounts.at(used[j].second));
      out.emplace_back(std::move(receipt));
    }
  } catch (const std::exception& e) {
    out.clear();
    const Error err = FromException(e, &broken);
    for (size_t n = 0; n < which.size(); ++n) out.emplace_back(err);
  }
  return out;
}

Status Ledger::SyncBudgets(const config::Config& config) {
  const std::string& qs = impl_->qs;
  try {
    pqxx::work tx(*impl_->conn);
    // Two processes starting together must not both add the same difference.
    tx.exec_params(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), "
        "pg_catalog.hashtext($2))",
        "dpgate.ledger.sync", impl_->options.schema);
    struct Want {
      AccountKey key;
      config::Budget budget;
    };
    std::vector<Want> wants;
    for (const auto& ds : config.datasets) {
      wants.push_back({{"dataset", ds.name, ds.name}, ds.budget});
      for (const auto& an : config.analysts)
        wants.push_back({{"analyst", an.name, ds.name}, an.budget});
    }
    for (const Want& w : wants) {
      const auto& [kind, principal, dataset] = w.key;
      tx.exec_params("INSERT INTO " + qs +
                         ".budget_accounts (principal_kind, principal, dataset, period) VALUES "
                         "($1, $2, $3, $4) ON CONFLICT (principal_kind, principal, dataset) DO "
                         "UPDATE SET period = EXCLUDED.period WHERE budget_accounts.period <> "
                         "EXCLUDED.period",
                     kind, principal, dataset, PeriodName(w.budget.period));
      const pqxx::row rec = tx.exec_params1(
          "SELECT coalesce(pg_catalog.sum(epsilon), 0), "
          "coalesce(pg_catalog.sum(delta), 0) FROM " +
              qs +
              ".budgets WHERE principal_kind = $1 AND principal = $2 AND dataset = $3 AND "
              "source = 'config' AND period_start IS NULL",
          kind, principal, dataset);
      const double have_e = rec[0].as<double>(), have_d = rec[1].as<double>();
      const double de = w.budget.epsilon - have_e, dd = w.budget.delta - have_d;
      // Re-adding a difference that is only rounding would add a row on every
      // start; ignore differences below one part in 10^12.
      const bool changed = std::fabs(de) > 1e-12 * std::max(1.0, std::fabs(w.budget.epsilon)) ||
                           std::fabs(dd) > 1e-12 * std::max(1e-300, std::fabs(w.budget.delta));
      if (!changed) continue;
      const std::string note = "config: epsilon " + Human(have_e) + " -> " +
                               Human(w.budget.epsilon) + ", delta " + Human(have_d) + " -> " +
                               Human(w.budget.delta) + " per " + PeriodName(w.budget.period);
      tx.exec_params("INSERT INTO " + qs +
                         ".budgets (principal_kind, principal, dataset, period_start, epsilon, "
                         "delta, source, note) VALUES ($1, $2, $3, NULL, $4::text::float8, "
                         "$5::text::float8, 'config', $6)",
                     kind, principal, dataset, CanonicalDouble(de), CanonicalDouble(dd), note);
    }
    tx.commit();
  } catch (const std::exception& e) {
    return FromException(e, &impl_->broken);
  }
  return Status::Ok();
}

Status Ledger::Grant(const GrantRequest& request) {
  if (!std::isfinite(request.epsilon) || !std::isfinite(request.delta) || request.epsilon < 0 ||
      request.delta < 0 || (request.epsilon == 0 && request.delta == 0)) {
    return MakeError(kInvalid, "a grant adds budget: epsilon and delta must be >= 0, not both 0");
  }
  const std::string principal =
      request.kind == PrincipalKind::kDataset ? request.dataset : request.analyst;
  const std::string kind = ToString(request.kind);
  const std::string& qs = impl_->qs;
  try {
    pqxx::work tx(*impl_->conn);
    const pqxx::result acc = tx.exec_params(
        "SELECT period FROM " + qs +
            ".budget_accounts WHERE principal_kind = $1 AND principal = $2 AND dataset = $3",
        kind, principal, request.dataset);
    if (acc.empty()) {
      return MakeError(kInvalid, "no budget for " + kind + " " + principal + " on dataset " +
                                     request.dataset +
                                     " in the ledger: add it to the config first (budgets are "
                                     "created from the config)");
    }
    const config::Period period = PeriodFromDb(acc[0][0].as<std::string>());
    const TimePoint start = BudgetPeriodStart(period, impl_->Now());
    tx.exec_params("INSERT INTO " + qs +
                       ".budgets (principal_kind, principal, dataset, period_start, epsilon, "
                       "delta, source, note) VALUES ($1, $2, $3, $4::timestamptz, "
                       "$5::text::float8, $6::text::float8, 'grant', $7)",
                   kind, principal, request.dataset, FormatTimestampUtc(start),
                   CanonicalDouble(request.epsilon), CanonicalDouble(request.delta), request.note);
    tx.commit();
  } catch (const std::exception& e) {
    return FromException(e, &impl_->broken);
  }
  return Status::Ok();
}

Result<std::vector<BudgetState>> Ledger::Budgets(const BudgetFilter& filter) {
  const std::string& qs = impl_->qs;
  try {
    pqxx::read_transaction tx(*impl_->conn);
    const pqxx::result rows = tx.exec_params(
        "SELECT principal_kind, principal, dataset FROM " + qs +
            ".budget_accounts WHERE ($1 = '' OR principal_kind = 'dataset' OR principal = $1) "
            "AND ($2 = '' OR dataset = $2) ORDER BY dataset, principal_kind DESC, principal",
        filter.analyst.value_or(""), filter.dataset.value_or(""));
    std::set<AccountKey> keys;
    std::vector<AccountKey> order;
    for (const auto& r : rows) {
      AccountKey k{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>()};
      keys.insert(k);
      order.push_back(std::move(k));
    }
    auto accounts = impl_->LoadAccounts(tx, keys, impl_->Now(), /*lock=*/false);
    std::vector<BudgetState> out;
    for (const auto& k : order) {
      auto it = accounts.find(k);
      if (it != accounts.end()) out.push_back(StateOf(k, it->second));
    }
    return out;
  } catch (const std::exception& e) {
    return FromException(e, &impl_->broken);
  }
}

Result<VerifyReport> Ledger::Verify() {
  const std::string& qs = impl_->qs;
  VerifyReport report;
  try {
    // One snapshot for the head and every row, so concurrent appends do not
    // look like damage.
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(*impl_->conn);
    const pqxx::row head =
        tx.exec1("SELECT last_id, pg_catalog.encode(last_hash, 'hex') FROM " + qs + ".chain_head");
    const int64_t head_id = head[0].as<int64_t>();
    const std::string head_hash = head[1].as<std::string>();
    Hash prev = GenesisHash();
    int64_t expected = 1;
    auto fail = [&](int64_t id, std::string reason) {
      report.ok = false;
      report.first_bad_id = id;
      report.reason = std::move(reason);
      return report;
    };
    constexpr int kPage = 2000;
    int64_t after = 0;
    for (;;) {
      const pqxx::result page = tx.exec_params(
          "SELECT id, (extract(epoch FROM at) * 1000000)::bigint, analyst, dataset, "
          "epsilon, delta, rho, fingerprint, original_sql, rewritten_sql, outcome, detail, "
          "(extract(epoch FROM period_start) * 1000000)::bigint, "
          "(extract(epoch FROM dataset_period_start) * 1000000)::bigint, "
          "pg_catalog.encode(prev_hash, 'hex'), pg_catalog.encode(hash, 'hex') FROM " +
              qs + ".charges WHERE id > $1 ORDER BY id LIMIT " + std::to_string(kPage),
          after);
      for (const auto& r : page) {
        ChargeRecord rec;
        rec.id = r[0].as<int64_t>();
        if (rec.id != expected) {
          return fail(expected, "gap: row " + std::to_string(expected) +
                                    " is missing (the next row has id " + std::to_string(rec.id) +
                                    "): rows were deleted or renumbered");
        }
        rec.at_us = r[1].as<int64_t>();
        rec.analyst = r[2].as<std::string>();
        rec.dataset = r[3].as<std::string>();
        rec.epsilon = r[4].as<double>();
        rec.delta = r[5].as<double>();
        if (!r[6].is_null()) rec.rho = r[6].as<double>();
        rec.fingerprint = r[7].as<std::string>();
        rec.original_sql = r[8].as<std::string>();
        rec.rewritten_sql = r[9].as<std::string>();
        rec.outcome = r[10].as<std::string>();
        rec.detail = r[11].as<std::string>();
        rec.period_start_us = r[12].as<int64_t>();
        rec.dataset_period_start_us = r[13].as<int64_t>();
        Hash stored_prev{}, stored{};
        if (!FromHex(r[14].as<std::string>(), &stored_prev) || stored_prev != prev) {
          return fail(rec.id, "broken link: row " + std::to_string(rec.id) +
                                  "'s prev_hash is not the hash of row " +
                                  std::to_string(rec.id - 1) +
                                  " (one of the two was altered, or rows were reordered)");
        }
        rec.prev_hash = stored_prev;
        const Hash computed = ChainHash(rec);
        if (!FromHex(r[15].as<std::string>(), &stored) || stored != computed) {
          return fail(rec.id, "hash mismatch: row " + std::to_string(rec.id) +
                                  "'s content does not match its hash (the row was altered)");
        }
        prev = computed;
        after = rec.id;
        ++expected;
        ++report.rows_checked;
      }
      if (page.size() < static_cast<size_t>(kPage)) break;
    }
    if (head_id != expected - 1) {
      if (head_id > expected - 1) {
        return fail(expected, "rows " + std::to_string(expected) + ".." + std::to_string(head_id) +
                                  " are missing: the chain head records " +
                                  std::to_string(head_id) + " rows but the table ends at row " +
                                  std::to_string(expected - 1));
      }
      return fail(head_id + 1, "the chain head records " + std::to_string(head_id) +
                                   " rows but the table has rows up to " +
                                   std::to_string(expected - 1) +
                                   ": rows were added outside the chain or the head was reset");
    }
    if (head_hash != ToHex(prev)) {
      return fail(std::max<int64_t>(head_id, 1), "the chain head's hash does not match row " +
                                                     std::to_string(head_id) +
                                                     " (the head or the last row was altered)");
    }
    report.head_hash_hex = ToHex(prev);
    // Budget checks read the running totals, not the chain: totals that were
    // lowered by hand would let an analyst overspend while the chain still
    // verifies. So the totals must agree with the (verified) charged rows.
    const pqxx::result totals = tx.exec(
        "WITH c AS (SELECT 'analyst'::text AS kind, analyst AS principal, dataset, period_start, "
        "pg_catalog.sum(epsilon) AS e, pg_catalog.sum(delta) AS d, pg_catalog.count(*) AS n FROM " +
        qs +
        ".charges WHERE outcome = 'charged' GROUP BY 2, 3, 4 UNION ALL "
        "SELECT 'dataset', dataset, dataset, dataset_period_start, pg_catalog.sum(epsilon), "
        "pg_catalog.sum(delta), pg_catalog.count(*) FROM " +
        qs +
        ".charges WHERE outcome = 'charged' GROUP BY 2, 3, 4) "
        "SELECT coalesce(c.kind, s.principal_kind), coalesce(c.principal, s.principal), "
        "coalesce(c.dataset, s.dataset), "
        "pg_catalog.to_char(coalesce(c.period_start, s.period_start) AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD'), coalesce(c.e, 0), coalesce(s.epsilon, 0), coalesce(c.d, 0), "
        "coalesce(s.delta, 0), coalesce(c.n, 0), coalesce(s.charges, 0) FROM c FULL JOIN " +
        qs +
        ".period_spend s ON s.principal_kind = c.kind AND s.principal = c.principal AND "
        "s.dataset = c.dataset AND s.period_start = c.period_start ORDER BY 1, 2, 3, 4");
    auto differ = [](double a, double b) {
      return std::fabs(a - b) > 1e-9 * std::max(std::fabs(a), std::fabs(b));
    };
    for (const auto& t : totals) {
      const double ce = t[4].as<double>(), se = t[5].as<double>();
      const double cd = t[6].as<double>(), sd = t[7].as<double>();
      const int64_t cn = t[8].as<int64_t>(), sn = t[9].as<int64_t>();
      if (cn != sn || differ(ce, se) || differ(cd, sd)) {
        report.ok = false;
        report.reason = "running totals (period_spend) disagree with the charges for " +
                        t[0].as<std::string>() + " " + t[1].as<std::string>() + " on dataset " +
                        t[2].as<std::string>() + ", period starting " + t[3].as<std::string>() +
                        ": charges say " + std::to_string(cn) + " charges, ε=" + Human(ce) +
                        ", totals say " + std::to_string(sn) + ", ε=" + Human(se) +
                        " (the totals were altered)";
        return report;
      }
    }
  } catch (const std::exception& e) {
    return FromException(e, &impl_->broken);
  }
  return report;
}

Result<std::vector<ChargeRow>> Ledger::Charges(TimePoint since, TimePoint until) {
  const std::string& qs = impl_->qs;
  std::vector<ChargeRow> out;
  try {
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(*impl_->conn);
    // Cumulative spend counts the whole budget period, including charges made
    // before `since`, so a chart of it is comparable with the budget line.
    const pqxx::result rows = tx.exec_params(
        "WITH periods AS (SELECT DISTINCT analyst, dataset, period_start FROM " + qs +
            ".charges WHERE at >= $1::timestamptz AND at < $2::timestamptz), "
            "c AS (SELECT c.*, pg_catalog.sum(CASE WHEN c.outcome = 'charged' THEN c.epsilon "
            "ELSE 0 END) OVER (PARTITION BY c.analyst, c.dataset, c.period_start ORDER BY c.id) "
            "AS cum FROM " +
            qs +
            ".charges c JOIN periods p ON p.analyst = c.analyst AND p.dataset = c.dataset AND "
            "p.period_start = c.period_start WHERE c.at < $2::timestamptz) "
            "SELECT id, (extract(epoch FROM at) * 1000000)::bigint, analyst, dataset, "
            "epsilon, delta, rho, fingerprint, outcome, "
            "(extract(epoch FROM period_start) * 1000000)::bigint, cum FROM c "
            "WHERE at >= $1::timestamptz ORDER BY id",
        FormatTimestampUtc(since), FormatTimestampUtc(until));
    for (const auto& r : rows) {
      ChargeRow c;
      c.id = r[0].as<int64_t>();
      c.at = FromMicros(r[1].as<int64_t>());
      c.analyst = r[2].as<std::string>();
      c.dataset = r[3].as<std::string>();
      c.epsilon = r[4].as<double>();
      c.delta = r[5].as<double>();
      if (!r[6].is_null()) c.rho = r[6].as<double>();
      c.fingerprint = r[7].as<std::string>();
      c.outcome = r[8].as<std::string>();
      c.period_start = FromMicros(r[9].as<int64_t>());
      c.period_cumulative_epsilon = r[10].as<double>();
      out.push_back(std::move(c));
    }
  } catch (const std::exception& e) {
    return FromException(e, &impl_->broken);
  }
  return out;
}

Result<std::vector<GrantRow>> Ledger::Grants() {
  const std::string& qs = impl_->qs;
  std::vector<GrantRow> out;
  try {
    pqxx::read_transaction tx(*impl_->conn);
    const pqxx::result rows = tx.exec(
        "SELECT principal_kind, principal, dataset, "
        "(extract(epoch FROM period_start) * 1000000)::bigint, epsilon, delta, source, "
        "(extract(epoch FROM granted_at) * 1000000)::bigint, note FROM " +
        qs + ".budgets ORDER BY id");
    for (const auto& r : rows) {
      GrantRow g;
      g.kind = KindFromDb(r[0].as<std::string>());
      g.principal = r[1].as<std::string>();
      g.dataset = r[2].as<std::string>();
      if (!r[3].is_null()) g.period_start = FromMicros(r[3].as<int64_t>());
      g.epsilon = r[4].as<double>();
      g.delta = r[5].as<double>();
      g.source = r[6].as<std::string>();
      g.granted_at = FromMicros(r[7].as<int64_t>());
      g.note = r[8].as<std::string>();
      out.push_back(std::move(g));
    }
  } catch (const std::exception& e) {
    return FromException(e, &impl_->broken);
  }
  return out;
}

}  // namespace dpgate::accountant
