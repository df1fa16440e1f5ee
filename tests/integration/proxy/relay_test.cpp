// Public and catalog statements in the simple query flow are relayed as the
// upstream's own bytes (UpstreamConnection::Relay, docs/PROXY.md §1 item 4): their
// answers must equal what the upstream gives a direct client, errors and
// notices must arrive as on the libpq path, and the transaction status dpgate
// reports (and pools by) must follow the relayed ReadyForQuery.
#include <libpq-fe.h>

#include <catch2/catch.hpp>
#include <memory>
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
  const char* m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  static_cast<std::vector<std::string>*>(arg)->push_back(m != nullptr ? m : "");
}

// Every column's name, type, modifier and table, every value and NULL flag,
// and the command tag of the two answers are equal.
void CheckSameAnswer(const PGresult* via_dpgate, const PGresult* direct) {
  REQUIRE(PQresultStatus(via_dpgate) == PGRES_TUPLES_OK);
  REQUIRE(PQresultStatus(direct) == PGRES_TUPLES_OK);
  REQUIRE(PQnfields(via_dpgate) == PQnfields(direct));
  for (int i = 0; i < PQnfields(direct); ++i) {
    CHECK(std::string(PQfname(via_dpgate, i)) == PQfname(direct, i));
    CHECK(PQftype(via_dpgate, i) == PQftype(direct, i));
    CHECK(PQfmod(via_dpgate, i) == PQfmod(direct, i));
    CHECK(PQftable(via_dpgate, i) == PQftable(direct, i));
  }
  REQUIRE(PQntuples(via_dpgate) == PQntuples(direct));
  int differing = 0;
  for (int row = 0; row < PQntuples(direct); ++row) {
    for (int i = 0; i < PQnfields(direct); ++i) {
      if (PQgetisnull(via_dpgate, row, i) != PQgetisnull(direct, row, i) ||
          std::string(PQgetvalue(via_dpgate, row, i), PQgetlength(via_dpgate, row, i)) !=
              std::string(PQgetvalue(direct, row, i), PQgetlength(direct, row, i))) {
        ++differing;
      }
    }
  }
  CHECK(differing == 0);
  CHECK(std::string(PQcmdStatus(const_cast<PGresult*>(via_dpgate))) ==
        PQcmdStatus(const_cast<PGresult*>(direct)));
}

}  // namespace

TEST_CASE("relayed public answers equal the upstream's own, large rows and NULLs included") {
  ServeFixture f;
  Conn via = Connect(f.Dsn("alice", kAlicePassword));
  // The upstream role dpgate uses, straight to PostgreSQL.
  Conn direct = Connect("host=127.0.0.1 port=" + std::to_string(f.pg.port) + " dbname=" + f.db +
                        " user=" + f.reader + " password=reader-pw sslmode=disable");
  const std::vector<std::string> statements = {
      "SELECT code, label FROM lookup ORDER BY code",
      // Many rows (several MB, far beyond one read), NULLs, mixed types.
      "SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE pg_catalog.repeat('x', g % 50) END AS s, "
      "g::pg_catalog.float8 / 7 AS f FROM pg_catalog.generate_series(1, 100000) g",
      // One DataRow larger than the relay's buffer.
      "SELECT pg_catalog.repeat('y', 3000000) AS big, 'z'::pg_catalog.varchar(3) AS v",
      // A RowDescription and no rows.
      "SELECT code FROM lookup WHERE code = 'none'",
  };
  for (const auto& sql : statements) {
    INFO(sql);
    Res a(PQexec(via.get(), sql.c_str()));
    Res b(PQexec(direct.get(), sql.c_str()));
    CheckSameAnswer(a.get(), b.get());
  }
  // The session goes on normally after them.
  Res r(PQexec(via.get(), "SELECT count(*) FROM lookup"));
  REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "2");
}

