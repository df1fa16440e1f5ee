// kill -9 of a process in the middle of charging: whatever transaction it had
// open is rolled back by PostgreSQL, and the ledger stays one verifiable chain
// that the survivors keep appending to.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "ledger_fixture.h"

using namespace ledger_test;

TEST_CASE("kill -9 of a charging process leaves a consistent, verifiable ledger") {
  const LedgerDb l = NewLedgerDb("ledger_kill");
  dpgate::config::Config cfg;
  cfg.analysts.push_back(MakeAnalyst("alice", 1e9, 0.5, Period::kMonth));
  cfg.datasets.push_back(MakeDataset("hr", 1e9, 0.5, Period::kMonth));
  auto ledger = OpenLedger(l);
  REQUIRE_OK(ledger->SyncBudgets(cfg));

  int64_t killed_after = 0;
  for (int round = 0; round < 3; ++round) {
    const int64_t before = std::stoll(Scalar(l, "SELECT count(*) FROM dp_ledger.charges"));
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      try {
        auto child = OpenLedger(l);
        // Bounded, but far more than the parent waits for.
        for (int i = 0; i < 1000000; ++i) (void)child->Charge(Req("alice", "hr", 0.001));
      } catch (...) {
      }
      ::_exit(0);
    }
    // Wait (bounded) until the child is busy charging, then kill it mid-stream.
    const int64_t target = before + 50 + round * 37;
    for (int i = 0; i < 3000; ++i) {
      if (std::stoll(Scalar(l, "SELECT count(*) FROM dp_ledger.charges")) >= target) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(::kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    killed_after = std::stoll(Scalar(l, "SELECT count(*) FROM dp_ledger.charges"));
    CHECK(killed_after >= target);

    // The survivor can still append (the chain head is not left locked) ...
    auto r = ledger->Charge(Req("alice", "hr", 0.001));
    REQUIRE(r.ok());
    CHECK(r->charge_id > killed_after - 1);
    // ... and the chain verifies end to end.
    auto v = ledger->Verify();
    REQUIRE(v.ok());
    INFO(v->reason);
    CHECK(v->ok);
    CHECK(v->rows_checked == std::stoll(Scalar(l, "SELECT count(*) FROM dp_ledger.charges")));
  }
  // Running totals match the rows that committed: no half-applied charge.
  CHECK(std::stod(
            Scalar(l, "SELECT sum(epsilon) FROM dp_ledger.charges WHERE outcome = 'charged'")) ==
        Approx(std::stod(Scalar(l,
                                "SELECT epsilon FROM dp_ledger.period_spend WHERE "
                                "principal_kind = 'analyst' AND principal = 'alice'")))
            .epsilon(1e-12));
  CHECK(std::stoll(Scalar(l, "SELECT count(*) FROM dp_ledger.charges")) ==
        std::stoll(Scalar(l,
                          "SELECT charges FROM dp_ledger.period_spend WHERE principal_kind = "
                          "'analyst' AND principal = 'alice'")));
}
