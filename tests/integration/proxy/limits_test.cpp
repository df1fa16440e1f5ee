// The config's `limits` (docs/CONFIG.md, docs/PROXY.md §2) through
// the real dpgate binary: max_connections, max_message_size, auth_timeout
// and idle_timeout, each with the FATAL a client gets, and the server up
// afterwards. The timeouts are short so the tests are quick; the tests wait
// for what dpgate sends, never assert how long it took.
#include <libpq-fe.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "raw_client.h"
#include "serve_fixture.h"

using dpgate::testing::RawClient;
using dpgate::testing::ServeFixture;

namespace {

ServeFixture TrustFixture(const std::string& limits) {
  return ServeFixture(limits, dpgate::testing::kSchemaSql, "public.people, public.lookup",
                      dpgate::testing::kDatasetsYaml, "trust");
}

std::string Query(const std::string& sql) {
  return RawClient::Message('Q', RawClient::Str(sql));
}

std::string StartupPacket(const std::string& user, const std::string& db) {
  const std::string body = RawClient::Int32(196608) + RawClient::Str("user") +
                           RawClient::Str(user) + RawClient::Str("database") + RawClient::Str(db) +
                           '\0';
  return RawClient::Int32(static_cast<int32_t>(body.size() + 4)) + body;
}

// The next message must be a FATAL ErrorResponse with `sqlstate`, and the
// server must then close the connection.
void ExpectFatalThenClose(RawClient& raw, const std::string& sqlstate, const std::string& words) {
  char type = 0;
  std::string body;
  REQUIRE(raw.Next(&type, &body) == RawClient::Read::kMessage);
  REQUIRE(type == 'E');
  CHECK(RawClient::Field(body, 'S') == "FATAL");
  CHECK(RawClient::Field(body, 'C') == sqlstate);
  CHECK(RawClient::Field(body, 'M').find(words) != std::string::npos);
  CHECK(raw.End() == RawClient::Read::kClosed);
}

// A trust login works: the server is up and serving.
void ExpectLoginWorks(const ServeFixture& f) {
  RawClient raw(f.port);
  raw.Startup("alice", f.db);
  raw.Send(Query("SELECT 1"));
  const auto answer = raw.UntilReady();
  CHECK(answer.size() == 4);  // RowDescription, DataRow, CommandComplete, ReadyForQuery
}

}  // namespace

