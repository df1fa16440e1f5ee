// dpgate serve end to end: a real PostgreSQL 15, the real dpgate binary, real
// libpq clients (libpqxx) and psql. Crafted data with known truth.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <pqxx/pqxx>
#include <string>

#include "serve_fixture.h"

using dpgate::testing::RunCommand;

using dpgate::testing::kAlicePassword;
using dpgate::testing::kBobPassword;
using dpgate::testing::kPeople;
using dpgate::testing::ServeFixture;

TEST_CASE("a noisy global count is near the truth and charges the budget once") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  tx.exec("SET dp.epsilon = 1");
  const auto before = tx.exec(
      "SHOW dp.budget");  // columns: dataset, kind, principal, period, remaining_epsilon, ...
  double remaining_before = -1;
  for (const auto& row : before) {
    if (row[1].as<std::string>() == "analyst") remaining_before = row[4].as<double>();
  }
  REQUIRE(remaining_before == Approx(100));
  const auto r = tx.exec1("SELECT count(*) FROM people");
  // One quantity, ε = 1, sensitivity c·k = 1: discrete Laplace with scale 1.
  // P(|noise| > 20) = 2·e^{-20}/(1+e^{-1}) < 1e-8.
  CHECK(std::abs(r[0].as<long>() - kPeople) <= 20);
  const auto after = tx.exec("SHOW dp.budget");
  double remaining_after = -1;
  for (const auto& row : after) {
    if (row[1].as<std::string>() == "analyst") remaining_after = row[4].as<double>();
  }
  CHECK(remaining_after == Approx(99));
}

TEST_CASE("GROUP BY releases noisy groups and suppresses a one-person group") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  tx.exec("SET dp.epsilon = 2");
  // A tiny δ makes the one-unit group's release probability at most ~1e-9.
  tx.exec("SET dp.delta = 1e-9");
  const auto rows =
      tx.exec("SELECT grp, count(*) AS n, avg(score) AS mean FROM people GROUP BY grp");
  bool saw_a = false;
  bool saw_b = false;
  for (const auto& row : rows) {
    const auto grp = row[0].as<std::string>();
    CHECK(grp != "rare");
    const long n = row[1].as<long>();
    const double mean = row[2].as<double>();
    // Each noise term: ε = 2/3 per quantity (half to selection: see
    // docs/PRIVACY.md); a ±200 band on counts of thousands and ±5 on a mean
    // of ~50 over thousands of units hold with probability far above 1-1e-6.
    if (grp == "a") {
      saw_a = true;
      CHECK(std::abs(n - 6000) <= 200);
    } else if (grp == "b") {
      saw_b = true;
      CHECK(std::abs(n - 3999) <= 200);
    }
    CHECK(std::abs(mean - 49.62) <= 5);
  }
  CHECK(saw_a);
  CHECK(saw_b);
  CHECK(rows.columns() == 3);
  CHECK(std::string(rows.column_name(1)) == "n");
}

TEST_CASE("raw rows of a private table are refused, public tables pass through") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  {
    pqxx::nontransaction tx(c);
    CHECK_THROWS_WITH(tx.exec("SELECT * FROM people"), Catch::Contains("people"));
  }
  pqxx::nontransaction tx(c);
  const auto lookup = tx.exec("SELECT code, label FROM lookup ORDER BY code");
  REQUIRE(lookup.size() == 2);
  CHECK(lookup[0][1].as<std::string>() == "Group A");
  // DML never reaches the warehouse.
  CHECK_THROWS(tx.exec("DELETE FROM lookup"));
  CHECK(tx.exec1("SELECT count(*) FROM lookup")[0].as<int>() == 2);
}

TEST_CASE("an exhausted budget refuses the query with the remaining budget") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("bob", kBobPassword));
  pqxx::nontransaction tx(c);
  tx.exec1("SELECT count(*) FROM people");  // 0.5 of bob's 0.6
  try {
    // A different query (the same one would be answered from the cache).
    tx.exec1("SELECT count(*) FROM people WHERE score > 10");
    FAIL("the second query should have been refused");
  } catch (const pqxx::sql_error& e) {
    CHECK(std::string(e.sqlstate()) == "53400");
    CHECK(std::string(e.what()).find("bob") != std::string::npos);
  }
}

