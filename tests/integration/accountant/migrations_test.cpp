// Migrations are idempotent and safe when several processes run them at once.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "ledger_fixture.h"

using namespace ledger_test;
using dpgate::accountant::LatestLedgerSchemaVersion;
using dpgate::accountant::MigrateLedger;

TEST_CASE("migrating twice changes nothing the second time") {
  const LedgerDb l = NewLedgerDb("ledger_mig");
  REQUIRE(MigrateLedger(l.dsn, "dp_ledger").ok());
  REQUIRE(MigrateLedger(l.dsn, "dp_ledger").ok());
  CHECK(Scalar(l, "SELECT count(*) FROM dp_ledger.schema_migrations") ==
        std::to_string(LatestLedgerSchemaVersion()));
  CHECK(Scalar(l, "SELECT max(version) FROM dp_ledger.schema_migrations") ==
        std::to_string(LatestLedgerSchemaVersion()));
  CHECK(Scalar(l, "SELECT count(*) FROM dp_ledger.chain_head") == "1");
}

TEST_CASE("a custom schema name is used, and a bad one is refused") {
  LedgerDb l = NewLedgerDb("ledger_mig_schema");
  l.schema = "audit_dp";
  auto ledger = OpenLedger(l);
  CHECK(Scalar(l, "SELECT count(*) FROM audit_dp.charges") == "0");
  CHECK(Scalar(l, "SELECT to_regclass('dp_ledger.charges') IS NULL") == "t");
  LedgerOptions o;
  o.dsn = l.dsn;
  o.schema = "x; DROP TABLE y";
  auto bad = Ledger::Open(o);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == "ledger.invalid");
}

TEST_CASE("four processes migrating the same fresh database at once all succeed") {
  const LedgerDb l = NewLedgerDb("ledger_mig_race");
  int go[2];
  REQUIRE(::pipe(go) == 0);
  std::vector<pid_t> pids;
  for (int i = 0; i < 4; ++i) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      char c;
      if (::read(go[0], &c, 1) != 1) ::_exit(3);
      int code = 1;
      try {
        code = MigrateLedger(l.dsn, "dp_ledger").ok() ? 0 : 1;
      } catch (...) {
        code = 2;
      }
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  REQUIRE(::write(go[1], "gggg", 4) == 4);
  for (pid_t pid : pids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  ::close(go[0]);
  ::close(go[1]);
  CHECK(Scalar(l, "SELECT count(*) FROM dp_ledger.schema_migrations") ==
        std::to_string(LatestLedgerSchemaVersion()));
  CHECK(Scalar(l, "SELECT count(*) FROM dp_ledger.chain_head") == "1");
  CHECK(Scalar(l,
               "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'dp_ledger.charges'::regclass "
               "AND NOT tgisinternal") == "2");
}
