// The extended query protocol through dpgate (Parse/Bind/Describe/Execute/
// Close/Flush/Sync), against a real PostgreSQL 15 with libpq as the client
// (PQprepare, PQdescribePrepared, PQexecPrepared, PQexecParams all speak the
// extended protocol) and a raw-socket client for what libpq cannot send
// (Execute with a row limit, pipelined errors).
#include <arpa/inet.h>
#include <endian.h>

#include <libpq-fe.h>
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "pq_handles.h"
#include "raw_client.h"
#include "serve_fixture.h"

using dpgate::testing::Conn;
using dpgate::testing::kAlicePassword;
using dpgate::testing::kPeople;
using dpgate::testing::Res;
using dpgate::testing::ServeFixture;
using dpgate::testing::Sqlstate;

namespace {

Conn Connect(const ServeFixture& f) {
  return dpgate::testing::Connect(f.Dsn("alice", kAlicePassword));
}

// Fails with the server's message when the result is not `expected`.
void RequireStatus(const PGresult* r, ExecStatusType expected) {
  INFO(PQresultErrorMessage(r));
  REQUIRE(PQresultStatus(r) == expected);
}

// The analyst's remaining ε, read with the simple protocol.
double RemainingEpsilon(PGconn* c) {
  Res r(PQexec(c, "SHOW dp.budget"));
  RequireStatus(r.get(), PGRES_TUPLES_OK);
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    if (std::string(PQgetvalue(r.get(), i, 1)) == "analyst") {
      return std::stod(PQgetvalue(r.get(), i, 4));
    }
  }
  FAIL("no analyst budget row");
  return -1;
}

int64_t BigEndianInt64(const char* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return static_cast<int64_t>(be64toh(v));
}

double BigEndianFloat8(const char* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);
  v = be64toh(v);
  double d = 0;
  std::memcpy(&d, &v, 8);
  return d;
}

}  // namespace

TEST_CASE(
    "Parse and Describe of a private aggregate charge nothing and describe released columns") {
  ServeFixture f;
  Conn c = Connect(f);
  REQUIRE(PQresultStatus(Res(PQexec(c.get(), "SET dp.epsilon = 1")).get()) == PGRES_COMMAND_OK);
  const double before = RemainingEpsilon(c.get());
  Res prepared(PQprepare(c.get(), "by_group",
                         "SELECT grp, count(*) AS n, avg(score) AS mean FROM people "
                         "WHERE score >= $1 GROUP BY grp",
                         0, nullptr));
  RequireStatus(prepared.get(), PGRES_COMMAND_OK);
  Res described(PQdescribePrepared(c.get(), "by_group"));
  RequireStatus(described.get(), PGRES_COMMAND_OK);
  REQUIRE(PQnparams(described.get()) == 1);
  CHECK(PQparamtype(described.get(), 0) == 1700);  // numeric, as score
  REQUIRE(PQnfields(described.get()) == 3);
  CHECK(std::string(PQfname(described.get(), 0)) == "grp");
  CHECK(PQftype(described.get(), 0) == 25);
  CHECK(std::string(PQfname(described.get(), 1)) == "n");
  CHECK(PQftype(described.get(), 1) == 20);
  CHECK(std::string(PQfname(described.get(), 2)) == "mean");
  CHECK(PQftype(described.get(), 2) == 701);
  CHECK(RemainingEpsilon(c.get()) == Approx(before));
}

