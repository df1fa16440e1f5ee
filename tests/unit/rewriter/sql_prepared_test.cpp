// BindSqlExecute (docs/REWRITER.md §4.6): the prepared query with the
// EXECUTE's arguments in place of its parameters, built on the parse trees;
// the result is classified anew, so an argument is held to every rule.
#include <catch2/catch.hpp>
#include <string>

#include "dpgate/rewriter/rewriter.h"
#include "fixtures.h"

namespace dpgate::rewriter {
namespace {

TEST_CASE("EXECUTE binds its arguments into the prepared query", "[rewriter]") {
  auto bound = BindSqlExecute(
      "PREPARE q (int, text) AS SELECT count(*) FROM pums.pums WHERE age > $1 AND sex = $2",
      "EXECUTE q (30, '1')");
  REQUIRE(bound.ok());
  CHECK(*bound == "SELECT count(*) FROM pums.pums WHERE age > 30::int AND sex = '1'::text");
  // Without declared types the arguments go in as written.
  bound = BindSqlExecute("PREPARE q AS SELECT $1 + $1", "EXECUTE q (2)");
  REQUIRE(bound.ok());
  CHECK(*bound == "SELECT 2 + 2");
}

TEST_CASE("EXECUTE with the wrong number of arguments is an error", "[rewriter]") {
  auto bound = BindSqlExecute("PREPARE q (int) AS SELECT $1", "EXECUTE q (1, 2)");
  REQUIRE_FALSE(bound.ok());
  CHECK(bound.error().code == "42601");
  bound = BindSqlExecute("PREPARE q AS SELECT $2", "EXECUTE q (1)");
  REQUIRE_FALSE(bound.ok());
  CHECK(bound.error().code == "42601");
  CHECK_FALSE(BindSqlExecute("SELECT 1", "EXECUTE q (1)").ok());
}

TEST_CASE("an argument is classified with the query it is bound into", "[rewriter]") {
  const auto config = testing::MakeTestConfig();
  SessionContext session;
  session.user = "alice";
  // A constant: a private aggregate as if written with it.
  auto bound = BindSqlExecute("PREPARE q (int) AS SELECT count(*) FROM pums.pums WHERE age > $1",
                              "EXECUTE q (40)");
  REQUIRE(bound.ok());
  auto results = Classify(*bound, config, session);
  REQUIRE(results.ok());
  CHECK(results->front().statement_class == StatementClass::kPrivateAggregate);
  // A subquery reading raw rows as an argument is refused like any subquery.
  bound = BindSqlExecute("PREPARE q (int) AS SELECT count(*) FROM pums.pums WHERE age > $1",
                         "EXECUTE q ((SELECT income FROM pums.pums LIMIT 1))");
  REQUIRE(bound.ok());
  results = Classify(*bound, config, session);
  REQUIRE(results.ok());
  CHECK(results->front().statement_class == StatementClass::kRefused);
}

}  // namespace
}  // namespace dpgate::rewriter
