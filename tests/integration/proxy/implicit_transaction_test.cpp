// A simple Query of several statements runs as one implicit transaction
// block, as in PostgreSQL (§55.2.2; docs/PROXY.md §1 item 10): an error rolls
// back the statements before it, a cursor lives to the end of the Query,
// BEGIN turns the block into the client's, COMMIT and ROLLBACK end it (with
// PostgreSQL's warning), and SAVEPOINT or AND CHAIN need a block of the
// client's. Each script below runs through dpgate and directly on the same
// PostgreSQL as the same read-only role, and the two transcripts (every
// result's status, SQLSTATE, tag and values, every notice, the transaction
// status after each Query) must be equal.
#include <libpq-fe.h>

#include <catch2/catch.hpp>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "pq_handles.h"
#include "serve_fixture.h"

using dpgate::testing::Conn;
using dpgate::testing::Connect;
using dpgate::testing::kAlicePassword;
using dpgate::testing::Res;
using dpgate::testing::ServeFixture;
using dpgate::testing::Sqlstate;

namespace {

void CollectNotice(void* arg, const PGresult* r) {
  const char* severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char* message = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  static_cast<std::string*>(arg)->append(std::string("notice ") +
                                         (severity != nullptr ? severity : "") + " " +
                                         (message != nullptr ? message : "") + "\n");
}

// What a client sees of one Query: each result and notice in order, then the
// transaction status of its ReadyForQuery.
std::string Transcript(PGconn* c, const std::string& query) {
  std::string out = "query " + query + "\n";
  PQsetNoticeReceiver(c, CollectNotice, &out);
  REQUIRE(PQsendQuery(c, query.c_str()) == 1);
  while (PGresult* next = PQgetResult(c)) {
    Res r(next);
    out += std::string(PQresStatus(PQresultStatus(r.get()))) + " " + Sqlstate(r.get()) + " " +
           PQcmdStatus(r.get());
    for (int row = 0; row < PQntuples(r.get()); ++row) {
      for (int i = 0; i < PQnfields(r.get()); ++i)
        out += std::string(" ") + PQgetvalue(r.get(), row, i);
    }
    out += "\n";
  }
  out += "status " + std::to_string(static_cast<int>(PQtransactionStatus(c))) + "\n";
  PQsetNoticeReceiver(c, nullptr, nullptr);
  return out;
}

// Public statements only: the same text means the same thing on both sides.
const std::vector<std::string> kScript = {
    // An error rolls back the SET before it.
    "SET statement_timeout = '7s'; SELECT 1/0",
    "SHOW statement_timeout",
    // Without the error the SET stays.
    "SET statement_timeout = '8s'; SELECT label FROM lookup WHERE code = 'a'",
    "SHOW statement_timeout",
    // A cursor without HOLD lives to the end of the Query, not after it.
    "DECLARE c CURSOR FOR SELECT code FROM lookup ORDER BY code; FETCH 1 FROM c; FETCH 1 FROM c",
    "FETCH 1 FROM c",
    // SAVEPOINT, RELEASE, ROLLBACK TO and AND CHAIN need a block of the client's.
    "SELECT 1 AS a; SAVEPOINT s",
    "SELECT 1; RELEASE s",
    "SELECT 1; ROLLBACK TO s",
    "SELECT 6; COMMIT AND CHAIN",
    "SELECT 6; ROLLBACK AND CHAIN",
    // BEGIN makes the block the client's: the Query ends inside it.
    "SELECT 1 AS a; BEGIN; SELECT 2 AS b",
    "SELECT 3; SAVEPOINT x; SELECT 1/0; ROLLBACK TO x",
    "ROLLBACK TO x; SELECT 4",
    "COMMIT",
    // An isolation level after a query of the block fails, as in PostgreSQL.
    "SELECT 0; BEGIN ISOLATION LEVEL REPEATABLE READ",
    "BEGIN ISOLATION LEVEL REPEATABLE READ; SHOW transaction_isolation",
    "ROLLBACK",
    // COMMIT and ROLLBACK end the implicit block, with a warning, and the
    // statements after them get a new one.
    "COMMIT; SELECT 3 AS c; SHOW transaction_isolation",
    "COMMIT; ROLLBACK; SELECT 4",
    "SET statement_timeout = '9s'; ROLLBACK; SELECT 1/0",
    "SHOW statement_timeout",
    "BEGIN; SELECT 1; COMMIT; DECLARE d CURSOR FOR SELECT 1; FETCH d",
    "FETCH d",
    // A COMMIT in the middle of a Query ends the cursors of its block there.
    "BEGIN; DECLARE e CURSOR FOR SELECT 1; COMMIT; FETCH e",
    // A WITH HOLD cursor outlives a block that commits, not one that rolls
    // back (explicitly, or implicitly after an error).
    "BEGIN; DECLARE h1 CURSOR WITH HOLD FOR SELECT 1; ROLLBACK; FETCH h1",
    "FETCH h1",
    "DECLARE h2 CURSOR WITH HOLD FOR SELECT 2; SELECT 1/0",
    "FETCH h2",
    "DECLARE h3 CURSOR WITH HOLD FOR SELECT 3; SELECT 1",
    "FETCH h3; CLOSE h3",
    // Errors inside the client's own block leave it failed.
    "BEGIN; SELECT 1/0; SELECT 2",
    "SELECT 3",
    "ROLLBACK; SELECT 5",
};

}  // namespace

