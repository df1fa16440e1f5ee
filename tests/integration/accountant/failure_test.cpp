// Failure behaviour: an unreachable ledger fails closed, promptly and with a
// clear message; a broken connection is reported and then replaced; a full
// queue answers "ledger busy" at once; shutdown completes every request.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "dpgate/accountant/async_ledger.h"
#include "ledger_fixture.h"

using namespace ledger_test;
using dpgate::Result;
using dpgate::accountant::AsyncLedger;
using dpgate::accountant::AsyncLedgerOptions;
using dpgate::accountant::ChargeReceipt;

namespace {

// A loopback port nobody listens on: bound, then closed.
int ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

Result<ChargeReceipt> ChargeAndWait(AsyncLedger& async,
                                    const dpgate::accountant::ChargeRequest& r) {
  auto p = std::make_shared<std::promise<Result<ChargeReceipt>>>();
  auto f = p->get_future();
  async.ChargeAsync(r, [p](Result<ChargeReceipt> res) { p->set_value(std::move(res)); });
  // A bound, not a timing assertion: a hang fails here instead of at ctest's timeout.
  REQUIRE(f.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  return f.get();
}

dpgate::config::Config OneAnalyst() {
  dpgate::config::Config cfg;
  cfg.analysts.push_back(MakeAnalyst("alice", 1000, 1e-3, Period::kMonth));
  cfg.datasets.push_back(MakeDataset("hr", 1000, 1e-3, Period::kMonth));
  return cfg;
}

}  // namespace

TEST_CASE("an unreachable ledger fails closed with a clear error and no password in it") {
  const std::string dsn = "host=127.0.0.1 port=" + std::to_string(ClosedPort()) +
                          " user=dpgate password=s3cret-pw dbname=ledger";
  LedgerOptions o;
  o.dsn = dsn;
  o.connect_timeout_seconds = 2;
  // Only the error crosses the thread (a Result<unique_ptr> in a future trips
  // a GCC 12 -Wfree-nonheap-object false positive).
  auto opened = std::async(std::launch::async, [&] {
    auto r = Ledger::Open(o);
    return r.ok() ? dpgate::Error{"opened", ""} : r.error();
  });
  REQUIRE(opened.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  const dpgate::Error e = opened.get();
  CHECK(e.code == "ledger.unavailable");
  CHECK(e.message.find("cannot reach the ledger") != std::string::npos);
  CHECK(e.message.find("fail closed") != std::string::npos);
  CHECK(e.message.find("s3cret-pw") == std::string::npos);

  AsyncLedgerOptions ao;
  ao.ledger = o;
  ao.workers = 2;
  auto started = AsyncLedger::Start(ao);
  REQUIRE(started.ok());
  for (int i = 0; i < 5; ++i) {
    auto c = ChargeAndWait(**started, Req("alice", "hr", 0.1));
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == "ledger.unavailable");
    CHECK(c.error().message.find("s3cret-pw") == std::string::npos);
  }
}

TEST_CASE("a broken connection fails the charge closed, and AsyncLedger reconnects") {
  const LedgerDb l = NewLedgerDb("ledger_broken");
  auto admin = OpenLedger(l);
  REQUIRE_OK(admin->SyncBudgets(OneAnalyst()));

  auto direct = OpenLedger(l);
  REQUIRE(direct->Charge(Req("alice", "hr", 0.1)).ok());
  dpgate::testing::ExecSql(l.pg, l.db,
                           "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND pid <> pg_backend_pid()");
  auto r = direct->Charge(Req("alice", "hr", 0.1));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == "ledger.unavailable");
  CHECK(direct->broken());

