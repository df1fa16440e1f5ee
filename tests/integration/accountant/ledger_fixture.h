// Shared set-up for the ledger's integration tests: a fresh database per test,
// a config built in code (the YAML loader is not needed here), and a few SQL
// helpers run as the superuser.
#pragma once

#include <atomic>
#include <chrono>
#include <pqxx/pqxx>
#include <string>

#include "dpgate/accountant/ledger.h"
#include "dpgate/config/config.h"
#include "test_pg.h"

namespace ledger_test {

using dpgate::accountant::ChargeRequest;
using dpgate::accountant::Ledger;
using dpgate::accountant::LedgerOptions;
using dpgate::config::Period;

struct LedgerDb {
  dpgate::testing::TestPg pg;
  std::string db;
  std::string dsn;
  std::string schema = "dp_ledger";
};

inline LedgerDb NewLedgerDb(const std::string& prefix) {
  LedgerDb l;
  l.pg = dpgate::testing::RequireTestPg();
  l.db = dpgate::testing::CreateTestDatabase(l.pg, prefix);
  l.dsn = l.pg.Dsn(l.db);
  return l;
}

inline dpgate::config::Analyst MakeAnalyst(const std::string& name, double eps, double delta,
                                           Period period) {
  dpgate::config::Analyst a;
  a.name = name;
  a.budget = {eps, delta, period};
  return a;
}

inline dpgate::config::Dataset MakeDataset(const std::string& name, double eps, double delta,
                                           Period period) {
  dpgate::config::Dataset d;
  d.name = name;
  d.budget = {eps, delta, period};
  return d;
}

// A test clock that the test moves by hand.
struct ManualClock {
  std::atomic<int64_t> micros{0};
  void Set(std::chrono::system_clock::time_point t) {
    micros = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  }
  dpgate::accountant::Clock AsClock() {
    return [this] {
      return std::chrono::system_clock::time_point{std::chrono::microseconds{micros.load()}};
    };
  }
};

inline std::unique_ptr<Ledger> OpenLedger(const LedgerDb& l,
                                          dpgate::accountant::Clock clock = nullptr) {
  LedgerOptions o;
  o.dsn = l.dsn;
  o.schema = l.schema;
  o.clock = std::move(clock);
  auto r = Ledger::Open(o);
  if (!r.ok()) throw std::runtime_error("Ledger::Open: " + r.error().message);
  return std::move(r).value();
}

inline ChargeRequest Req(const std::string& analyst, const std::string& dataset, double eps,
                         double delta = 0) {
  ChargeRequest r;
  r.analyst = analyst;
  r.dataset = dataset;
  r.epsilon = eps;
  r.delta = delta;
  r.fingerprint = "fp";
  r.original_sql = "SELECT count(*) FROM public.employees";
  r.rewritten_sql = "SELECT count(*) FROM public.employees /* bounded */";
  return r;
}

// One value from a query run as the superuser.
inline std::string Scalar(const LedgerDb& l, const std::string& sql) {
  pqxx::connection c(l.dsn);
  pqxx::nontransaction tx(c);
  const pqxx::row r = tx.exec1(sql);
  return r[0].is_null() ? "NULL" : r[0].c_str();
}

}  // namespace ledger_test

// REQUIRE that a Status or Result is ok, showing its error message otherwise.
#define REQUIRE_OK(expr)                                             \
  do {                                                               \
    const auto& ledger_test_s = (expr);                              \
    INFO((ledger_test_s.ok() ? "" : ledger_test_s.error().message)); \
    REQUIRE(ledger_test_s.ok());                                     \
  } while (0)