TEST_CASE("a multi-statement Query is one implicit transaction block, as in PostgreSQL") {
  ServeFixture f;
  Conn via = Connect(f.Dsn("alice", kAlicePassword));
  Conn direct = Connect("host=127.0.0.1 port=" + std::to_string(f.pg.port) + " dbname=" + f.db +
                        " user=" + f.reader + " password=reader-pw sslmode=disable");
  for (const auto& query : kScript) {
    const std::string expected = Transcript(direct.get(), query);
    const std::string got = Transcript(via.get(), query);
    CHECK(got == expected);
  }
  // The script really exercised the block (a check on the check): the
  // rolled-back SET is gone and the committed one stayed.
  CHECK(Transcript(via.get(), "SHOW statement_timeout").find(" 8s\n") != std::string::npos);
}

// dpgate's own cursors (over a private aggregate) follow the same rules.
TEST_CASE("a private aggregate's cursor lives to the end of its multi-statement Query") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  tx.exec("SET dp.epsilon = 1");
  const double before = dpgate::testing::RemainingEpsilon(tx);
  Conn raw = Connect(f.Dsn("alice", kAlicePassword));
  const std::string t = Transcript(
      raw.get(), "DECLARE p CURSOR FOR SELECT count(*) FROM people; FETCH 1 FROM p; CLOSE p");
  INFO(t);
  CHECK(t.find("PGRES_COMMAND_OK  DECLARE CURSOR") != std::string::npos);
  CHECK(t.find("PGRES_TUPLES_OK  FETCH 1") != std::string::npos);
  CHECK(t.find("PGRES_COMMAND_OK  CLOSE CURSOR") != std::string::npos);
  CHECK(t.find("status 0") != std::string::npos);  // idle: the block was ended
  // Charged once, at DECLARE, with the session's default ε (0.5).
  CHECK(dpgate::testing::RemainingEpsilon(tx) == Approx(before - 0.5));
  const std::string after = Transcript(raw.get(), "FETCH 1 FROM p");
  CHECK(after.find("34000") != std::string::npos);  // invalid_cursor_name

  // WITH HOLD: kept after a block that commits, removed after one that
  // rolls back, as PostgreSQL removes an aborted transaction's cursors.
  const std::string kept =
      Transcript(raw.get(), "DECLARE k CURSOR WITH HOLD FOR SELECT count(*) FROM people; SELECT 1");
  INFO(kept);
  CHECK(Transcript(raw.get(), "FETCH 1 FROM k").find("PGRES_TUPLES_OK  FETCH 1") !=
        std::string::npos);
  const std::string dropped = Transcript(
      raw.get(), "DECLARE g CURSOR WITH HOLD FOR SELECT count(*) FROM people; SELECT 1/0");
  INFO(dropped);
  CHECK(dropped.find("22012") != std::string::npos);
  CHECK(Transcript(raw.get(), "FETCH 1 FROM g").find("34000") != std::string::npos);
  CHECK(Transcript(raw.get(),
                   "BEGIN; DECLARE r CURSOR WITH HOLD FOR SELECT count(*) FROM "
                   "people; ROLLBACK; FETCH 1 FROM r")
            .find("34000") != std::string::npos);
}

// In transaction pooling dpgate replays a session's SETs on the next pooled
// connection. A SET that its block rolled back must not be replayed, one that
// committed must (docs/CONFIG.md, pooling).
TEST_CASE("in transaction pooling, only committed SETs are replayed") {
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "scram", ", pool_size: 1, pool_mode: transaction");
  Conn c = Connect(f.Dsn("alice", kAlicePassword));
  const auto timeout = [&c] {
    Res r(PQexec(c.get(), "SHOW statement_timeout"));
    REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
    return std::string(PQgetvalue(r.get(), 0, 0));
  };
  // Runs a Query and gives the transaction status its ReadyForQuery reported.
  const auto run = [&c](const char* sql) {
    REQUIRE(PQsendQuery(c.get(), sql) == 1);
    while (PGresult* next = PQgetResult(c.get())) PQclear(next);
    return PQtransactionStatus(c.get());
  };
  CHECK(run("SET statement_timeout = '7s'; SELECT 1/0") == PQTRANS_IDLE);  // rolled back
  CHECK(timeout() == "0");
  CHECK(run("SET statement_timeout = '8s'; SELECT 1") == PQTRANS_IDLE);  // committed
  CHECK(timeout() == "8s");
  CHECK(run("BEGIN; SET statement_timeout = '9s'; ROLLBACK") == PQTRANS_IDLE);
  CHECK(timeout() == "8s");
  CHECK(run("BEGIN; SAVEPOINT s; SET statement_timeout = '10s'; ROLLBACK TO s; COMMIT") ==
        PQTRANS_IDLE);
  CHECK(timeout() == "8s");
  CHECK(run("BEGIN; SAVEPOINT s; SET statement_timeout = '11s'; RELEASE s; COMMIT") ==
        PQTRANS_IDLE);
  CHECK(timeout() == "11s");
  // A block that failed: its COMMIT is a ROLLBACK.
  CHECK(run("BEGIN; SET statement_timeout = '12s'") == PQTRANS_INTRANS);
  CHECK(run("SELECT 1/0") == PQTRANS_INERROR);
  CHECK(run("COMMIT") == PQTRANS_IDLE);
  CHECK(timeout() == "11s");
  // The same across Queries, committed.
  CHECK(run("BEGIN") == PQTRANS_INTRANS);
  CHECK(run("SET statement_timeout = '13s'") == PQTRANS_INTRANS);
  CHECK(run("COMMIT") == PQTRANS_IDLE);
  CHECK(timeout() == "13s");
}