TEST_CASE("each execution of a prepared private aggregate is charged once, in text and binary") {
  ServeFixture f;
  Conn c = Connect(f);
  REQUIRE(PQresultStatus(Res(PQexec(c.get(), "SET dp.epsilon = 1")).get()) == PGRES_COMMAND_OK);
  Res prepared(PQprepare(c.get(), "total", "SELECT count(*) AS n FROM people WHERE score >= $1", 0,
                         nullptr));
  RequireStatus(prepared.get(), PGRES_COMMAND_OK);
  const double before = RemainingEpsilon(c.get());

  // Text result. score >= 0 holds for every row: the truth is kPeople.
  const char* zero[] = {"0"};
  Res text(PQexecPrepared(c.get(), "total", 1, zero, nullptr, nullptr, 0));
  RequireStatus(text.get(), PGRES_TUPLES_OK);
  REQUIRE(PQntuples(text.get()) == 1);
  // ε = 1 on one count with sensitivity 1: discrete Laplace of scale 1;
  // P(|noise| > 20) < 2·e^{-20} < 1e-8.
  CHECK(std::abs(std::stol(PQgetvalue(text.get(), 0, 0)) - kPeople) <= 20);
  CHECK(RemainingEpsilon(c.get()) == Approx(before - 1));

  // Binary result, another binding: a new charge, an int8 in network order.
  // score >= 50 holds for ids with id % 100 >= 50: exactly half.
  const char* fifty[] = {"50"};
  Res binary(PQexecPrepared(c.get(), "total", 1, fifty, nullptr, nullptr, 1));
  RequireStatus(binary.get(), PGRES_TUPLES_OK);
  REQUIRE(PQfformat(binary.get(), 0) == 1);
  REQUIRE(PQgetlength(binary.get(), 0, 0) == 8);
  CHECK(std::abs(BigEndianInt64(PQgetvalue(binary.get(), 0, 0)) - kPeople / 2) <= 20);
  CHECK(RemainingEpsilon(c.get()) == Approx(before - 2));

  // The same binding again within the cache TTL: the same noisy answer, no charge.
  Res again(PQexecPrepared(c.get(), "total", 1, zero, nullptr, nullptr, 0));
  RequireStatus(again.get(), PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(again.get(), 0, 0)) == PQgetvalue(text.get(), 0, 0));
  CHECK(RemainingEpsilon(c.get()) == Approx(before - 2));
}

TEST_CASE("a binary float8 average of a private aggregate is near the truth") {
  ServeFixture f;
  Conn c = Connect(f);
  REQUIRE(PQresultStatus(Res(PQexec(c.get(), "SET dp.epsilon = 4")).get()) == PGRES_COMMAND_OK);
  Res r(PQexecParams(c.get(), "SELECT avg(score) AS mean FROM people", 0, nullptr, nullptr, nullptr,
                     nullptr, 1));
  RequireStatus(r.get(), PGRES_TUPLES_OK);
  REQUIRE(PQftype(r.get(), 0) == 701);
  REQUIRE(PQgetlength(r.get(), 0, 0) == 8);
  // True mean is 49.623457; with 10,000 units, bounds [0, 100] and ε = 4 the
  // noisy mean's error is well under 1 except with probability far below 1e-6
  // (sum noise scale ≈ 50/2, count noise scale 1/2, over n = 10,000).
  CHECK(std::abs(BigEndianFloat8(PQgetvalue(r.get(), 0, 0)) - 49.623457) < 1.0);
}

