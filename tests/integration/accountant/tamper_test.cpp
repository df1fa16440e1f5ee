// Tampering is detected by Verify (and `dpgate ledger verify`), which names
// the first row that does not match.
#include <catch2/catch.hpp>

#include "dpgate/accountant/chain.h"
#include "ledger_fixture.h"

using namespace ledger_test;

namespace {

LedgerDb LedgerWithTenCharges(const std::string& prefix) {
  LedgerDb l = NewLedgerDb(prefix);
  dpgate::config::Config cfg;
  cfg.analysts.push_back(MakeAnalyst("alice", 100, 1e-5, Period::kMonth));
  cfg.analysts.push_back(MakeAnalyst("bob", 0.25, 1e-5, Period::kMonth));
  cfg.datasets.push_back(MakeDataset("hr", 100, 1e-4, Period::kMonth));
  auto ledger = OpenLedger(l);
  REQUIRE_OK(ledger->SyncBudgets(cfg));
  for (int i = 0; i < 10; ++i) {
    auto r = ledger->Charge(Req(i % 2 ? "alice" : "bob", "hr", 0.1, 1e-8));
    // bob's budget covers two charges; his later attempts are refused rows.
    REQUIRE((r.ok() || r.error().code == "ledger.refused"));
  }
  auto v = ledger->Verify();
  REQUIRE(v.ok());
  REQUIRE(v->ok);
  REQUIRE(v->rows_checked == 10);
  return l;
}

// Runs SQL as the superuser with the append-only trigger switched off, which
// is what an attacker with superuser rights would do.
void Tamper(const LedgerDb& l, const std::string& sql) {
  dpgate::testing::ExecSql(l.pg, l.db,
                           "BEGIN; ALTER TABLE dp_ledger.charges DISABLE TRIGGER USER; " + sql +
                               "; ALTER TABLE dp_ledger.charges ENABLE TRIGGER USER; COMMIT;");
}

dpgate::accountant::VerifyReport VerifyNow(const LedgerDb& l) {
  auto ledger = OpenLedger(l);
  auto v = ledger->Verify();
  REQUIRE(v.ok());
  return *v;
}

std::string CliVerify(const LedgerDb& l, int* status) {
  std::string out;
  *status = dpgate::testing::RunCommand(
      std::string(DPGATE_BINARY) + " ledger verify --ledger-dsn '" + l.dsn + "'", &out);
  return out;
}

}  // namespace

TEST_CASE("the append-only trigger refuses UPDATE, DELETE and TRUNCATE even by the owner") {
  const LedgerDb l = LedgerWithTenCharges("ledger_trig");
  for (const char* sql : {"UPDATE dp_ledger.charges SET epsilon = 0 WHERE id = 3",
                          "DELETE FROM dp_ledger.charges WHERE id = 3",
                          "TRUNCATE dp_ledger.charges", "DELETE FROM dp_ledger.budgets"}) {
    INFO(sql);
    try {
      dpgate::testing::ExecSql(l.pg, l.db, sql);
      FAIL("statement was allowed");
    } catch (const pqxx::sql_error& e) {
      CHECK(std::string(e.what()).find("append-only") != std::string::npos);
    }
  }
  CHECK(VerifyNow(l).ok);
}

TEST_CASE("an altered row is named by verify (hash mismatch)") {
  const LedgerDb l = LedgerWithTenCharges("ledger_tamper_upd");
  Tamper(l, "UPDATE dp_ledger.charges SET epsilon = 0.0001 WHERE id = 4");
  const auto v = VerifyNow(l);
  CHECK_FALSE(v.ok);
  REQUIRE(v.first_bad_id.has_value());
  CHECK(*v.first_bad_id == 4);
  CHECK(v.reason.find("hash mismatch") != std::string::npos);
  int status = 0;
  const std::string out = CliVerify(l, &status);
  CHECK(status == 1);
  CHECK(out.find("charge id 4") != std::string::npos);
  CHECK(out.find("hash mismatch") != std::string::npos);
}

