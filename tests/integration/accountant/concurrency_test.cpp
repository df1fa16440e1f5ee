// Many writers, one small budget: 32 threads (each with its own connection)
// and 2 separate processes charge as fast as they can. The budget must never
// be exceeded, each accepted charge has exactly one row, refusals leave no
// charged row, and the hash chain stays one consistent chain.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "dpgate/accountant/async_ledger.h"
#include "ledger_fixture.h"

using namespace ledger_test;

namespace {

constexpr double kBudget = 10.0;
constexpr double kCharge = 0.05;  // room for exactly 200 charges
constexpr int kMaxAttempts = 500;

struct Tally {
  std::vector<int64_t> accepted_ids;
  int refused = 0;
  int other_errors = 0;
  std::string first_other_error;
};

// Charges until refused for lack of budget, or kMaxAttempts.
Tally ChargeUntilRefused(Ledger& ledger, const std::string& analyst) {
  Tally t;
  for (int i = 0; i < kMaxAttempts; ++i) {
    auto r = ledger.Charge(Req(analyst, "hr", kCharge, 1e-9));
    if (r.ok()) {
      t.accepted_ids.push_back(r->charge_id);
    } else if (r.error().code == "ledger.refused") {
      ++t.refused;
      break;
    } else {
      ++t.other_errors;
      if (t.first_other_error.empty()) t.first_other_error = r.error().message;
    }
  }
  return t;
}

dpgate::config::Config SmallBudgetConfig() {
  dpgate::config::Config cfg;
  cfg.analysts.push_back(MakeAnalyst("alice", kBudget, 1e-5, Period::kMonth));
  cfg.datasets.push_back(MakeDataset("hr", 1000, 1e-3, Period::kMonth));
  return cfg;
}

// A child process: waits for the go byte, charges, writes "ids... ; refused
// errors" to the pipe, and _exits without running any parent destructors.
pid_t ForkCharger(const LedgerDb& l, int go_fd, int out_fd) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  int code = 0;
  try {
    auto ledger = OpenLedger(l);
    char go = 0;
    if (::read(go_fd, &go, 1) != 1) ::_exit(3);
    Tally t = ChargeUntilRefused(*ledger, "alice");
    std::ostringstream os;
    for (int64_t id : t.accepted_ids) os << id << ' ';
    os << "; " << t.refused << ' ' << t.other_errors << '\n';
    const std::string s = os.str();
    if (::write(out_fd, s.data(), s.size()) != static_cast<ssize_t>(s.size())) code = 4;
  } catch (...) {
    code = 5;
  }
  ::_exit(code);
}

void CheckInvariants(const LedgerDb& l, const std::vector<int64_t>& accepted, int refused) {
  // Every accepted charge has exactly one row, and no other row is charged.
  const std::set<int64_t> ids(accepted.begin(), accepted.end());
  CHECK(ids.size() == accepted.size());
  std::set<int64_t> rows;
  {
    pqxx::connection c(l.dsn);
    pqxx::nontransaction tx(c);
    for (const auto& r : tx.exec("SELECT id FROM dp_ledger.charges WHERE outcome = 'charged'")) {
      rows.insert(r[0].as<int64_t>());
    }
  }
  CHECK(rows == ids);
  // The budget holds exactly 200 charges of 0.05: all of them were used, none more.
  CHECK(accepted.size() == 200);
  const double total = std::stod(
      Scalar(l,
             "SELECT sum(epsilon) FROM dp_ledger.charges WHERE analyst = 'alice' AND outcome = "
             "'charged'"));
  CHECK(total <= kBudget * (1 + 1e-9));
  CHECK(std::stoi(Scalar(l, "SELECT count(*) FROM dp_ledger.charges WHERE outcome = 'refused'")) ==
        refused);
  // The running total agrees with the rows.
  CHECK(std::stod(Scalar(l,
                         "SELECT epsilon FROM dp_ledger.period_spend WHERE principal_kind = "
                         "'analyst' AND principal = 'alice'")) == Approx(total).epsilon(1e-12));
  auto ledger = OpenLedger(l);
  auto v = ledger->Verify();
  REQUIRE(v.ok());
  CHECK(v->ok);
  CHECK(v->reason == "");
  CHECK(v->rows_checked == static_cast<int64_t>(accepted.size()) + refused);
}

}  // namespace

