// The upstream connection pool (proxy/src/upstream_pool.h) against a real
// PostgreSQL 15: an io_context run by two threads, each "session" a coroutine
// on its own strand, as in dpgate serve. Catch2 assertions are not
// thread-safe, so coroutines only return values or throw; the test thread
// checks them.
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "test_pg.h"
#include "upstream_pool.h"

namespace {

namespace asio = boost::asio;
using dpgate::proxy::PoolMode;
using dpgate::proxy::UpstreamConnection;
using dpgate::proxy::UpstreamLease;
using dpgate::proxy::UpstreamPool;
using dpgate::proxy::UpstreamPoolOptions;
using dpgate::testing::CreateTestDatabase;
using dpgate::testing::ExecSql;
using dpgate::testing::RequireTestPg;
using dpgate::testing::RunCommand;
using dpgate::testing::TestPg;
using namespace std::chrono_literals;

// Two I/O threads for the whole test. The pool is declared after this, so it
// is closed first and the threads then run out of work.
struct IoThreads {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::vector<std::thread> threads;
  IoThreads() {
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { io.run(); });
  }
  ~IoThreads() {
    work.reset();
    for (int i = 0; i < 1000 && !io.stopped(); ++i) std::this_thread::sleep_for(10ms);
    io.stop();
    for (auto& t : threads) t.join();
  }
};

// Runs `body` (a coroutine lambda) as one session on its own strand.
template <typename F>
auto Spawn(asio::io_context& io, F body) {
  using T = typename decltype(body())::value_type;
  auto promise = std::make_shared<std::promise<T>>();
  auto future = promise->get_future();
  asio::co_spawn(
      asio::make_strand(io),
      [promise, body]() -> asio::awaitable<void> {
        try {
          promise->set_value(co_await body());
        } catch (...) {
          promise->set_exception(std::current_exception());
        }
      },
      asio::detached);
  return future;
}

template <typename T>
T Get(std::future<T>& f) {
  if (f.wait_for(60s) != std::future_status::ready) throw std::runtime_error("session hung");
  return f.get();
}

asio::awaitable<void> Sleep(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

asio::awaitable<void> WaitFor(const std::atomic<bool>& flag) {
  while (!flag.load()) co_await Sleep(5ms);
}

// The first column of the first row as text ("" for none); throws on error.
asio::awaitable<std::string> Scalar(UpstreamConnection& conn, const std::string& sql) {
  auto r = co_await conn.Execute(sql);
  if (!r.ok()) throw std::runtime_error(sql + ": " + r.error().message);
  if (r->error.has_value()) throw std::runtime_error(sql + ": " + r->error->message);
  if (r->rows.empty() || r->rows[0].empty() || !r->rows[0][0].has_value()) co_return "";
  co_return *r->rows[0][0];
}

// The SQLSTATE a statement fails with ("" when it succeeds).
asio::awaitable<std::string> FailsWith(UpstreamConnection& conn, const std::string& sql) {
  auto r = co_await conn.Execute(sql);
  if (!r.ok()) co_return r.error().code;
  co_return r->error.has_value() ? r->error->sqlstate : "";
}

asio::awaitable<UpstreamLease> MustAcquire(UpstreamPool& pool) {
  auto lease = co_await pool.Acquire();
  if (!lease.ok()) throw std::runtime_error("Acquire: " + lease.error().message);
  co_return std::move(lease).value();
}

template <typename Pred>
void Eventually(Pred pred, const char* what) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL("timed out waiting for " << what);
}

// A fresh database with a read-only role for the pool, like the config's
// upstream role; SCRAM over TCP.
struct PoolFixture {
  TestPg pg = RequireTestPg();
  std::string db = CreateTestDatabase(pg, "pool");
  std::string role = db + "_reader";
  PoolFixture() {
    ExecSql(pg, db,
            "create role " + role + " login password 'pool-reader-pw';" + "alter role " + role +
                " set default_transaction_read_only = on;" +
                "create table public.t (x integer); insert into public.t values (1);" +
                "grant select on public.t to " + role);
  }
  UpstreamPoolOptions Options(int max_size) const {
    UpstreamPoolOptions o;
    o.dsn = "host=127.0.0.1 port=" + std::to_string(pg.port) + " dbname=" + db + " user=" + role +
            " password=pool-reader-pw connect_timeout=10";
    o.max_size = max_size;
    return o;
  }
  int Backends() const {
    pqxx::connection c(pg.Dsn(db));
    return pqxx::nontransaction(c)
        .exec1("select count(*) from pg_stat_activity where usename = " + c.quote(role))[0]
        .as<int>();
  }
  bool BackendAlive(int pid) const {
    pqxx::connection c(pg.Dsn(db));
    return pqxx::nontransaction(c)
               .exec1("select count(*) from pg_stat_activity where pid = " + std::to_string(pid))[0]
               .as<int>() > 0;
  }
};

