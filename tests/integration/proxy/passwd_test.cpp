// `dpgate passwd` prints verifiers that real PostgreSQL and libpq accept: the
// verifier is installed as a role's password in the test cluster, and libpq
// logs in with the password (and fails with another one).
#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "test_pg.h"

using dpgate::testing::RequireTestPg;
using dpgate::testing::RunCommand;

TEST_CASE("dpgate passwd verifiers are accepted by PostgreSQL and libpq") {
  const auto pg = RequireTestPg();
  std::string out;
  const std::string password = "Tr0ub4dor&3-staple";
  REQUIRE(RunCommand("printf '%s\\n' '" + password + "' | " + DPGATE_BINARY + " passwd carol",
                     &out) == 0);
  // Only the verifier is printed: never the password itself.
  CHECK(out.find(password) == std::string::npos);
  const std::string verifier = out.substr(0, out.find('\n'));
  REQUIRE(verifier.rfind("SCRAM-SHA-256$4096:", 0) == 0);

  {
    pqxx::connection admin(pg.Dsn());
    pqxx::nontransaction tx(admin);
    tx.exec("drop role if exists passwd_carol");
    // PostgreSQL stores a pre-hashed SCRAM verifier as given.
    tx.exec("create role passwd_carol login password " + tx.quote(verifier));
    CHECK(tx.exec1("select rolpassword from pg_authid where rolname = 'passwd_carol'")[0]
              .as<std::string>() == verifier);
  }
  auto dsn_with = [&](const std::string& pw) {
    return "host=" + pg.host + " port=" + std::to_string(pg.port) +
           " dbname=postgres user=passwd_carol password=" + pw;
  };
  pqxx::connection ok(dsn_with(password));
  CHECK(pqxx::nontransaction(ok).exec1("select current_user")[0].as<std::string>() ==
        "passwd_carol");
  CHECK_THROWS_AS(pqxx::connection(dsn_with("wrong-password")), pqxx::broken_connection);
}

TEST_CASE("dpgate passwd refuses bad input with a clear message") {
  std::string out;
  CHECK(RunCommand(std::string(DPGATE_BINARY) + " passwd < /dev/null", &out) == 2);
  CHECK(out.find("missing NAME") != std::string::npos);
  CHECK(RunCommand("printf 'p\\303\\244ss\\n' | " + std::string(DPGATE_BINARY) + " passwd dave",
                   &out) == 1);
  CHECK(out.find("printable ASCII") != std::string::npos);
  CHECK(RunCommand(std::string(DPGATE_BINARY) + " passwd dave < /dev/null", &out) == 1);
  CHECK(out.find("no password") != std::string::npos);
}