TEST_CASE("public and catalog statements pass through with bound parameters and formats") {
  ServeFixture f;
  Conn c = Connect(f);
  const char* code[] = {"b"};
  Res text(PQexecParams(c.get(), "SELECT label FROM lookup WHERE code = $1", 1, nullptr, code,
                        nullptr, nullptr, 0));
  RequireStatus(text.get(), PGRES_TUPLES_OK);
  REQUIRE(PQntuples(text.get()) == 1);
  CHECK(std::string(PQgetvalue(text.get(), 0, 0)) == "Group B");

  // A binary int4 parameter and a binary result (exact: asked of the upstream).
  const uint32_t n = htonl(2);
  const char* values[] = {reinterpret_cast<const char*>(&n)};
  const int lengths[] = {4};
  const int formats[] = {1};
  const Oid types[] = {23};
  Res binary(PQexecParams(c.get(), "SELECT $1::int4 + 40 AS answer", 1, types, values, lengths,
                          formats, 1));
  RequireStatus(binary.get(), PGRES_TUPLES_OK);
  REQUIRE(PQgetlength(binary.get(), 0, 0) == 4);
  uint32_t answer = 0;
  std::memcpy(&answer, PQgetvalue(binary.get(), 0, 0), 4);
  CHECK(ntohl(answer) == 42);

  Res catalog(PQexecParams(c.get(),
                           "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = $1", 1,
                           nullptr, code, nullptr, nullptr, 0));
  RequireStatus(catalog.get(), PGRES_TUPLES_OK);
  CHECK(PQntuples(catalog.get()) == 0);

  Res described_prepared(PQprepare(c.get(), "lk", "SELECT code, label FROM lookup", 0, nullptr));
  RequireStatus(described_prepared.get(), PGRES_COMMAND_OK);
  Res described(PQdescribePrepared(c.get(), "lk"));
  RequireStatus(described.get(), PGRES_COMMAND_OK);
  CHECK(PQnfields(described.get()) == 2);
  CHECK(PQnparams(described.get()) == 0);
}

TEST_CASE(
    "refusals and protocol errors at Parse surface with the explanation, and the session goes on") {
  ServeFixture f;
  Conn c = Connect(f);
  Res raw(PQprepare(c.get(), "rows", "SELECT * FROM people", 0, nullptr));
  RequireStatus(raw.get(), PGRES_FATAL_ERROR);
  CHECK(std::string(PQresultErrorMessage(raw.get())).find("people") != std::string::npos);

  Res multi(PQprepare(c.get(), "two", "SELECT 1; SELECT 2", 0, nullptr));
  RequireStatus(multi.get(), PGRES_FATAL_ERROR);
  CHECK(Sqlstate(multi.get()) == "42601");
  // Severity and hint travel in their own fields.
  CHECK(std::string(PQresultErrorField(multi.get(), PG_DIAG_SEVERITY_NONLOCALIZED)) == "ERROR");
  const char* hint = PQresultErrorField(multi.get(), PG_DIAG_MESSAGE_HINT);
  REQUIRE(hint != nullptr);
  CHECK(std::string(hint) == "send one statement per Parse message");

  Res missing(PQexecPrepared(c.get(), "nope", 0, nullptr, nullptr, nullptr, 0));
  RequireStatus(missing.get(), PGRES_FATAL_ERROR);
  CHECK(Sqlstate(missing.get()) == "26000");

  Res twice1(PQprepare(c.get(), "dup", "SELECT 1", 0, nullptr));
  RequireStatus(twice1.get(), PGRES_COMMAND_OK);
  Res twice2(PQprepare(c.get(), "dup", "SELECT 2", 0, nullptr));
  RequireStatus(twice2.get(), PGRES_FATAL_ERROR);
  CHECK(Sqlstate(twice2.get()) == "42P05");

  // A private aggregate bound with the wrong number of parameters is an
  // error before any charge.
  REQUIRE(PQresultStatus(Res(PQexec(c.get(), "SET dp.epsilon = 1")).get()) == PGRES_COMMAND_OK);
  const double before = RemainingEpsilon(c.get());
  Res p(
      PQprepare(c.get(), "one_param", "SELECT count(*) FROM people WHERE score > $1", 0, nullptr));
  RequireStatus(p.get(), PGRES_COMMAND_OK);
  const char* two[] = {"1", "2"};
  Res wrong(PQexecPrepared(c.get(), "one_param", 2, two, nullptr, nullptr, 0));
  RequireStatus(wrong.get(), PGRES_FATAL_ERROR);
  CHECK(Sqlstate(wrong.get()) == "08P01");
  CHECK(RemainingEpsilon(c.get()) == Approx(before));

  Res ok(PQexecParams(c.get(), "SELECT label FROM lookup WHERE code = 'a'", 0, nullptr, nullptr,
                      nullptr, nullptr, 0));
  RequireStatus(ok.get(), PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(ok.get(), 0, 0)) == "Group A");
}

