// The harness itself: the fixture's cluster is a real PostgreSQL 15 that
// accepts SCRAM logins over TCP, and per-test databases are isolated.
#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "test_pg.h"

using dpgate::testing::CreateTestDatabase;
using dpgate::testing::RequireTestPg;

TEST_CASE("the test cluster is a running PostgreSQL 15") {
  const auto pg = RequireTestPg();
  pqxx::connection c(pg.Dsn());
  pqxx::nontransaction tx(c);
  const int version = tx.exec1("show server_version_num")[0].as<int>();
  CHECK(version / 10000 == 15);
}

TEST_CASE("a wrong password is refused (SCRAM over TCP is enforced)") {
  auto pg = RequireTestPg();
  pg.password = "not-the-password";
  CHECK_THROWS_AS(pqxx::connection(pg.Dsn()), pqxx::broken_connection);
}

TEST_CASE("per-test databases are separate") {
  const auto pg = RequireTestPg();
  const auto a = CreateTestDatabase(pg, "harness");
  const auto b = CreateTestDatabase(pg, "harness");
  REQUIRE(a != b);
  dpgate::testing::ExecSql(pg, a, "create table only_in_a(x int)");
  pqxx::connection cb(pg.Dsn(b));
  pqxx::nontransaction tx(cb);
  CHECK(tx.exec1("select count(*) from pg_class where relname = 'only_in_a'")[0].as<int>() == 0);
}