TEST_CASE("an altered row with a recomputed hash breaks the next row's link") {
  const LedgerDb l = LedgerWithTenCharges("ledger_tamper_rehash");
  // The attacker rewrites row 4 and recomputes its hash correctly.
  dpgate::accountant::ChargeRecord rec;
  {
    pqxx::connection c(l.dsn);
    pqxx::nontransaction tx(c);
    const pqxx::row r = tx.exec1(
        "SELECT id, (extract(epoch FROM at) * 1000000)::bigint, analyst, dataset, epsilon, delta, "
        "fingerprint, original_sql, rewritten_sql, outcome, detail, "
        "(extract(epoch FROM period_start) * 1000000)::bigint, "
        "(extract(epoch FROM dataset_period_start) * 1000000)::bigint, encode(prev_hash, 'hex') "
        "FROM dp_ledger.charges WHERE id = 4");
    rec.id = r[0].as<int64_t>();
    rec.at_us = r[1].as<int64_t>();
    rec.analyst = r[2].as<std::string>();
    rec.dataset = r[3].as<std::string>();
    rec.epsilon = 0.0001;  // the lie
    rec.delta = r[5].as<double>();
    rec.fingerprint = r[6].as<std::string>();
    rec.original_sql = r[7].as<std::string>();
    rec.rewritten_sql = r[8].as<std::string>();
    rec.outcome = r[9].as<std::string>();
    rec.detail = r[10].as<std::string>();
    rec.period_start_us = r[11].as<int64_t>();
    rec.dataset_period_start_us = r[12].as<int64_t>();
    REQUIRE(dpgate::accountant::FromHex(r[13].as<std::string>(), &rec.prev_hash));
  }
  const std::string forged = dpgate::accountant::ToHex(dpgate::accountant::ChainHash(rec));
  Tamper(l, "UPDATE dp_ledger.charges SET epsilon = 0.0001, hash = decode('" + forged +
                "', 'hex') WHERE id = 4");
  const auto v = VerifyNow(l);
  CHECK_FALSE(v.ok);
  REQUIRE(v.first_bad_id.has_value());
  CHECK(*v.first_bad_id == 5);
  CHECK(v.reason.find("broken link") != std::string::npos);
}

TEST_CASE("a deleted row is named by verify (gap)") {
  const LedgerDb l = LedgerWithTenCharges("ledger_tamper_del");
  Tamper(l, "DELETE FROM dp_ledger.charges WHERE id = 6");
  const auto v = VerifyNow(l);
  CHECK_FALSE(v.ok);
  REQUIRE(v.first_bad_id.has_value());
  CHECK(*v.first_bad_id == 6);
  CHECK(v.reason.find("missing") != std::string::npos);
}

TEST_CASE("deleting the newest rows is detected through the chain head") {
  const LedgerDb l = LedgerWithTenCharges("ledger_tamper_tail");
  Tamper(l, "DELETE FROM dp_ledger.charges WHERE id >= 9");
  const auto v = VerifyNow(l);
  CHECK_FALSE(v.ok);
  REQUIRE(v.first_bad_id.has_value());
  CHECK(*v.first_bad_id == 9);
  int status = 0;
  const std::string out = CliVerify(l, &status);
  CHECK(status == 1);
  CHECK(out.find("charge id 9") != std::string::npos);
}

TEST_CASE("reordered rows (swapped ids) are detected") {
  const LedgerDb l = LedgerWithTenCharges("ledger_tamper_swap");
  Tamper(l,
         "UPDATE dp_ledger.charges SET id = -1 WHERE id = 3; "
         "UPDATE dp_ledger.charges SET id = 3 WHERE id = 7; "
         "UPDATE dp_ledger.charges SET id = 7 WHERE id = -1");
  const auto v = VerifyNow(l);
  CHECK_FALSE(v.ok);
  REQUIRE(v.first_bad_id.has_value());
  CHECK(*v.first_bad_id == 3);
}

TEST_CASE("a changed id is detected") {
  const LedgerDb l = LedgerWithTenCharges("ledger_tamper_id");
  Tamper(l, "UPDATE dp_ledger.charges SET id = 100 WHERE id = 10");
  const auto v = VerifyNow(l);
  CHECK_FALSE(v.ok);
  REQUIRE(v.first_bad_id.has_value());
  CHECK(*v.first_bad_id == 10);
}

TEST_CASE("lowered running totals are detected even though the chain is intact") {
  const LedgerDb l = LedgerWithTenCharges("ledger_tamper_totals");
  // period_spend has no append-only trigger (it is a running total), but
  // verify checks it against the charges, which the chain protects.
  dpgate::testing::ExecSql(l.pg, l.db,
                           "UPDATE dp_ledger.period_spend SET epsilon = 0 WHERE principal = 'bob' "
                           "AND principal_kind = 'analyst'");
  const auto v = VerifyNow(l);
  CHECK_FALSE(v.ok);
  CHECK_FALSE(v.first_bad_id.has_value());
  CHECK(v.reason.find("running totals (period_spend) disagree with the charges for analyst bob") !=
        std::string::npos);
  int status = 0;
  const std::string out = CliVerify(l, &status);
  CHECK(status == 1);
  CHECK(out.find("ledger verification FAILED: running totals") != std::string::npos);
}

TEST_CASE("an untouched ledger verifies through the CLI") {
  const LedgerDb l = LedgerWithTenCharges("ledger_cli_ok");
  int status = 0;
  const std::string out = CliVerify(l, &status);
  INFO(out);
  CHECK(status == 0);
  CHECK(out.find("10 charges") != std::string::npos);
  // The DSN's password never appears in output.
  CHECK(out.find(l.pg.password) == std::string::npos);
}