TEST_CASE("dpgate commands work through the extended protocol") {
  ServeFixture f;
  Conn c = Connect(f);
  Res set(PQexecParams(c.get(), "SET dp.epsilon = 0.25", 0, nullptr, nullptr, nullptr, nullptr, 0));
  RequireStatus(set.get(), PGRES_COMMAND_OK);
  Res show(PQexecParams(c.get(), "SHOW dp.epsilon", 0, nullptr, nullptr, nullptr, nullptr, 0));
  RequireStatus(show.get(), PGRES_TUPLES_OK);
  CHECK(std::string(PQfname(show.get(), 0)) == "dp.epsilon");
  CHECK(std::stod(PQgetvalue(show.get(), 0, 0)) == Approx(0.25));
  Res explain(PQexecParams(c.get(), "EXPLAIN (DP) SELECT count(*) FROM people", 0, nullptr, nullptr,
                           nullptr, nullptr, 0));
  RequireStatus(explain.get(), PGRES_TUPLES_OK);
  CHECK(PQntuples(explain.get()) > 1);
}

namespace {

using dpgate::testing::RawClient;

std::string Types(const std::vector<std::pair<char, std::string>>& messages) {
  std::string t;
  for (const auto& m : messages) t += m.first;
  return t;
}

}  // namespace

TEST_CASE("Execute with a row limit suspends the portal and a private portal is charged once") {
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "trust");
  RawClient raw(f.port);
  raw.Startup("alice", f.db);
  using R = RawClient;
  // Two public rows, fetched one at a time.
  raw.Send(
      R::Message('P', R::Str("") + R::Str("SELECT code FROM lookup ORDER BY code") + R::Int16(0)) +
      R::Message('B', R::Str("") + R::Str("") + R::Int16(0) + R::Int16(0) + R::Int16(0)) +
      R::Message('E', R::Str("") + R::Int32(1)) + R::Message('E', R::Str("") + R::Int32(1)) +
      R::Message('E', R::Str("") + R::Int32(1)) + R::Message('S', ""));
  // ParseComplete, BindComplete, DataRow, PortalSuspended, DataRow, then the
  // portal is exhausted: CommandComplete; a third Execute finds no more rows.
  CHECK(Types(raw.UntilReady()) == "12DsDCCZ");

  // A private GROUP BY in slices of one row: one charge for the portal.
  Conn c = Connect(f);
  REQUIRE(PQresultStatus(Res(PQexec(c.get(), "SET dp.epsilon = 1")).get()) == PGRES_COMMAND_OK);
  const double before = RemainingEpsilon(c.get());
  raw.Send(R::Message('Q', R::Str("SET dp.epsilon = 1")));
  raw.UntilReady();
  raw.Send(
      R::Message('P', R::Str("g") +
                          R::Str("SELECT grp, count(*) FROM people GROUP BY grp ORDER BY grp") +
                          R::Int16(0)) +
      R::Message('B', R::Str("") + R::Str("g") + R::Int16(0) + R::Int16(0) + R::Int16(0)) +
      R::Message('E', R::Str("") + R::Int32(1)) + R::Message('E', R::Str("") + R::Int32(1)) +
      R::Message('E', R::Str("") + R::Int32(1)) + R::Message('S', ""));
  const auto messages = raw.UntilReady();
  // Groups a and b pass selection (6,000 and 3,999 units); "rare" (one unit)
  // passes with probability ≤ δ·k: tiny at the default δ = 1e-7.
  const std::string types = Types(messages);
  CHECK(types.substr(0, 6) == "12DsDC");
  // The receipt comes once, after CommandComplete.
  CHECK(std::count(types.begin(), types.end(), 'N') == 1);
  CHECK(RemainingEpsilon(c.get()) == Approx(before - 1));
}

