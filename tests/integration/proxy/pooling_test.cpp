// Upstream pooling through dpgate serve: idle clients hold no upstream
// connection, pool_size bounds the backends, and transaction pooling keeps
// each client's settings to itself.
#include <atomic>
#include <catch2/catch.hpp>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "serve_fixture.h"

using dpgate::testing::kAlicePassword;
using dpgate::testing::ServeFixture;

namespace {
// Backends of the upstream role, counted by the superuser.
int UpstreamBackends(const ServeFixture& f) {
  pqxx::connection c(f.pg.Dsn(f.db));
  return pqxx::nontransaction(c)
      .exec1("select count(*) from pg_stat_activity where usename = '" + f.reader + "'")[0]
      .as<int>();
}
}  // namespace

TEST_CASE("idle clients hold no upstream connection and pool_size bounds the backends") {
  // pool_size 5: five clients that each run a statement fill the pool.
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "scram", ", pool_size: 5");
  std::vector<std::unique_ptr<pqxx::connection>> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(std::make_unique<pqxx::connection>(f.Dsn("alice", kAlicePassword)));
  }
  // At most the one connection the pool opened to learn the server parameters.
  CHECK(UpstreamBackends(f) <= 1);
  for (auto& c : clients) {
    pqxx::nontransaction(*c).exec1("SELECT label FROM lookup WHERE code = 'a'");
  }
  // Session pooling: each client that ran a statement keeps one.
  CHECK(UpstreamBackends(f) == 5);
  clients.clear();
  // Returned connections are reset and lent to the next clients; the pool
  // never grows past pool_size.
  std::vector<std::unique_ptr<pqxx::connection>> again;
  for (int i = 0; i < 5; ++i) {
    again.push_back(std::make_unique<pqxx::connection>(f.Dsn("alice", kAlicePassword)));
    pqxx::nontransaction(*again.back()).exec1("SELECT 1");
  }
  CHECK(UpstreamBackends(f) == 5);
}

TEST_CASE("transaction pooling shares one connection and keeps each client's settings") {
  // pool_size 1: both clients must share the single upstream connection.
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "scram", ", pool_size: 1, pool_mode: transaction");
  pqxx::connection a(f.Dsn("alice", kAlicePassword));
  pqxx::connection b(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction ta(a);
  pqxx::nontransaction tb(b);
  ta.exec("SET statement_timeout = '123s'");
  // b gets the same (reset) connection: a's setting is not visible to it...
  CHECK(tb.exec1("SHOW statement_timeout")[0].as<std::string>() == "0");
  // ...and a's setting is replayed for a on its next statement.
  CHECK(ta.exec1("SHOW statement_timeout")[0].as<std::string>() == "123s");
  CHECK(UpstreamBackends(f) == 1);
  // A transaction block keeps the connection until it ends.
  ta.exec("BEGIN");
  ta.exec1("SELECT label FROM lookup WHERE code = 'a'");
  ta.exec("COMMIT");
  CHECK(tb.exec1("SELECT label FROM lookup WHERE code = 'b'")[0].as<std::string>() == "Group B");
  CHECK(UpstreamBackends(f) == 1);
}

TEST_CASE("eight busy clients get every answer, with no session dropped") {
  ServeFixture f;
  std::vector<std::thread> threads;
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&f, &answered, &failed, t] {
      try {
        pqxx::connection c(f.Dsn("alice", kAlicePassword));
        pqxx::nontransaction tx(c);
        for (int i = 0; i < 300; ++i) {
          const int v = tx.exec1("SELECT " + std::to_string(t * 1000 + i))[0].as<int>();
          if (v == t * 1000 + i) ++answered;
        }
      } catch (const std::exception&) {
        ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failed.load() == 0);
  CHECK(answered.load() == 8 * 300);
}