TEST_CASE("the pool never opens more than max_size connections under 4x demand", "[pool]") {
  PoolFixture f;
  IoThreads t;
  UpstreamPool pool(t.io.get_executor(), f.Options(4));
  std::atomic<int> holding{0};
  std::atomic<int> most_holding{0};
  std::vector<std::future<int>> sessions;
  for (int i = 0; i < 16; ++i) {
    sessions.push_back(Spawn(t.io, [&]() -> asio::awaitable<int> {
      UpstreamLease lease = co_await MustAcquire(pool);
      const int now = ++holding;
      int seen = most_holding.load();
      while (now > seen && !most_holding.compare_exchange_weak(seen, now)) {
      }
      const int pid = std::stoi(co_await Scalar(*lease, "select pg_backend_pid()"));
      co_await Scalar(*lease, "select pg_sleep(0.2)");
      --holding;
      co_return pid;
    }));
  }
  int most_backends = 0;
  bool all_done = false;
  while (!all_done) {
    most_backends = std::max(most_backends, f.Backends());
    all_done = true;
    for (auto& s : sessions) all_done = all_done && s.wait_for(0s) == std::future_status::ready;
    std::this_thread::sleep_for(20ms);
  }
  std::set<int> pids;
  for (auto& s : sessions) pids.insert(Get(s));
  CHECK(most_holding.load() == 4);
  CHECK(most_backends <= 4);
  CHECK(most_backends >= 2);
  CHECK(pids.size() <= 4);  // connections were reused, not reopened
  Eventually([&] { return pool.Stats().idle == pool.Stats().open; }, "every reset to finish");
  CHECK(pool.Stats().open <= 4);
  CHECK(f.Backends() <= 4);
}

TEST_CASE("waiters are served in the order they asked", "[pool]") {
  PoolFixture f;
  IoThreads t;
  auto options = f.Options(1);
  options.acquire_timeout = 30s;
  UpstreamPool pool(t.io.get_executor(), options);
  std::atomic<bool> release_first{false};
  std::atomic<bool> first_holds{false};
  auto first = Spawn(t.io, [&]() -> asio::awaitable<bool> {
    UpstreamLease lease = co_await MustAcquire(pool);
    first_holds = true;
    co_await WaitFor(release_first);
    co_return true;
  });
  Eventually([&] { return first_holds.load(); }, "the first holder");
  std::mutex order_mutex;
  std::vector<std::string> order;
  std::vector<std::future<bool>> waiters;
  for (const std::string name : {"B", "C", "D", "E"}) {
    waiters.push_back(Spawn(t.io, [&, name]() -> asio::awaitable<bool> {
      UpstreamLease lease = co_await MustAcquire(pool);
      {
        std::lock_guard lock(order_mutex);
        order.push_back(name);
      }
      co_await Scalar(*lease, "select 1");
      co_return true;
    }));
    const int queued = static_cast<int>(waiters.size());
    Eventually([&] { return pool.Stats().waiting == queued; }, "the waiter to queue");
  }
  release_first = true;
  CHECK(Get(first));
  for (auto& w : waiters) CHECK(Get(w));
  CHECK(order == std::vector<std::string>{"B", "C", "D", "E"});
  CHECK(pool.Stats().open == 1);
}