  AsyncLedgerOptions ao;
  ao.ledger.dsn = l.dsn;
  ao.workers = 1;
  ao.reconnect_backoff = std::chrono::milliseconds(50);
  auto async = std::move(AsyncLedger::Start(ao)).value();
  REQUIRE(ChargeAndWait(*async, Req("alice", "hr", 0.1)).ok());
  dpgate::testing::ExecSql(l.pg, l.db,
                           "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND pid <> pg_backend_pid()");
  auto failed = ChargeAndWait(*async, Req("alice", "hr", 0.1));
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().code == "ledger.unavailable");
  bool recovered = false;
  for (int i = 0; i < 100 && !recovered; ++i) {
    recovered = ChargeAndWait(*async, Req("alice", "hr", 0.1)).ok();
    if (!recovered) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(recovered);
  auto v = OpenLedger(l)->Verify();
  REQUIRE(v.ok());
  CHECK(v->ok);
  CHECK(Scalar(l, "SELECT count(*) FROM dp_ledger.charges") == "3");
}

TEST_CASE("a full queue answers ledger busy at once, and shutdown completes every request") {
  const LedgerDb l = NewLedgerDb("ledger_busy");
  REQUIRE_OK(OpenLedger(l)->SyncBudgets(OneAnalyst()));
  AsyncLedgerOptions ao;
  ao.ledger.dsn = l.dsn;
  ao.workers = 1;
  ao.queue_capacity = 2;
  ao.max_batch = 1;
  auto async = std::move(AsyncLedger::Start(ao)).value();
  REQUIRE(ChargeAndWait(*async, Req("alice", "hr", 0.1)).ok());  // worker connected

  // Hold the chain head so the worker blocks inside its next charge.
  pqxx::connection blocker(l.dsn);
  pqxx::work hold(blocker);
  hold.exec("SELECT * FROM dp_ledger.chain_head FOR UPDATE");

  std::atomic<int> ok{0}, busy{0}, other{0};
  auto done = [&](Result<ChargeReceipt> r) {
    if (r.ok())
      ++ok;
    else if (r.error().code == "ledger.busy")
      ++busy;
    else
      ++other;
  };
  async->ChargeAsync(Req("alice", "hr", 0.1), done);  // taken by the worker, blocks
  for (int i = 0; i < 200 && async->queued() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(async->queued() == 0);
  async->ChargeAsync(Req("alice", "hr", 0.1), done);  // queued 1
  async->ChargeAsync(Req("alice", "hr", 0.1), done);  // queued 2
  async->ChargeAsync(Req("alice", "hr", 0.1), done);  // full
  CHECK(busy == 1);  // answered synchronously, before ChargeAsync returned
  hold.commit();
  async->Shutdown();  // drains the two queued requests
  CHECK(ok == 3);
  CHECK(busy == 1);
  CHECK(other == 0);
  // After shutdown nothing is accepted, and the callback still runs.
  std::atomic<bool> called{false};
  async->ChargeAsync(Req("alice", "hr", 0.1), [&](Result<ChargeReceipt> r) {
    called = true;
    CHECK_FALSE(r.ok());
  });
  CHECK(called);
  CHECK(Scalar(l, "SELECT count(*) FROM dp_ledger.charges WHERE outcome = 'charged'") == "4");
}

TEST_CASE("invalid requests are refused before reaching the ledger") {
  const LedgerDb l = NewLedgerDb("ledger_invalid");
  auto ledger = OpenLedger(l);
  REQUIRE_OK(ledger->SyncBudgets(OneAnalyst()));
  auto nan = Req("alice", "hr", std::nan(""));
  auto neg = Req("alice", "hr", -1);
  auto nul = Req("alice", "hr", 0.1);
  nul.original_sql = std::string("SELECT 1\0x", 10);
  auto good = Req("alice", "hr", 0.1);
  auto results = ledger->ChargeBatch({nan, good, neg, nul});
  REQUIRE(results.size() == 4);
  CHECK(results[0].error().code == "ledger.invalid");
  CHECK(results[1].ok());
  CHECK(results[2].error().code == "ledger.invalid");
  CHECK(results[3].error().code == "ledger.invalid");
  CHECK(Scalar(l, "SELECT count(*) FROM dp_ledger.charges") == "1");
}
