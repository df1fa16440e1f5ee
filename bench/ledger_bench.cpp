// Ledger throughput: charges per second with 1, 8 and 32 concurrent clients,
// (a) each client with its own Ledger connection (one transaction per charge)
// and (b) all clients sharing one AsyncLedger (a few connections, group
// commit). Every charge is committed before its client counts it.
//
//   DPGATE_BENCH_LEDGER_DSN="host=... dbname=..." ledger_bench [SECONDS] [CLIENTS,...]
//
// scripts/bench-ledger runs it against a throwaway cluster. Each run uses a
// fresh schema so earlier runs do not change the figures.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dpgate/accountant/async_ledger.h"
#include "dpgate/accountant/ledger.h"

namespace dpa = dpgate::accountant;
using Clock = std::chrono::steady_clock;

namespace {

dpa::ChargeRequest Request(int client) {
  dpa::ChargeRequest r;
  r.analyst = "analyst" + std::to_string(client % 8);
  r.dataset = "hr";
  r.epsilon = 1e-6;
  r.delta = 1e-12;
  r.fingerprint = "bench";
  r.original_sql = "SELECT region, count(*) FROM public.employees GROUP BY region";
  r.rewritten_sql =
      "SELECT region, count(*) FROM (SELECT region, employee_id FROM public.employees) t "
      "GROUP BY region";
  return r;
}

dpgate::config::Config BenchConfig() {
  dpgate::config::Config cfg;
  for (int i = 0; i < 8; ++i) {
    dpgate::config::Analyst a;
    a.name = "analyst" + std::to_string(i);
    a.budget = {1e9, 0.5, dpgate::config::Period::kMonth};
    cfg.analysts.push_back(a);
  }
  dpgate::config::Dataset d;
  d.name = "hr";
  d.budget = {1e9, 0.5, dpgate::config::Period::kMonth};
  cfg.datasets.push_back(d);
  return cfg;
}

struct RunResult {
  long charges = 0;
  long failures = 0;
  double seconds = 0;
  double p50_ms = 0, p99_ms = 0;
};

void Percentiles(std::vector<double>& lat, RunResult* r) {
  if (lat.empty()) return;
  std::sort(lat.begin(), lat.end());
  r->p50_ms = lat[lat.size() / 2];
  r->p99_ms = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
}

std::string FreshSchema(const std::string& dsn, const std::string& name) {
  dpa::LedgerOptions o;
  o.dsn = dsn;
  o.schema = name;
  auto l = dpa::Ledger::Open(o);
  if (!l.ok()) {
    std::fprintf(stderr, "ledger_bench: %s\n", l.error().message.c_str());
    std::exit(1);
  }
  dpgate::Status s = (*l)->SyncBudgets(BenchConfig());
  if (!s.ok()) {
    std::fprintf(stderr, "ledger_bench: %s\n", s.message().c_str());
    std::exit(1);
  }
  return name;
}

RunResult RunDirect(const std::string& dsn, int clients, double seconds) {
  const std::string schema = FreshSchema(
      dsn, "bench_direct_" + std::to_string(::getpid()) + "_" + std::to_string(clients));
  std::vector<std::unique_ptr<dpa::Ledger>> ledgers;
  for (int i = 0; i < clients; ++i) {
    dpa::LedgerOptions o;
    o.dsn = dsn;
    o.schema = schema;
    o.migrate = false;
    ledgers.push_back(std::move(dpa::Ledger::Open(o)).value());
  }
  std::atomic<bool> stop{false};
  std::vector<long> counts(clients), fails(clients);
  std::vector<std::vector<double>> lat(clients);
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      const dpa::ChargeRequest req = Request(i);
      while (!stop.load(std::memory_order_relaxed)) {
        const auto s = Clock::now();
        auto r = ledgers[i]->Charge(req);
        lat[i].push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
        (r.ok() ? counts[i] : fails[i])++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  RunResult res;
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double> all;
  for (int i = 0; i < clients; ++i) {
    res.charges += counts[i];
    res.failures += fails[i];
    all.insert(all.end(), lat[i].begin(), lat[i].end());
  }
  Percentiles(all, &res);
  return res;
}

RunResult RunAsync(const std::string& dsn, int clients, int workers, double seconds) {
  const std::string schema =
      FreshSchema(dsn, "bench_async_" + std::to_string(::getpid()) + "_" + std::to_string(clients));
  dpa::AsyncLedgerOptions o;
  o.ledger.dsn = dsn;
  o.ledger.schema = schema;
  o.workers = workers;
  auto async = std::move(dpa::AsyncLedger::Start(o)).value();
  std::atomic<bool> stop{false};
  std::vector<long> counts(clients), fails(clients);
  std::vector<std::vector<double>> lat(clients);
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      const dpa::ChargeRequest req = Request(i);
      while (!stop.load(std::memory_order_relaxed)) {
        const auto s = Clock::now();
        std::promise<bool> p;
        auto f = p.get_future();
        async->ChargeAsync(req,
                           [&p](dpgate::Result<dpa::ChargeReceipt> r) { p.set_value(r.ok()); });
        const bool ok = f.get();
        lat[i].push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
        (ok ? counts[i] : fails[i])++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  async->Shutdown();
  RunResult res;
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double> all;
  for (int i = 0; i < clients; ++i) {
    res.charges += counts[i];
    res.failures += fails[i];
    all.insert(all.end(), lat[i].begin(), lat[i].end());
  }
  Percentiles(all, &res);
  return res;
}

void Print(const char* mode, int clients, int connections, const RunResult& r) {
  std::printf("| %-6s | %7d | %11d | %9.0f | %8.2f | %8.2f | %8ld |\n", mode, clients, connections,
              r.charges / r.seconds, r.p50_ms, r.p99_ms, r.failures);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const char* dsn = std::getenv("DPGATE_BENCH_LEDGER_DSN");
  if (dsn == nullptr || *dsn == '\0') {
    std::fprintf(stderr,
                 "ledger_bench: set DPGATE_BENCH_LEDGER_DSN to a libpq DSN of a scratch database "
                 "(scripts/bench-ledger does this with a throwaway cluster)\n");
    return 2;
  }
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
  std::vector<int> clients = {1, 8, 32};
  if (argc > 2) {
    clients.clear();
    std::stringstream ss(argv[2]);
    std::string item;
    while (std::getline(ss, item, ',')) clients.push_back(std::atoi(item.c_str()));
  }
  constexpr int kWorkers = 4;
  std::printf("| mode   | clients | connections | charges/s | p50 (ms) | p99 (ms) | failures |\n");
  std::printf("|--------|---------|-------------|-----------|----------|----------|----------|\n");
  for (int n : clients) {
    Print("direct", n, n, RunDirect(dsn, n, seconds));
    Print("async", n, std::min(n, kWorkers), RunAsync(dsn, n, std::min(n, kWorkers), seconds));
  }
  return 0;
}
