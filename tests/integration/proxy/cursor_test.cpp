// SQL-level cursors through dpgate (DESIGN.md §2 "Wrapped queries";
// docs/PROXY.md §4): a cursor over a private aggregate is charged once at
// DECLARE and FETCH hands out the released rows; cursors over public tables
// are the upstream's; names dpgate did not see declared are unknown.
#include <catch2/catch.hpp>
#include <cmath>
#include <pqxx/pqxx>
#include <string>

#include "serve_fixture.h"

using dpgate::testing::kAlicePassword;
using dpgate::testing::RemainingEpsilon;
using dpgate::testing::ServeFixture;

namespace {

std::string SqlState(const pqxx::sql_error& e) {
  return e.sqlstate();
}

}  // namespace

TEST_CASE("a cursor over a private aggregate is charged once and fetched in slices") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  tx.exec("SET dp.epsilon = 1");
  tx.exec("SET dp.delta = 1e-9");
  const double before = RemainingEpsilon(tx);
  tx.exec("BEGIN");
  tx.exec("DECLARE groups CURSOR FOR SELECT grp, count(*) AS n FROM people GROUP BY grp");
  CHECK(RemainingEpsilon(tx) == Approx(before - 1));
  // The one-person group is suppressed (δ = 1e-9), so a and b remain.
  const auto first = tx.exec("FETCH 1 FROM groups");
  REQUIRE(first.size() == 1);
  CHECK(std::string(first.column_name(1)) == "n");
  const auto rest = tx.exec("FETCH ALL FROM groups");
  REQUIRE(rest.size() == 1);
  CHECK(tx.exec("FETCH NEXT FROM groups").empty());
  for (const auto* rows : {&first, &rest}) {
    const auto grp = (*rows)[0][0].as<std::string>();
    const long n = (*rows)[0][1].as<long>();
    // ε = 1/2 per count, sensitivity 1: P(|noise| > 60) < 2·e^{-30} < 1e-12.
    CHECK((grp == "a" || grp == "b"));
    CHECK(std::abs(n - (grp == "a" ? 6000 : 3999)) <= 60);
  }
  // Going back is not offered over released rows.
  try {
    tx.exec("FETCH BACKWARD 1 FROM groups");
    FAIL("FETCH BACKWARD was accepted");
  } catch (const pqxx::sql_error& e) {
    CHECK(SqlState(e) == "55000");
  }
  tx.exec("ROLLBACK");
  // Ended with its transaction, as in PostgreSQL; fetching charged nothing.
  try {
    tx.exec("FETCH 1 FROM groups");
    FAIL("the cursor outlived its transaction");
  } catch (const pqxx::sql_error& e) {
    CHECK(SqlState(e) == "34000");
  }
  CHECK(RemainingEpsilon(tx) == Approx(before - 1));
}

TEST_CASE("WITH HOLD cursors outlive transactions, and plain ones need a transaction") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  tx.exec("SET dp.epsilon = 1");
  const double before = RemainingEpsilon(tx);
  try {
    tx.exec("DECLARE c CURSOR FOR SELECT count(*) FROM people");
    FAIL("a cursor without HOLD outside a transaction was accepted");
  } catch (const pqxx::sql_error& e) {
    CHECK(SqlState(e) == "25P01");
  }
  CHECK(RemainingEpsilon(tx) == Approx(before));  // refused before the charge
  // psqlODBC's declare/fetch mode: WITH HOLD, FETCH n IN, then CLOSE.
  tx.exec("DECLARE \"SQL_CUR0x1\" CURSOR WITH HOLD FOR SELECT count(*) FROM people");
  const auto row = tx.exec("FETCH 100 IN \"SQL_CUR0x1\"");
  REQUIRE(row.size() == 1);
  // ε = 1, sensitivity 1: P(|noise| > 30) < 2·e^{-30} < 1e-12.
  CHECK(std::abs(row[0][0].as<long>() - dpgate::testing::kPeople) <= 30);
  try {
    tx.exec("DECLARE \"SQL_CUR0x1\" CURSOR WITH HOLD FOR SELECT count(*) FROM people");
    FAIL("a second cursor of the same name was accepted");
  } catch (const pqxx::sql_error& e) {
    CHECK(SqlState(e) == "42P03");
  }
  tx.exec("CLOSE \"SQL_CUR0x1\"");
  CHECK(RemainingEpsilon(tx) == Approx(before - 1));
  try {
    tx.exec("FETCH 1 IN \"SQL_CUR0x1\"");
    FAIL("a closed cursor was fetched");
  } catch (const pqxx::sql_error& e) {
    CHECK(SqlState(e) == "34000");
  }
}