TEST_CASE("Acquire gives up after acquire_timeout with a clear 53300", "[pool]") {
  PoolFixture f;
  IoThreads t;
  auto options = f.Options(1);
  options.acquire_timeout = 300ms;
  UpstreamPool pool(t.io.get_executor(), options);
  std::atomic<bool> release_first{false};
  std::atomic<bool> first_holds{false};
  auto first = Spawn(t.io, [&]() -> asio::awaitable<bool> {
    UpstreamLease lease = co_await MustAcquire(pool);
    first_holds = true;
    co_await WaitFor(release_first);
    co_return true;
  });
  Eventually([&] { return first_holds.load(); }, "the first holder");
  const auto started = std::chrono::steady_clock::now();
  auto second = Spawn(t.io, [&]() -> asio::awaitable<dpgate::Error> {
    auto lease = co_await pool.Acquire();
    if (lease.ok()) throw std::runtime_error("Acquire succeeded on a full pool");
    co_return lease.error();
  });
  const dpgate::Error e = Get(second);
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(e.code == "53300");
  CHECK(e.message ==
        "all 1 upstream connections are in use; try again or raise upstream.pool_size");
  CHECK(waited >= 290ms);
  CHECK(waited < 5s);
  CHECK(pool.Stats().waiting == 0);
  release_first = true;
  CHECK(Get(first));
  // The timed-out waiter left nothing behind: the next one is served.
  auto third = Spawn(t.io, [&]() -> asio::awaitable<std::string> {
    UpstreamLease lease = co_await MustAcquire(pool);
    co_return co_await Scalar(*lease, "select 1");
  });
  CHECK(Get(third) == "1");
}

// Every setting the session can see, as one string.
constexpr const char* kAllSettings =
    "select string_agg(name || '=' || setting, E'\\n' order by name) from pg_catalog.pg_settings";

TEST_CASE("a returned connection comes back exactly as a fresh one", "[pool]") {
  PoolFixture f;
  IoThreads t;
  UpstreamPool pool(t.io.get_executor(), f.Options(1));
  struct Fresh {
    std::string settings;
    std::string pid;
  };
  auto dirty = Spawn(t.io, [&]() -> asio::awaitable<Fresh> {
    UpstreamLease lease = co_await MustAcquire(pool);
    // One co_await per statement: GCC 12 mishandles temporaries when several
    // share an expression.
    Fresh fresh;
    fresh.settings = co_await Scalar(*lease, kAllSettings);
    fresh.pid = co_await Scalar(*lease, "select pg_backend_pid()");
    for (const char* sql :
         {"SET default_transaction_read_only = off", "SET application_name = 'dirty'",
          "SET search_path = public", "SET statement_timeout = '5min'",
          "SET TimeZone = 'Asia/Tokyo'", "CREATE TEMP TABLE pool_tmp (x integer)",
          "PREPARE pool_stmt AS SELECT 1", "SELECT pg_advisory_lock(4242)",
          "DECLARE pool_cur CURSOR WITH HOLD FOR SELECT 1", "LISTEN pool_channel", "BEGIN",
          "SELECT 1"}) {
      co_await Scalar(*lease, sql);
    }
    if (lease->TransactionStatus() != 'T') throw std::runtime_error("expected an open transaction");
    co_return fresh;  // released with the transaction still open
  });
  const Fresh fresh = Get(dirty);
  CHECK(fresh.settings.find("default_transaction_read_only=on") != std::string::npos);
  CHECK(fresh.settings.find("search_path=pg_catalog") != std::string::npos);

  auto next = Spawn(t.io, [&]() -> asio::awaitable<std::map<std::string, std::string>> {
    UpstreamLease lease = co_await MustAcquire(pool);
    std::map<std::string, std::string> seen;
    seen["status"] = std::string(1, lease->TransactionStatus());
    seen["pid"] = co_await Scalar(*lease, "select pg_backend_pid()");
    seen["settings"] = co_await Scalar(*lease, kAllSettings);
    seen["read_only"] = co_await Scalar(*lease, "SHOW default_transaction_read_only");
    seen["search_path"] = co_await Scalar(*lease, "SHOW search_path");
    seen["application_name"] = co_await Scalar(*lease, "SHOW application_name");
    seen["temp"] = co_await Scalar(
        *lease, "select count(*) from pg_catalog.pg_class where relname = 'pool_tmp'");
    seen["prepared"] =
        co_await Scalar(*lease, "select count(*) from pg_catalog.pg_prepared_statements");
    seen["cursors"] = co_await Scalar(*lease, "select count(*) from pg_catalog.pg_cursors");
    seen["locks"] = co_await Scalar(*lease,
                                    "select count(*) from pg_catalog.pg_locks where locktype = "
                                    "'advisory' and pid = pg_catalog.pg_backend_pid()");
    seen["listening"] =
        co_await Scalar(*lease, "select count(*) from pg_catalog.pg_listening_channels()");
    seen["write"] = co_await FailsWith(*lease, "CREATE TEMP TABLE pool_tmp2 (x integer)");
    // A failed transaction left behind is rolled back too.
    co_await Scalar(*lease, "BEGIN");
    seen["div"] = co_await FailsWith(*lease, "SELECT 1/0");
    seen["status_failed"] = std::string(1, lease->TransactionStatus());
    co_return seen;
  });
  auto seen = Get(next);
  CHECK(seen["status"] == "I");
  CHECK(seen["pid"] == fresh.pid);  // the same backend, reused
  CHECK(seen["settings"] == fresh.settings);
  CHECK(seen["read_only"] == "on");
  CHECK(seen["search_path"] == "pg_catalog");
  CHECK(seen["application_name"] == "");
  CHECK(seen["temp"] == "0");
  CHECK(seen["prepared"] == "0");
  CHECK(seen["cursors"] == "0");
  CHECK(seen["locks"] == "0");
  CHECK(seen["listening"] == "0");
  CHECK(seen["write"] == "25006");  // read-only transaction
  CHECK(seen["div"] == "22012");
  CHECK(seen["status_failed"] == "E");

  auto after_failed = Spawn(t.io, [&]() -> asio::awaitable<std::string> {
    UpstreamLease lease = co_await MustAcquire(pool);
    const std::string status(1, lease->TransactionStatus());
    const std::string pid = co_await Scalar(*lease, "select pg_backend_pid()");
    const std::string settings = co_await Scalar(*lease, kAllSettings);
    co_return status + "|" + pid + "|" + settings;
  });
  CHECK(Get(after_failed) == "I|" + fresh.pid + "|" + fresh.settings);
}