TEST_CASE("limits.max_connections refuses the client beyond it with 53300") {
  ServeFixture f = TrustFixture("limits: { max_connections: 2 }\n");
  RawClient first(f.port);
  first.Startup("alice", f.db);
  RawClient second(f.port);
  second.Startup("alice", f.db);
  RawClient third(f.port);
  ExpectFatalThenClose(third, "53300", "too many clients");
  // A slot freed is a slot again.
  first.Send(RawClient::Message('X', ""));
  CHECK(first.End() == RawClient::Read::kClosed);
  bool admitted = false;
  for (int attempt = 0; attempt < 50 && !admitted; ++attempt) {
    // The server counts the first session out when its coroutine ends,
    // just after the close the client saw: retry until it has.
    RawClient again(f.port);
    again.Send(StartupPacket("alice", f.db));
    char type = 0;
    std::string body;
    REQUIRE(again.Next(&type, &body) == RawClient::Read::kMessage);
    admitted = type == 'R';
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(admitted);
  CHECK(f.dpgate->running());
}

TEST_CASE("limits.max_message_size bounds a client message and names the setting") {
  ServeFixture f = TrustFixture("limits: { max_message_size: 2048 }\n");
  {
    RawClient raw(f.port);
    raw.Startup("alice", f.db);
    // Under the limit: served.
    raw.Send(Query("SELECT '" + std::string(1500, 'x') + "' AS long"));
    const auto answer = raw.UntilReady();
    REQUIRE(answer.size() == 4);
    CHECK(answer[1].first == 'D');
    // Over it: a protocol error that says what to raise, then the end.
    raw.Send(Query("SELECT '" + std::string(3000, 'x') + "' AS longer"));
    char type = 0;
    std::string body;
    REQUIRE(raw.Next(&type, &body) == RawClient::Read::kMessage);
    REQUIRE(type == 'E');
    CHECK(RawClient::Field(body, 'C') == "08P01");
    CHECK(RawClient::Field(body, 'M').find("limits.max_message_size") != std::string::npos);
    CHECK(raw.End() == RawClient::Read::kClosed);
  }
  ExpectLoginWorks(f);
  CHECK(f.dpgate->running());
}

TEST_CASE("limits.auth_timeout ends a login that does not finish, however it stalls") {
  ServeFixture f = TrustFixture("limits: { auth_timeout: 1s }\n");
  SECTION("a client that sends nothing gets FATAL 57014") {
    RawClient raw(f.port);
    ExpectFatalThenClose(raw, "57014", "authentication due to timeout");
    ExpectLoginWorks(f);
    // The log says why, and names the setting.
    f.dpgate->Stop();
    CHECK(f.dpgate->Log().find("without completing authentication (limits.auth_timeout)") !=
          std::string::npos);
    return;
  }
  SECTION("a client that trickles its startup packet is cut off before it is whole") {
    // One byte every 200 ms: each byte arrives well inside any per-read
    // timeout, but the whole packet would take seconds. The deadline is
    // for the whole login, so dpgate ends it part-way.
    RawClient raw(f.port);
    const std::string packet = StartupPacket("alice", f.db);
    REQUIRE(packet.size() > 30);
    bool cut_off = false;
    for (size_t i = 0; i < packet.size() && !cut_off; ++i) {
      if (!raw.TrySend(packet.substr(i, 1))) break;
      cut_off = raw.ReadableWithin(200);
    }
    REQUIRE(cut_off);
    ExpectFatalThenClose(raw, "57014", "authentication due to timeout");
  }
  SECTION("a TLS handshake that stalls is closed") {
    // With tls configured the handshake is part of the login too; no
    // FATAL can be sent in the middle of it, so the connection just ends.
    const dpgate::testing::SelfSignedCert cert;
    {
      ServeFixture tls("limits: { auth_timeout: 1s }\n" + cert.Yaml());
      RawClient raw(tls.port);
      raw.Send(RawClient::Int32(8) + RawClient::Int32(80877103));  // SSLRequest
      REQUIRE(raw.ReadableWithin(20000));
      char s = 0;
      REQUIRE(::recv(raw.fd(), &s, 1, 0) == 1);
      REQUIRE(s == 'S');
      // No ClientHello: the server must give up on its own.
      CHECK(raw.End() == RawClient::Read::kClosed);
      CHECK(tls.dpgate->running());
    }
  }
  ExpectLoginWorks(f);
  CHECK(f.dpgate->running());
}

TEST_CASE("limits.idle_timeout drops a session that waits too long, never a busy one") {
  ServeFixture f = TrustFixture("limits: { idle_timeout: 3s }\n");
  RawClient raw(f.port);
  raw.Startup("alice", f.db);
  // Activity more often than the timeout keeps the session: five Queries a
  // second apart span more than the 3 s timeout.
  for (int i = 0; i < 5; ++i) {
    raw.Send(Query("SELECT 1"));
    CHECK(raw.UntilReady().size() == 4);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  // A statement running longer than the timeout is not idle: it waits 5 s
  // for a lock held directly on PostgreSQL.
  {
    pqxx::connection admin(f.pg.Dsn(f.db));
    pqxx::work hold(admin);
    hold.exec("LOCK TABLE public.lookup IN ACCESS EXCLUSIVE MODE");
    raw.Send(Query("SELECT count(*) FROM lookup"));
    std::this_thread::sleep_for(std::chrono::seconds(5));
    pqxx::connection watcher(f.pg.Dsn(f.db));
    const int waiting =
        pqxx::nontransaction(watcher)
            .exec1("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = '" + f.reader +
                   "' AND wait_event_type = 'Lock'")[0]
            .as<int>();
    CHECK(waiting == 1);
    hold.commit();
  }
  const auto waited = raw.UntilReady();
  REQUIRE(waited.size() == 4);
  CHECK(waited[1].first == 'D');
  // Then, sending nothing: FATAL 57P05, and the end.
  ExpectFatalThenClose(raw, "57P05", "idle-session timeout");
  ExpectLoginWorks(f);
  CHECK(f.dpgate->running());
}

TEST_CASE("libpq sees the idle timeout's FATAL, over plain TCP and over TLS") {
  const dpgate::testing::SelfSignedCert cert;
  for (const bool use_tls : {false, true}) {
    INFO("TLS " << use_tls);
    ServeFixture f("limits: { idle_timeout: 1s }\n" + (use_tls ? cert.Yaml() : std::string()));
    std::string dsn = f.Dsn("alice", dpgate::testing::kAlicePassword);
    if (use_tls) dsn.replace(dsn.find("sslmode=disable"), 15, "sslmode=require");
    PGconn* c = PQconnectdb(dsn.c_str());
    REQUIRE(PQstatus(c) == CONNECTION_OK);
    CHECK(PQsslInUse(c) == (use_tls ? 1 : 0));
    PGresult* r = PQexec(c, "SELECT count(*) FROM lookup");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    // Wait for dpgate to close the session: the socket turns readable with
    // the FATAL, then the end.
    pollfd p{PQsocket(c), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 20000) == 1);
    r = PQexec(c, "SELECT 1");
    CHECK(PQresultStatus(r) != PGRES_TUPLES_OK);
    PQclear(r);
    CHECK(std::string(PQerrorMessage(c)).find("idle-session timeout") != std::string::npos);
    PQfinish(c);
    CHECK(f.dpgate->running());
  }
}
