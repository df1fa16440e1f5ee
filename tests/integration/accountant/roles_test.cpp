// The role dpgate runs as may append charges but never change or remove them.
#include <catch2/catch.hpp>

#include "ledger_fixture.h"

using namespace ledger_test;

TEST_CASE("the writer role can charge but cannot UPDATE, DELETE or TRUNCATE the ledger") {
  LedgerDb admin = NewLedgerDb("ledger_roles");
  dpgate::config::Config cfg;
  cfg.analysts.push_back(MakeAnalyst("alice", 10, 1e-5, Period::kMonth));
  cfg.datasets.push_back(MakeDataset("hr", 100, 1e-4, Period::kMonth));
  {
    auto ledger = OpenLedger(admin);  // creates the schema as its owner
    REQUIRE_OK(ledger->SyncBudgets(cfg));
  }
  const std::string role = "dpw_" + admin.db;
  dpgate::testing::ExecSql(admin.pg, admin.db,
                           "CREATE ROLE " + role +
                               " LOGIN PASSWORD 'writer-pw'; SELECT dp_ledger.grant_writer('" +
                               role + "')");
  LedgerDb writer = admin;
  writer.dsn = "host=" + admin.pg.host + " port=" + std::to_string(admin.pg.port) +
               " user=" + role + " password=writer-pw dbname=" + admin.db;

  auto ledger = OpenLedger(writer);  // migrations are up to date: no DDL needed
  auto r = ledger->Charge(Req("alice", "hr", 0.5));
  REQUIRE(r.ok());
  CHECK(ledger->Verify()->ok);

  pqxx::connection c(writer.dsn);
  for (const char* sql :
       {"UPDATE dp_ledger.charges SET epsilon = 0", "DELETE FROM dp_ledger.charges",
        "TRUNCATE dp_ledger.charges", "UPDATE dp_ledger.budgets SET epsilon = 1000",
        "DELETE FROM dp_ledger.budgets", "ALTER TABLE dp_ledger.charges DISABLE TRIGGER USER"}) {
    INFO(sql);
    pqxx::nontransaction tx(c);
    try {
      tx.exec(sql);
      FAIL("statement was allowed");
    } catch (const pqxx::sql_error& e) {
      // Refused by the missing privilege or the owner check.
      INFO(e.what());
      const std::string what = e.what();
      CHECK((what.find("permission denied") != std::string::npos ||
             what.find("must be owner") != std::string::npos));
    }
  }
  CHECK(Scalar(admin, "SELECT count(*) FROM dp_ledger.charges") == "1");
  CHECK(ledger->Verify()->ok);
}