TEST_CASE("after an error every message up to Sync is discarded, then the session goes on") {
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "trust");
  RawClient raw(f.port);
  raw.Startup("alice", f.db);
  using R = RawClient;
  raw.Send(R::Message('P', R::Str("") + R::Str("SELECT * FROM people") + R::Int16(0)) +
           R::Message('B', R::Str("") + R::Str("") + R::Int16(0) + R::Int16(0) + R::Int16(0)) +
           R::Message('E', R::Str("") + R::Int32(0)) + R::Message('S', ""));
  const auto refused = raw.UntilReady();
  CHECK(Types(refused) == "EZ");
  CHECK(refused.back().second == "I");
  raw.Send(R::Message(
               'P', R::Str("") + R::Str("SELECT label FROM lookup WHERE code = $1") + R::Int16(0)) +
           R::Message('B', R::Str("") + R::Str("") + R::Int16(0) + R::Int16(1) + R::Int32(1) + "a" +
                               R::Int16(0)) +
           R::Message('D', "P" + R::Str("")) + R::Message('E', R::Str("") + R::Int32(0)) +
           R::Message('C', "S" + R::Str("")) + R::Message('S', ""));
  const auto ok = raw.UntilReady();
  CHECK(Types(ok) == "12TDC3Z");
  CHECK(ok[3].second.find("Group A") != std::string::npos);
}

// Found by chaos_test.cpp: a simple Query that arrived after an error in an
// unsynced batch used to run (and a private aggregate in it was charged),
// where PostgreSQL discards it like every other message up to Sync.
TEST_CASE(
    "a Query after an error in an unsynced batch is discarded up to Sync and charges nothing") {
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "trust");
  Conn c = Connect(f);
  const double before = RemainingEpsilon(c.get());
  RawClient raw(f.port);
  raw.Startup("alice", f.db);
  using R = RawClient;
  raw.Send(R::Message('P', R::Str("") + R::Str("SELECT 1/0") + R::Int16(0)) +
           R::Message('B', R::Str("") + R::Str("") + R::Int16(0) + R::Int16(0) + R::Int16(0)) +
           R::Message('E', R::Str("") + R::Int32(0)) +
           R::Message('Q', R::Str("SELECT count(*) FROM people")) + R::Message('S', ""));
  // PostgreSQL answers exactly this: the Query gets nothing, not even a
  // ReadyForQuery.
  const auto answer = raw.UntilReady();
  CHECK(Types(answer) == "12EZ");
  CHECK(answer.back().second == "I");
  CHECK(RemainingEpsilon(c.get()) == Approx(before));
  // The session goes on: the next Query runs.
  raw.Send(R::Message('Q', R::Str("SELECT label FROM lookup WHERE code = 'a'")));
  const auto next = raw.UntilReady();
  REQUIRE(Types(next) == "TDCZ");
  CHECK(next[1].second.find("Group A") != std::string::npos);
}

TEST_CASE("a malformed Bind ends the connection with a protocol error, and the server stays up") {
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "trust");
  {
    RawClient raw(f.port);
    raw.Startup("alice", f.db);
    using R = RawClient;
    // Declares 3 parameter formats and then 2 parameters: a violation.
    raw.Send(R::Message('P', R::Str("") + R::Str("SELECT 1") + R::Int16(0)) +
             R::Message('B', R::Str("") + R::Str("") + R::Int16(3) + R::Int16(0) + R::Int16(0) +
                                 R::Int16(0) + R::Int16(2)) +
             R::Message('S', ""));
    // ParseComplete, then a FATAL ErrorResponse (08P01), then the server
    // closes the connection.
    const std::string answer = raw.Drain();
    REQUIRE(answer.size() > 5);
    CHECK(answer[0] == '1');
    CHECK(answer.find("FATAL") != std::string::npos);
    CHECK(answer.find("08P01") != std::string::npos);
  }
  Conn c = Connect(f);
  Res ok(PQexec(c.get(), "SELECT 1"));
  RequireStatus(ok.get(), PGRES_TUPLES_OK);
}