TEST_CASE("a backend terminated while idle in the pool is replaced on the next Acquire", "[pool]") {
  PoolFixture f;
  IoThreads t;
  UpstreamPool pool(t.io.get_executor(), f.Options(2));
  auto first = Spawn(t.io, [&]() -> asio::awaitable<int> {
    UpstreamLease lease = co_await MustAcquire(pool);
    co_return std::stoi(co_await Scalar(*lease, "select pg_backend_pid()"));
  });
  const int killed = Get(first);
  Eventually([&] { return pool.Stats().idle == 1; }, "the connection to be idle");
  ExecSql(f.pg, f.db, "select pg_terminate_backend(" + std::to_string(killed) + ")");
  Eventually([&] { return !f.BackendAlive(killed); }, "the backend to exit");
  auto second = Spawn(t.io, [&]() -> asio::awaitable<std::string> {
    UpstreamLease lease = co_await MustAcquire(pool);
    const std::string pid = co_await Scalar(*lease, "select pg_backend_pid()");
    const std::string x = co_await Scalar(*lease, "select x from public.t");
    co_return pid + "|" + x;
  });
  const std::string got = Get(second);
  CHECK(got != std::to_string(killed) + "|1");
  CHECK(got.substr(got.find('|')) == "|1");
  Eventually([&] { return pool.Stats().idle == 1; }, "the replacement to be idle");
  CHECK(pool.Stats().open == 1);  // the dead one's slot was freed, not leaked
  CHECK(f.Backends() == 1);
}