TEST_CASE("32 threads and 2 processes charging one small budget never exceed it") {
  const LedgerDb l = NewLedgerDb("ledger_conc");
  {
    auto setup = OpenLedger(l);
    REQUIRE_OK(setup->SyncBudgets(SmallBudgetConfig()));
  }
  int go[2], out[2];
  REQUIRE(::pipe(go) == 0);
  REQUIRE(::pipe(out) == 0);
  std::vector<pid_t> children;
  for (int i = 0; i < 2; ++i) children.push_back(ForkCharger(l, go[0], out[1]));
  ::close(out[1]);

  std::vector<std::unique_ptr<Ledger>> ledgers;
  for (int i = 0; i < 32; ++i) ledgers.push_back(OpenLedger(l));
  std::vector<Tally> tallies(32);
  std::atomic<bool> start{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&, i] {
      while (!start.load()) std::this_thread::yield();
      tallies[i] = ChargeUntilRefused(*ledgers[i], "alice");
    });
  }
  REQUIRE(::write(go[1], "gg", 2) == 2);
  start = true;
  for (auto& t : threads) t.join();

  std::vector<int64_t> accepted;
  int refused = 0;
  for (const auto& t : tallies) {
    INFO(t.first_other_error);
    CHECK(t.other_errors == 0);
    accepted.insert(accepted.end(), t.accepted_ids.begin(), t.accepted_ids.end());
    refused += t.refused;
  }
  std::string child_out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) child_out.append(buf, n);
  for (pid_t pid : children) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  std::istringstream lines(child_out);
  std::string line;
  int child_lines = 0;
  while (std::getline(lines, line)) {
    ++child_lines;
    std::istringstream is(line);
    std::string tok;
    while (is >> tok && tok != ";") accepted.push_back(std::stoll(tok));
    int child_refused = 0, child_errors = 0;
    is >> child_refused >> child_errors;
    refused += child_refused;
    CHECK(child_errors == 0);
  }
  CHECK(child_lines == 2);
  // Everyone stopped because the budget ran out, not because attempts did.
  CHECK(refused == 34);
  CheckInvariants(l, accepted, refused);
  ::close(go[0]);
  ::close(go[1]);
  ::close(out[0]);
}

TEST_CASE("32 clients through one AsyncLedger (group commit) never exceed the budget") {
  const LedgerDb l = NewLedgerDb("ledger_async_conc");
  {
    auto setup = OpenLedger(l);
    REQUIRE_OK(setup->SyncBudgets(SmallBudgetConfig()));
  }
  dpgate::accountant::AsyncLedgerOptions o;
  o.ledger.dsn = l.dsn;
  o.workers = 4;
  auto started = dpgate::accountant::AsyncLedger::Start(o);
  REQUIRE(started.ok());
  auto async = std::move(started).value();
  std::mutex mu;
  std::vector<int64_t> accepted;
  int refused = 0, other = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&] {
      for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
        std::promise<dpgate::Result<dpgate::accountant::ChargeReceipt>> p;
        auto f = p.get_future();
        async->ChargeAsync(Req("alice", "hr", kCharge, 1e-9),
                           [&p](dpgate::Result<dpgate::accountant::ChargeReceipt> r) {
                             p.set_value(std::move(r));
                           });
        // Bounded: a lost completion fails the test instead of hanging it.
        if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
          std::lock_guard<std::mutex> lock(mu);
          ++other;
          return;
        }
        auto r = f.get();
        std::lock_guard<std::mutex> lock(mu);
        if (r.ok()) {
          accepted.push_back(r->charge_id);
        } else if (r.error().code == "ledger.refused") {
          ++refused;
          return;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  async->Shutdown();
  CHECK(other == 0);
  CHECK(refused == 32);
  CheckInvariants(l, accepted, refused);
}