TEST_CASE("cursors over public tables are forwarded, unknown cursor names are refused") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  tx.exec("BEGIN");
  tx.exec("DECLARE labels CURSOR FOR SELECT code, label FROM lookup ORDER BY code");
  const auto first = tx.exec("FETCH 1 FROM labels");
  REQUIRE(first.size() == 1);
  CHECK(first[0][0].as<std::string>() == "a");
  tx.exec("MOVE 1 IN labels");
  CHECK(tx.exec("FETCH 1 FROM labels").empty());
  tx.exec("CLOSE labels");
  tx.exec("COMMIT");
  // A cursor dpgate did not see declared is not forwarded, whatever exists
  // upstream under that name.
  try {
    tx.exec("FETCH ALL FROM somebody_elses_cursor");
    FAIL("an unknown cursor was fetched");
  } catch (const pqxx::sql_error& e) {
    CHECK(SqlState(e) == "34000");
  }
  // A cursor name that PostgreSQL's deparser would write unquoted, as a
  // second statement reading the private table: FETCH must return the
  // cursor's public rows and nothing else.
  tx.exec(
      "DECLARE \"x; SELECT id, score FROM people\" CURSOR WITH HOLD FOR "
      "SELECT code FROM lookup ORDER BY code");
  const auto injected = tx.exec("FETCH ALL IN \"x; SELECT id, score FROM people\"");
  REQUIRE(injected.columns() == 1);
  REQUIRE(injected.size() == 2);
  CHECK(injected[0][0].as<std::string>() == "a");
  CHECK(injected[1][0].as<std::string>() == "b");
  tx.exec("CLOSE \"x; SELECT id, score FROM people\"");
  // Raw rows of a private table stay refused inside a cursor.
  try {
    tx.exec("BEGIN");
    tx.exec("DECLARE raw CURSOR FOR SELECT id, score FROM people");
    FAIL("a cursor over raw private rows was accepted");
  } catch (const pqxx::insufficient_privilege& e) {
    // 42501 (libpqxx 6 maps it to this class and leaves sqlstate() empty).
    CHECK(std::string(e.what()).find("is refused") != std::string::npos);
  }
  tx.exec("ROLLBACK");
  tx.exec("CLOSE ALL");
}

// SQL-level PREPARE / EXECUTE (docs/REWRITER.md §4.6): EXECUTE runs the
// bound query as if the client had sent it: charged per execution, and the
// cached answer for an identical one.
TEST_CASE("SQL-level PREPARE and EXECUTE of a private aggregate") {
  ServeFixture f;
  pqxx::connection c(f.Dsn("alice", kAlicePassword));
  pqxx::nontransaction tx(c);
  tx.exec("SET dp.epsilon = 1");
  const double before = RemainingEpsilon(tx);
  tx.exec("PREPARE over (int) AS SELECT count(*) FROM people WHERE id > $1");
  CHECK(RemainingEpsilon(tx) == Approx(before));  // nothing runs at PREPARE
  const auto first = tx.exec1("EXECUTE over (5000)");
  // 5,000 people with id > 5000; ε = 1, sensitivity 1: P(|noise| > 30) < 1e-12.
  CHECK(std::abs(first[0].as<long>() - 5000) <= 30);
  CHECK(RemainingEpsilon(tx) == Approx(before - 1));
  // The identical execution: the cached noisy answer, no charge.
  CHECK(tx.exec1("EXECUTE over (5000)")[0].as<long>() == first[0].as<long>());
  CHECK(RemainingEpsilon(tx) == Approx(before - 1));
  const auto second = tx.exec1("EXECUTE over (9000)");
  CHECK(std::abs(second[0].as<long>() - 1000) <= 30);
  CHECK(RemainingEpsilon(tx) == Approx(before - 2));
  try {
    tx.exec("PREPARE over (int) AS SELECT count(*) FROM people");
    FAIL("a second statement of the same name was accepted");
  } catch (const pqxx::sql_error& e) {
    CHECK(SqlState(e) == "42P05");
  }
  try {
    tx.exec("EXECUTE over (1, 2)");
    FAIL("EXECUTE with two arguments for one parameter was accepted");
  } catch (const pqxx::sql_error& e) {
    CHECK(std::string(e.what()).find("wrong number of parameters") != std::string::npos);
  }
  // An argument is held to the same rules as the query it goes into.
  try {
    tx.exec("EXECUTE over ((SELECT id FROM people WHERE score > 99))");
    FAIL("a subquery argument reading a private row was accepted");
  } catch (const pqxx::sql_error& e) {
    CHECK(std::string(e.what()).find("is refused") != std::string::npos);
  }
  tx.exec("DEALLOCATE over");
  try {
    tx.exec("EXECUTE over (5000)");
    FAIL("a deallocated statement was executed");
  } catch (const pqxx::sql_error& e) {
    CHECK(SqlState(e) == "26000");
  }
  // Raw rows are refused at PREPARE already.
  try {
    tx.exec("PREPARE raw (int) AS SELECT score FROM people WHERE id = $1");
    FAIL("PREPARE of raw rows was accepted");
  } catch (const pqxx::insufficient_privilege& e) {
    CHECK(std::string(e.what()).find("raw values") != std::string::npos);
  }
  CHECK(RemainingEpsilon(tx) == Approx(before - 2));
}