// A throwaway cluster of its own, so stopping it disturbs no other test.
struct PrivateCluster {
  std::string state;
  std::map<std::string, std::string> env;
  PrivateCluster() {
    char tmpl[] = "/tmp/dpgate-pool-test.XXXXXX";
    state = ::mkdtemp(tmpl);
    std::string out;
    if (RunCommand("bash " DPGATE_SOURCE_DIR "/tests/integration/pg_cluster.sh start " + state,
                   &out) != 0) {
      throw std::runtime_error("cannot start a private cluster: " + out);
    }
    std::ifstream in(state + "/env");
    std::string line;
    while (std::getline(in, line)) {
      const auto eq = line.find('=');
      if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  ~PrivateCluster() {
    std::string ignored;
    RunCommand("bash " DPGATE_SOURCE_DIR "/tests/integration/pg_cluster.sh stop " + state,
               &ignored);
    RunCommand("rm -rf " + state, &ignored);
  }
  std::string Dsn() {
    return "host=127.0.0.1 port=" + env["DPGATE_TEST_PGPORT"] +
           " user=" + env["DPGATE_TEST_PGUSER"] + " password=" + env["DPGATE_TEST_PGPASSWORD"] +
           " dbname=postgres connect_timeout=5";
  }
  void PgCtl(const std::string& args) {
    const std::string as_pg = ::geteuid() == 0 ? "runuser -u postgres -- " : "";
    std::string out;
    if (RunCommand(as_pg + "/usr/lib/postgresql/15/bin/pg_ctl -D " + env["DPGATE_TEST_PGDATA"] +
                       " " + args,
                   &out) != 0) {
      throw std::runtime_error("pg_ctl " + args + ": " + out);
    }
  }
  void Stop() { PgCtl("-m fast -w stop"); }
  void Start() {
    const std::string root = env["DPGATE_TEST_PGROOT"];
    PgCtl("-l " + root + "/server.log -w -t 60 -o \"-c port=" + env["DPGATE_TEST_PGPORT"] +
          " -c listen_addresses=127.0.0.1 -c unix_socket_directories=" + root +
          " -c fsync=off\" start");
  }
};

TEST_CASE("an upstream restart fails Acquire while it is down, then the pool recovers", "[pool]") {
  PrivateCluster cluster;
  IoThreads t;
  UpstreamPoolOptions options;
  options.dsn = cluster.Dsn();
  options.max_size = 2;
  UpstreamPool pool(t.io.get_executor(), options);

  // One connection held by a session across the restart, one idle in the pool.
  std::atomic<bool> restarted{false};
  std::atomic<bool> holding{false};
  auto held = Spawn(t.io, [&]() -> asio::awaitable<std::string> {
    UpstreamLease lease = co_await MustAcquire(pool);
    holding = true;
    co_await WaitFor(restarted);
    auto r = co_await lease->Execute("select 1");
    co_return r.ok() && !lease->broken() ? "worked" : r.ok() ? "upstream error" : r.error().code;
  });
  Eventually([&] { return holding.load(); }, "the session to hold a connection");
  auto warm = Spawn(t.io, [&]() -> asio::awaitable<std::string> {
    UpstreamLease lease = co_await MustAcquire(pool);
    co_return co_await Scalar(*lease, "select 1");
  });
  CHECK(Get(warm) == "1");
  Eventually([&] { return pool.Stats().idle == 1; }, "the second connection to be idle");
  CHECK(pool.Stats().open == 2);

  cluster.Stop();
  restarted = true;
  CHECK(Get(held) == "08006");  // the holder's statement fails; the process goes on
  auto while_down = Spawn(t.io, [&]() -> asio::awaitable<dpgate::Error> {
    auto lease = co_await pool.Acquire();
    if (lease.ok()) throw std::runtime_error("Acquire succeeded while the upstream was down");
    co_return lease.error();
  });
  const auto started = std::chrono::steady_clock::now();
  const dpgate::Error down = Get(while_down);
  CHECK(down.code == "08006");
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  CHECK(pool.Stats().open == 0);  // the dead connections' slots are free

  cluster.Start();
  auto after = Spawn(t.io, [&]() -> asio::awaitable<std::string> {
    UpstreamLease lease = co_await MustAcquire(pool);
    const std::string one = co_await Scalar(*lease, "select 1");
    const std::string read_only = co_await Scalar(*lease, "SHOW default_transaction_read_only");
    co_return one + "|" + read_only;
  });
  CHECK(Get(after) == "1|on");
}

TEST_CASE("idle connections beyond min_size are closed after idle_timeout", "[pool]") {
  PoolFixture f;
  IoThreads t;
  auto options = f.Options(4);
  options.idle_timeout = 200ms;
  options.min_size = 1;
  UpstreamPool pool(t.io.get_executor(), options);
  std::atomic<int> acquired{0};
  std::vector<std::future<bool>> sessions;
  for (int i = 0; i < 3; ++i) {
    sessions.push_back(Spawn(t.io, [&]() -> asio::awaitable<bool> {
      UpstreamLease lease = co_await MustAcquire(pool);
      ++acquired;
      while (acquired.load() < 3) co_await Sleep(5ms);  // three at once
      co_return true;
    }));
  }
  for (auto& s : sessions) CHECK(Get(s));
  CHECK(pool.Stats().open == 3);
  Eventually([&] { return pool.Stats().open == 1; }, "the idle connections to be closed");
  std::this_thread::sleep_for(500ms);
  CHECK(pool.Stats().open == 1);  // min_size is kept
  CHECK(pool.Stats().idle == 1);
  Eventually([&] { return f.Backends() == 1; }, "the backends to exit");
}

TEST_CASE("server parameters are cached, and transaction pooling says when to release", "[pool]") {
  PoolFixture f;
  IoThreads t;
  auto options = f.Options(2);
  options.mode = PoolMode::kTransaction;
  UpstreamPool pool(t.io.get_executor(), options);
  CHECK_FALSE(pool.CachedServerParameters().has_value());
  auto params = Spawn(t.io, [&]() -> asio::awaitable<std::map<std::string, std::string>> {
    auto p = co_await pool.GetServerParameters();
    if (!p.ok()) throw std::runtime_error(p.error().message);
    co_return std::map<std::string, std::string>(p->begin(), p->end());
  });
  auto p = Get(params);
  CHECK(p["server_version"].rfind("15", 0) == 0);
  CHECK(p["server_encoding"] == "UTF8");
  CHECK(p["integer_datetimes"] == "on");
  CHECK(p["standard_conforming_strings"] == "on");
  CHECK(p.count("is_superuser") == 0);
  CHECK(p.count("session_authorization") == 0);
  REQUIRE(pool.CachedServerParameters().has_value());
  CHECK(pool.CachedServerParameters()->size() == p.size());

  auto points = Spawn(t.io, [&]() -> asio::awaitable<std::string> {
    UpstreamLease lease = co_await MustAcquire(pool);
    std::string s;
    co_await Scalar(*lease, "BEGIN");
    s += pool.ShouldReleaseAfterStatement(lease) ? "1" : "0";
    co_await FailsWith(*lease, "SELECT 1/0");
    s += pool.ShouldReleaseAfterStatement(lease) ? "1" : "0";
    co_await FailsWith(*lease, "ROLLBACK");
    s += pool.ShouldReleaseAfterStatement(lease) ? "1" : "0";
    co_await Scalar(*lease, "select 1");
    s += pool.ShouldReleaseAfterStatement(lease) ? "1" : "0";
    lease.Release();
    s += pool.ShouldReleaseAfterStatement(lease) ? "1" : "0";
    co_return s;
  });
  CHECK(Get(points) == "00110");

  UpstreamPool session_pool(t.io.get_executor(), f.Options(1));
  auto session_mode = Spawn(t.io, [&]() -> asio::awaitable<bool> {
    UpstreamLease lease = co_await MustAcquire(session_pool);
    co_await Scalar(*lease, "select 1");
    co_return session_pool.ShouldReleaseAfterStatement(lease);
  });
  CHECK_FALSE(Get(session_mode));
}

TEST_CASE("closing the pool fails waiters and closes connections as they come back", "[pool]") {
  PoolFixture f;
  IoThreads t;
  auto options = f.Options(1);
  options.acquire_timeout = 30s;
  UpstreamPool pool(t.io.get_executor(), options);
  std::atomic<bool> release_first{false};
  std::atomic<bool> first_holds{false};
  auto first = Spawn(t.io, [&]() -> asio::awaitable<bool> {
    UpstreamLease lease = co_await MustAcquire(pool);
    first_holds = true;
    co_await WaitFor(release_first);
    co_return true;
  });
  Eventually([&] { return first_holds.load(); }, "the first holder");
  auto waiter = Spawn(t.io, [&]() -> asio::awaitable<std::string> {
    auto lease = co_await pool.Acquire();
    co_return lease.ok() ? "acquired" : lease.error().code;
  });
  Eventually([&] { return pool.Stats().waiting == 1; }, "the waiter to queue");
  pool.Close();
  CHECK(Get(waiter) == "57P01");
  release_first = true;
  CHECK(Get(first));
  Eventually([&] { return pool.Stats().open == 0; }, "the lent connection to be closed");
  Eventually([&] { return f.Backends() == 0; }, "the backend to exit");
}

}  // namespace
