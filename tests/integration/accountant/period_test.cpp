// Budget periods roll over in UTC (with an injected clock), `never` never
// rolls, grants top up the current period only, and config changes are
// append-only grant rows that never un-spend.
#include <catch2/catch.hpp>

#include "ledger_fixture.h"

using namespace ledger_test;
using namespace std::chrono;

namespace {
system_clock::time_point At(int y, unsigned m, unsigned d, int h = 0, int min = 0, int s = 0) {
  return sys_days{year{y} / month{m} / day{d}} + hours{h} + minutes{min} + seconds{s};
}

dpgate::config::Config Cfg(double alice_eps) {
  dpgate::config::Config cfg;
  cfg.analysts.push_back(MakeAnalyst("alice", alice_eps, 1e-5, Period::kMonth));
  cfg.analysts.push_back(MakeAnalyst("bob", 1.0, 1e-5, Period::kNever));
  cfg.analysts.push_back(MakeAnalyst("carol", 1.0, 1e-5, Period::kWeek));
  cfg.analysts.push_back(MakeAnalyst("dave", 1.0, 1e-5, Period::kDay));
  cfg.datasets.push_back(MakeDataset("hr", 1000, 1e-3, Period::kMonth));
  return cfg;
}
}  // namespace

TEST_CASE("spend in November does not count in December, and never never rolls over") {
  const LedgerDb l = NewLedgerDb("ledger_period");
  ManualClock clock;
  clock.Set(At(2026, 11, 30, 23, 59, 59));
  auto ledger = OpenLedger(l, clock.AsClock());
  REQUIRE_OK(ledger->SyncBudgets(Cfg(1.0)));

  REQUIRE(ledger->Charge(Req("alice", "hr", 0.6)).ok());
  REQUIRE(ledger->Charge(Req("bob", "hr", 0.6)).ok());
  auto refused = ledger->Charge(Req("alice", "hr", 0.6));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == "ledger.refused");
  CHECK(refused.error().message ==
        "budget exhausted: analyst alice on dataset hr has ε=0.4 of 1 left in period 2026-11 "
        "(month), this query needs 0.6; ask an administrator to grant more or lower SET "
        "dp.epsilon");

  clock.Set(At(2026, 12, 1));
  auto december = ledger->Charge(Req("alice", "hr", 0.6));
  REQUIRE(december.ok());
  CHECK(december->analyst.period_label == "2026-12");
  CHECK(december->analyst.spent_epsilon == Approx(0.6));
  // bob's budget is for all time: November's spend still counts.
  auto bob = ledger->Charge(Req("bob", "hr", 0.6));
  REQUIRE_FALSE(bob.ok());
  CHECK(bob.error().message.find("in period all time (never)") != std::string::npos);
  clock.Set(At(2031, 1, 1));
  CHECK_FALSE(ledger->Charge(Req("bob", "hr", 0.6)).ok());
  CHECK(ledger->Verify()->ok);
}

TEST_CASE("week and day budgets roll over at Monday and midnight UTC") {
  const LedgerDb l = NewLedgerDb("ledger_period_wd");
  ManualClock clock;
  clock.Set(At(2026, 11, 29, 23, 0, 0));  // a Sunday
  auto ledger = OpenLedger(l, clock.AsClock());
  REQUIRE_OK(ledger->SyncBudgets(Cfg(1.0)));
  REQUIRE(ledger->Charge(Req("carol", "hr", 0.9)).ok());
  REQUIRE(ledger->Charge(Req("dave", "hr", 0.9)).ok());
  CHECK_FALSE(ledger->Charge(Req("carol", "hr", 0.9)).ok());
  CHECK_FALSE(ledger->Charge(Req("dave", "hr", 0.9)).ok());
  clock.Set(At(2026, 11, 30, 0, 30, 0));  // Monday: new week, new day
  auto carol = ledger->Charge(Req("carol", "hr", 0.9));
  REQUIRE(carol.ok());
  CHECK(carol->analyst.period_label == "2026-W49");
  REQUIRE(ledger->Charge(Req("dave", "hr", 0.9)).ok());
  clock.Set(At(2026, 11, 30, 23, 59, 59));  // same day, same week
  CHECK_FALSE(ledger->Charge(Req("carol", "hr", 0.2)).ok());
  CHECK_FALSE(ledger->Charge(Req("dave", "hr", 0.2)).ok());
  clock.Set(At(2026, 12, 1));  // Tuesday: dave's day rolled, carol's week did not
  CHECK(ledger->Charge(Req("dave", "hr", 0.2)).ok());
  CHECK_FALSE(ledger->Charge(Req("carol", "hr", 0.2)).ok());
}