TEST_CASE("relayed errors, notices and transaction status reach the client as PostgreSQL's") {
  ServeFixture f;
  Conn c = Connect(f.Dsn("alice", kAlicePassword));
  std::vector<std::string> notices;
  PQsetNoticeReceiver(c.get(), CollectNotice, &notices);

  // A notice the upstream raises while answering.
  Res r(PQexec(c.get(), "SELECT pg_catalog.to_tsquery('english', 'the') AS q"));
  CHECK(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  REQUIRE(notices.size() == 1);
  CHECK(notices[0].find("stop words") != std::string::npos);

  // Transaction status follows each relayed ReadyForQuery.
  r.reset(PQexec(c.get(), "BEGIN"));
  CHECK(PQtransactionStatus(c.get()) == PQTRANS_INTRANS);
  r.reset(PQexec(c.get(), "SELECT label FROM lookup WHERE code = 'a'"));
  CHECK(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  CHECK(PQtransactionStatus(c.get()) == PQTRANS_INTRANS);
  r.reset(PQexec(c.get(), "SELECT 1 / (SELECT count(*) - 2 FROM lookup)"));
  CHECK(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
  CHECK(Sqlstate(r.get()) == "22012");  // division_by_zero
  CHECK(PQtransactionStatus(c.get()) == PQTRANS_INERROR);
  r.reset(PQexec(c.get(), "SELECT code FROM lookup"));
  CHECK(Sqlstate(r.get()) == "25P02");  // in_failed_sql_transaction
  CHECK(PQtransactionStatus(c.get()) == PQTRANS_INERROR);
  r.reset(PQexec(c.get(), "ROLLBACK"));
  CHECK(PQtransactionStatus(c.get()) == PQTRANS_IDLE);

  // Several statements in one Query: the first answers, the second fails
  // with nothing of its own relayed, the third does not run.
  REQUIRE(PQsendQuery(c.get(),
                      "SELECT 7 AS a; SELECT g / 0 FROM pg_catalog.generate_series(1, 3) g; "
                      "SELECT 9 AS c") == 1);
  std::vector<Res> results;
  while (PGresult* next = PQgetResult(c.get())) results.emplace_back(next);
  REQUIRE(results.size() == 2);
  CHECK(PQresultStatus(results[0].get()) == PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(results[0].get(), 0, 0)) == "7");
  CHECK(PQresultStatus(results[1].get()) == PGRES_FATAL_ERROR);
  CHECK(Sqlstate(results[1].get()) == "22012");
  CHECK(PQtransactionStatus(c.get()) == PQTRANS_IDLE);
  r.reset(PQexec(c.get(), "SELECT label FROM lookup WHERE code = 'b'"));
  REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "Group B");
}

TEST_CASE("in transaction pooling, a relayed statement inside a transaction keeps the connection") {
  ServeFixture f("", dpgate::testing::kSchemaSql, "public.people, public.lookup",
                 dpgate::testing::kDatasetsYaml, "scram", ", pool_size: 1, pool_mode: transaction");
  pqxx::connection a(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction ta(a);
  ta.exec("BEGIN");
  ta.exec("SET LOCAL statement_timeout = '77s'");  // lives as long as the transaction
  // Relayed: had dpgate read this answer's ReadyForQuery as idle, it would
  // give the connection back (reset: ROLLBACK, DISCARD ALL) right after it.
  CHECK(ta.exec1("SELECT label FROM lookup WHERE code = 'a'")[0].as<std::string>() == "Group A");
  CHECK(ta.exec1("SHOW statement_timeout")[0].as<std::string>() == "77s");
  ta.exec("COMMIT");
  CHECK(ta.exec1("SHOW statement_timeout")[0].as<std::string>() == "0");
}

// DISCARD ALL hands the upstream connection back to the pool. Inside one
// multi-statement Query that once left the statements after it without a
// connection, and the process crashed on the next one.
TEST_CASE("DISCARD ALL inside a multi-statement query is refused as PostgreSQL refuses it") {
  ServeFixture f;
  Conn c = Connect(f.Dsn("alice", kAlicePassword));
  REQUIRE(PQsendQuery(c.get(), "DISCARD ALL; SELECT label FROM lookup WHERE code = 'a'") == 1);
  std::vector<Res> results;
  while (PGresult* next = PQgetResult(c.get())) results.emplace_back(next);
  REQUIRE(results.size() == 1);
  CHECK(PQresultStatus(results[0].get()) == PGRES_FATAL_ERROR);
  CHECK(Sqlstate(results[0].get()) == "25001");  // active_sql_transaction

  REQUIRE(PQsendQuery(c.get(), "SELECT label FROM lookup WHERE code = 'b'; DISCARD ALL") == 1);
  results.clear();
  while (PGresult* next = PQgetResult(c.get())) results.emplace_back(next);
  REQUIRE(results.size() == 2);
  CHECK(PQresultStatus(results[0].get()) == PGRES_TUPLES_OK);
  CHECK(Sqlstate(results[1].get()) == "25001");

  // Alone it works, and the session (and the server) go on.
  Res r(PQexec(c.get(), "DISCARD ALL"));
  CHECK(PQresultStatus(r.get()) == PGRES_COMMAND_OK);
  r.reset(PQexec(c.get(), "SELECT label FROM lookup WHERE code = 'a'"));
  REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "Group A");
  CHECK(f.dpgate->running());
  Conn other = Connect(f.Dsn("bob", dpgate::testing::kBobPassword));
  r.reset(PQexec(other.get(), "SELECT count(*) FROM lookup"));
  CHECK(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
}