TEST_CASE("SQL DEALLOCATE frees protocol-level statements and DISCARD ALL keeps dpgate's pins") {
  ServeFixture f;
  Conn c = Connect(f);
  RequireStatus(Res(PQprepare(c.get(), "s1", "SELECT 1", 0, nullptr)).get(), PGRES_COMMAND_OK);
  // psqlODBC frees its statements with SQL DEALLOCATE and reuses the names.
  RequireStatus(Res(PQexec(c.get(), "DEALLOCATE \"s1\"")).get(), PGRES_COMMAND_OK);
  RequireStatus(Res(PQprepare(c.get(), "s1", "SELECT 2", 0, nullptr)).get(), PGRES_COMMAND_OK);
  Res missing(PQexec(c.get(), "DEALLOCATE nothing_here"));
  RequireStatus(missing.get(), PGRES_FATAL_ERROR);
  CHECK(Sqlstate(missing.get()) == "26000");
  RequireStatus(Res(PQexec(c.get(), "DEALLOCATE ALL")).get(), PGRES_COMMAND_OK);
  RequireStatus(Res(PQprepare(c.get(), "s1", "SELECT 3", 0, nullptr)).get(), PGRES_COMMAND_OK);

  RequireStatus(Res(PQexec(c.get(), "DISCARD ALL")).get(), PGRES_COMMAND_OK);
  // The statements are gone, and the upstream session is dpgate's pinned one.
  Res gone(PQexecPrepared(c.get(), "s1", 0, nullptr, nullptr, nullptr, 0));
  RequireStatus(gone.get(), PGRES_FATAL_ERROR);
  CHECK(Sqlstate(gone.get()) == "26000");
  Res path(PQexec(c.get(), "SELECT pg_catalog.current_setting('search_path')"));
  RequireStatus(path.get(), PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(path.get(), 0, 0)) == "pg_catalog");
  Res ro(PQexec(c.get(), "SELECT pg_catalog.current_setting('default_transaction_read_only')"));
  RequireStatus(ro.get(), PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(ro.get(), 0, 0)) == "on");
}

TEST_CASE("a private aggregate the upstream would reject before running costs nothing") {
  ServeFixture f;
  Conn c = Connect(f);
  RequireStatus(Res(PQexec(c.get(), "SET dp.epsilon = 1")).get(), PGRES_COMMAND_OK);
  const double before = RemainingEpsilon(c.get());
  // A parameter reference with no parameter, through the simple protocol.
  Res unbound(PQexec(c.get(), "SELECT count(*) FROM people WHERE score > $1"));
  RequireStatus(unbound.get(), PGRES_FATAL_ERROR);
  CHECK(Sqlstate(unbound.get()) == "42P02");
  // A value that does not fit the parameter's type.
  const char* bad[] = {"not a number"};
  Res wrong(PQexecParams(c.get(), "SELECT count(*) FROM people WHERE score > $1", 1, nullptr, bad,
                         nullptr, nullptr, 0));
  RequireStatus(wrong.get(), PGRES_FATAL_ERROR);
  CHECK(Sqlstate(wrong.get()) == "22P02");
  CHECK(RemainingEpsilon(c.get()) == Approx(before));
  // A good value is charged as usual.
  const char* good[] = {"10"};
  RequireStatus(Res(PQexecParams(c.get(), "SELECT count(*) FROM people WHERE score > $1", 1,
                                 nullptr, good, nullptr, nullptr, 0))
                    .get(),
                PGRES_TUPLES_OK);
  CHECK(RemainingEpsilon(c.get()) == Approx(before - 1));
}