TEST_CASE("a grant tops up the current period only") {
  const LedgerDb l = NewLedgerDb("ledger_grant");
  ManualClock clock;
  clock.Set(At(2026, 11, 15));
  auto ledger = OpenLedger(l, clock.AsClock());
  REQUIRE_OK(ledger->SyncBudgets(Cfg(1.0)));
  REQUIRE(ledger->Charge(Req("alice", "hr", 0.8)).ok());
  CHECK_FALSE(ledger->Charge(Req("alice", "hr", 0.8)).ok());
  dpgate::accountant::GrantRequest g;
  g.analyst = "alice";
  g.dataset = "hr";
  g.epsilon = 1.0;
  g.note = "quarterly review";
  REQUIRE_OK(ledger->Grant(g));
  auto after = ledger->Charge(Req("alice", "hr", 0.8));
  REQUIRE(after.ok());
  CHECK(after->analyst.granted_epsilon == Approx(2.0));
  CHECK(after->analyst.remaining_epsilon() == Approx(0.4));
  clock.Set(At(2026, 12, 2));
  auto budgets = ledger->Budgets({std::string("alice"), std::string("hr")});
  REQUIRE(budgets.ok());
  bool seen = false;
  for (const auto& b : *budgets) {
    if (b.kind == dpgate::accountant::PrincipalKind::kAnalyst) {
      seen = true;
      CHECK(b.granted_epsilon == Approx(1.0));  // the top-up was for November
      CHECK(b.spent_epsilon == 0);
    }
  }
  CHECK(seen);
  // Grants to a budget the config does not know are refused.
  g.analyst = "mallory";
  CHECK_FALSE(ledger->Grant(g).ok());
}

TEST_CASE("config changes add grant rows, lowering never un-spends, syncing is idempotent") {
  const LedgerDb l = NewLedgerDb("ledger_sync");
  ManualClock clock;
  clock.Set(At(2026, 11, 15));
  auto ledger = OpenLedger(l, clock.AsClock());
  REQUIRE_OK(ledger->SyncBudgets(Cfg(1.0)));
  REQUIRE_OK(ledger->SyncBudgets(Cfg(1.0)));
  const std::string alice_rows = "SELECT count(*) FROM dp_ledger.budgets WHERE principal = 'alice'";
  CHECK(Scalar(l, alice_rows) == "1");
  REQUIRE(ledger->Charge(Req("alice", "hr", 0.8)).ok());
  REQUIRE_OK(ledger->SyncBudgets(Cfg(2.0)));  // raised: one more row for +1
  CHECK(Scalar(l, alice_rows) == "2");
  REQUIRE(ledger->Charge(Req("alice", "hr", 0.8)).ok());
  REQUIRE_OK(ledger->SyncBudgets(Cfg(0.5)));  // lowered below what is spent
  CHECK(Scalar(l, alice_rows) == "3");
  auto r = ledger->Charge(Req("alice", "hr", 0.01));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("has ε=0 of 0.5 left") != std::string::npos);
  auto budgets = ledger->Budgets({std::string("alice"), std::string("hr")});
  REQUIRE(budgets.ok());
  for (const auto& b : *budgets) {
    if (b.kind != dpgate::accountant::PrincipalKind::kAnalyst) continue;
    CHECK(b.spent_epsilon == Approx(1.6));  // still counted
    CHECK(b.remaining_epsilon() == 0);
  }
}

TEST_CASE("the dataset's global budget is shared by all analysts") {
  const LedgerDb l = NewLedgerDb("ledger_global");
  dpgate::config::Config cfg;
  cfg.analysts.push_back(MakeAnalyst("alice", 10, 1e-5, Period::kMonth));
  cfg.analysts.push_back(MakeAnalyst("bob", 10, 1e-5, Period::kMonth));
  cfg.datasets.push_back(MakeDataset("hr", 1.0, 1e-5, Period::kMonth));
  auto ledger = OpenLedger(l);
  REQUIRE_OK(ledger->SyncBudgets(cfg));
  REQUIRE(ledger->Charge(Req("alice", "hr", 0.6)).ok());
  auto r = ledger->Charge(Req("bob", "hr", 0.6));
  REQUIRE_FALSE(r.ok());
  CHECK(
      r.error().message.find("dataset hr (global budget, all analysts together) has ε=0.4 of 1") !=
      std::string::npos);
  // δ is checked too.
  auto d = ledger->Charge(Req("bob", "hr", 0.1, 2e-5));
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().message.find("δ=") != std::string::npos);
  // An analyst the ledger does not know is refused, not charged.
  auto u = ledger->Charge(Req("mallory", "hr", 0.1));
  REQUIRE_FALSE(u.ok());
  CHECK(u.error().code == "ledger.refused");
  CHECK(Scalar(l, "SELECT count(*) FROM dp_ledger.charges WHERE outcome = 'charged'") == "1");
  CHECK(
      Scalar(l,
             "SELECT count(*) FROM dp_ledger.charges WHERE outcome = 'refused' AND epsilon = 0") ==
      "3");
  // ρ is stored beside the (ε, δ) actually charged.
  auto g = Req("alice", "hr", 0.2, 1e-7);
  g.rho = 0.0125;
  REQUIRE(ledger->Charge(g).ok());
  CHECK(
      Scalar(
          l,
          "SELECT rho FROM dp_ledger.charges WHERE outcome = 'charged' ORDER BY id DESC LIMIT 1") ==
      "0.0125");
  CHECK(ledger->Verify()->ok);
}