TEST_CASE("wrong passwords and unknown users are refused and the server stays up") {
  ServeFixture f;
  CHECK_THROWS_AS(pqxx::connection(f.Dsn("alice", "wrong")), pqxx::broken_connection);
  CHECK_THROWS_AS(pqxx::connection(f.Dsn("mallory", "whatever")), pqxx::broken_connection);
  // Garbage bytes instead of a startup packet close that connection only.
  std::string out;
  RunCommand("printf 'GARBAGE-NOT-POSTGRES' | timeout 5 bash -c 'cat > /dev/tcp/127.0.0.1/" +
                 std::to_string(f.port) + "'",
             &out);
  CHECK(f.dpgate->running());
  pqxx::connection ok(f.Dsn("alice", kAlicePassword));
  CHECK(pqxx::nontransaction(ok).exec1("SELECT 1")[0].as<int>() == 1);
}

TEST_CASE("psql gets a privacy receipt, and no raw aggregate reaches the log") {
  ServeFixture f;
  std::string out;
  const std::string cmd = "PGPASSWORD=" + std::string(kAlicePassword) +
                          " psql -X -v ON_ERROR_STOP=1 \"" + f.Dsn("alice", kAlicePassword) +
                          "\" -c 'SELECT sum(score) AS total, count(*) FROM people' 2>&1";
  REQUIRE(RunCommand(cmd, &out) == 0);
  CHECK(out.find("NOTICE:  dpgate: charged epsilon=0.5") != std::string::npos);
  CHECK(out.find("partition selection") != std::string::npos);
  f.dpgate->Stop();
  const std::string log = f.dpgate->Log();
  CHECK(log.find("audit analyst=alice class=private_aggregate") != std::string::npos);
  // The true sum and count never appear in the log, nor the passwords.
  char truth[64];
  std::snprintf(truth, sizeof truth, "%.2f", f.TrueScoreSum());
  CHECK(log.find(truth) == std::string::npos);
  CHECK(log.find("10000") == std::string::npos);
  CHECK(log.find(kAlicePassword) == std::string::npos);
  CHECK(log.find("reader-pw") == std::string::npos);
}

TEST_CASE("with tls configured, clients must encrypt, and real TLS works") {
  const dpgate::testing::SelfSignedCert cert;
  {
    ServeFixture f(cert.Yaml());
    std::string dsn = f.Dsn("alice", kAlicePassword);
    // Without TLS: refused with a clear reason.
    try {
      pqxx::connection plain(dsn);
      FAIL("a plaintext connection was accepted");
    } catch (const pqxx::broken_connection& e) {
      CHECK(std::string(e.what()).find("encrypted connection") != std::string::npos);
    }
    // With TLS: works, and the session really is encrypted.
    dsn.replace(dsn.find("sslmode=disable"), 15, "sslmode=require");
    PGconn* tls = PQconnectdb(dsn.c_str());
    REQUIRE(PQstatus(tls) == CONNECTION_OK);
    CHECK(PQsslInUse(tls) == 1);
    PGresult* r = PQexec(tls, "SELECT count(*) FROM lookup");
    REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK);
    CHECK(std::string(PQgetvalue(r, 0, 0)) == "2");
    PQclear(r);
    PQfinish(tls);
  }
}

TEST_CASE("SIGTERM stops accepting and exits cleanly") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  CHECK(pqxx::nontransaction(c).exec1("SELECT 1")[0].as<int>() == 1);
  CHECK(f.dpgate->Stop() == 0);
  CHECK_THROWS_AS(pqxx::connection(f.Dsn("alice", kAlicePassword)), pqxx::broken_connection);
}

TEST_CASE("after SIGTERM every statement's audit line is in the log") {
  // The log is written in batches (docs/DESIGN-NOTES.md item 9); a graceful
  // stop must still write every line, one per statement.
  ServeFixture f;
  constexpr int kStatements = 300;
  {
    pqxx::connection c(f.Dsn("alice", kAlicePassword));
    pqxx::nontransaction tx(c);
    for (int i = 0; i < kStatements; ++i) tx.exec1("SELECT count(*) FROM lookup");
  }
  REQUIRE(f.dpgate->Stop() == 0);
  const std::string log = f.dpgate->Log();
  int lines = 0;
  for (size_t at = log.find("audit analyst=alice class=public"); at != std::string::npos;
       at = log.find("audit analyst=alice class=public", at + 1)) {
    ++lines;
  }
  CHECK(lines == kStatements);
  CHECK(log.find("dpgate stopped") != std::string::npos);
}

TEST_CASE("a repeated query returns the same noisy answer and is charged once") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  auto remaining = [&] {
    for (const auto& row : tx.exec("SHOW dp.budget")) {
      if (row[1].as<std::string>() == "analyst") return row[4].as<double>();
    }
    return -1.0;
  };
  const auto first = tx.exec("SELECT grp, count(*) FROM people GROUP BY grp ORDER BY grp");
  const double after_first = remaining();
  const auto second = tx.exec("SELECT grp, count(*) FROM people GROUP BY grp ORDER BY grp");
  CHECK(remaining() == Approx(after_first));
  CHECK(after_first == Approx(99.5));
  REQUIRE(first.size() == second.size());
  for (size_t i = 0; i < first.size(); ++i) {
    CHECK(first[i][0].as<std::string>() == second[i][0].as<std::string>());
    CHECK(first[i][1].as<long>() == second[i][1].as<long>());
  }
  // A different constant is a different query: charged again.
  tx.exec("SELECT grp, count(*) FROM people WHERE score > 1 GROUP BY grp");
  CHECK(remaining() == Approx(99.0));
}

namespace {
// Connects to 127.0.0.1:port, sends `bytes`, and returns what the server
// answers before closing (bounded by a 10 s receive timeout).
std::string RawExchange(int port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}
}  // namespace

TEST_CASE("an oversized startup packet gets a protocol error and the server stays up") {
  ServeFixture f;
  // Length word 100,000,000: refused before any body is read or allocated.
  const std::string reply = RawExchange(f.port, std::string("\x05\xf5\xe1\x00", 4));
  REQUIRE_FALSE(reply.empty());
  CHECK(reply[0] == 'E');
  CHECK(reply.find("08P01") != std::string::npos);
  CHECK(reply.find("exceeds the limit") != std::string::npos);
  CHECK(f.dpgate->running());
  pqxx::connection ok(f.Dsn("alice", kAlicePassword));
  CHECK(pqxx::nontransaction(ok).exec1("SELECT 1")[0].as<int>() == 1);
}

TEST_CASE("clients that vanish mid-query do not take the server down") {
  ServeFixture f;
  for (int i = 0; i < 20; ++i) {
    PGconn* c = PQconnectdb(f.Dsn("alice", kAlicePassword).c_str());
    REQUIRE(PQstatus(c) == CONNECTION_OK);
    const char* q = i % 2 == 0 ? "SELECT code FROM lookup, pg_catalog.generate_series(1, 200000)"
                               : "SELECT grp, count(*) FROM people GROUP BY grp";
    REQUIRE(PQsendQuery(c, q) == 1);
    PQfinish(c);  // gone before the answer
  }
  CHECK(f.dpgate->running());
  pqxx::connection ok(f.Dsn("alice", kAlicePassword));
  CHECK(pqxx::nontransaction(ok).exec1("SELECT count(*) FROM lookup")[0].as<int>() == 2);
}

TEST_CASE("a lost upstream connection fails one statement, then the session recovers") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  CHECK(tx.exec1("SELECT count(*) FROM lookup")[0].as<int>() == 2);
  // Kill dpgate's upstream backend, as an upstream restart would.
  {
    pqxx::connection admin(f.pg.Dsn(f.db));
    pqxx::nontransaction a(admin);
    const auto killed = a.exec1(
        "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity "
        "WHERE usename = " +
        a.quote(f.reader));
    REQUIRE(killed[0].as<int>() >= 1);
  }
  CHECK_THROWS(tx.exec1("SELECT count(*) FROM lookup"));
  CHECK(tx.exec1("SELECT count(*) FROM lookup")[0].as<int>() == 2);
  CHECK(f.dpgate->running());
}

TEST_CASE("a CancelRequest through dpgate cancels the running upstream query") {
  ServeFixture f;
  PGconn* c = PQconnectdb(f.Dsn("alice", kAlicePassword).c_str());
  REQUIRE(PQstatus(c) == CONNECTION_OK);
  // A public query that would run for minutes.
  REQUIRE(PQsendQuery(
              c, "SELECT count(*) FROM lookup, pg_catalog.generate_series(1, 2000000000)") == 1);
  // Send the cancel (libpq connects to dpgate with the BackendKeyData dpgate
  // gave) once the upstream is really running the query.
  pqxx::connection admin(f.pg.Dsn(f.db));
  bool running = false;
  for (int i = 0; i < 200 && !running; ++i) {
    pqxx::nontransaction a(admin);
    running = a.exec1("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = " +
                      a.quote(f.reader) + " AND state = 'active'")[0]
                  .as<int>() > 0;
    if (!running) ::usleep(50000);
  }
  REQUIRE(running);
  PGcancel* cancel = PQgetCancel(c);
  char err[256];
  REQUIRE(PQcancel(cancel, err, sizeof err) == 1);
  PQfreeCancel(cancel);
  PGresult* r = PQgetResult(c);
  REQUIRE(r != nullptr);
  CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
  const char* sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  REQUIRE(sqlstate != nullptr);
  CHECK(std::string(sqlstate) == "57014");  // query_canceled
  PQclear(r);
  while ((r = PQgetResult(c)) != nullptr) PQclear(r);
  // The session is still usable.
  r = PQexec(c, "SELECT count(*) FROM lookup");
  CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
  PQclear(r);
  PQfinish(c);
}

// docs/REWRITER.md §5.4–§5.5 end to end: a join of two private tables on
// the unit and a CTE over a private table answer near the truth through
// dpgate and charge the budget once each.
TEST_CASE("private tables joined on the unit and a CTE in FROM answer through dpgate") {
  const std::string schema = R"sql(
    create table public.members (id integer primary key, tier text not null);
    insert into public.members select g, case when g % 2 = 0 then 'gold' else 'basic' end
      from generate_series(1, 2000) g;
    create table public.visits (member_id integer not null, kind text not null);
    insert into public.visits select g, k from generate_series(1, 2000) g,
      (values ('web'), ('shop')) as kinds(k);
  )sql";
  const std::string datasets = R"yaml(datasets:
  - name: club
    budget: { epsilon: 1000, delta: 0.5, period: month }
    tables:
      - name: public.members
        privacy_unit: id
        max_groups_contributed: 1
        max_rows_per_group: 1
      - name: public.visits
        privacy_unit: member_id
        max_groups_contributed: 1
        max_rows_per_group: 3
)yaml";
  ServeFixture f("", schema, "public.members, public.visits", datasets);
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  tx.exec("SET dp.epsilon = 1");
  const auto remaining = [&tx]() { return dpgate::testing::RemainingEpsilon(tx); };
  const double before = remaining();
  // 4,000 joined rows, two per member (within c = 3, the larger c). One
  // count with ε = 1 and sensitivity k·c = 3: discrete Laplace with scale 3,
  // P(|noise| > 60) = 2·e^{-20}/(1+e^{-1/3}) < 1e-8.
  const auto joined = tx.exec1(
      "SELECT count(*) FROM members m JOIN visits v ON m.id = v.member_id WHERE m.tier = 'gold'");
  CHECK(std::abs(joined[0].as<long>() - 2000) <= 60);
  CHECK(remaining() == Approx(before - 1));
  // 2,000 web visits through a CTE, same noise.
  const auto cte = tx.exec1(
      "WITH web AS (SELECT member_id FROM visits WHERE kind = 'web') SELECT count(*) FROM web");
  CHECK(std::abs(cte[0].as<long>() - 2000) <= 60);
  CHECK(remaining() == Approx(before - 2));
  // Joined on something other than the unit: refused before anything runs.
  CHECK_THROWS_WITH(tx.exec("SELECT count(*) FROM members m JOIN visits v ON m.tier = v.kind"),
                    Catch::Contains("supported only on their privacy units"));
  CHECK(remaining() == Approx(before - 2));
}

// The default number of I/O threads is the number of cores dpgate may run on
// (its CPU affinity, which it inherits from the test here), not the
// machine's count: more threads than usable cores only share them.
TEST_CASE("the default I/O threads follow the CPU affinity dpgate is started with") {
  cpu_set_t all;
  CPU_ZERO(&all);
  REQUIRE(sched_getaffinity(0, sizeof all, &all) == 0);
  const int usable = CPU_COUNT(&all);
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  {
    ServeFixture f;
    REQUIRE(f.dpgate->Stop() == 0);  // writes the last batch of the log
    CHECK(f.dpgate->Log().find("io_threads=" + std::to_string(usable) + ")") != std::string::npos);
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  std::string log;
  try {
    ServeFixture f;  // dpgate forked now inherits the one-core mask
    {
      pqxx::connection c(f.Dsn("alice", kAlicePassword));
      CHECK(pqxx::nontransaction(c).exec1("SELECT 1")[0].as<int>() == 1);
    }
    REQUIRE(f.dpgate->Stop() == 0);
    log = f.dpgate->Log();
  } catch (...) {
    sched_setaffinity(0, sizeof all, &all);
    throw;
  }
  REQUIRE(sched_setaffinity(0, sizeof all, &all) == 0);
  CHECK(log.find("io_threads=1)") != std::string::npos);
}
