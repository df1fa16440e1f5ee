// The last check before anything is forwarded (docs/REWRITER.md §1.3): the
// text must parse back as one statement, and a query's as a query. Fed the
// shapes a deparser bug would produce, e.g. libpg_query's unquoted FETCH
// cursor name turning `"x; SELECT * FROM t"` into a second statement.
#include <catch2/catch.hpp>
#include <string>

#include "dpgate/rewriter/rewriter.h"
#include "fixtures.h"

namespace dpgate::rewriter {
namespace {

StatementResult Forwarded(StatementClass c, const std::string& sql) {
  StatementResult result;
  result.statement_class = c;
  result.rewritten_sql = sql;
  return result;
}

TEST_CASE("forwarded text must parse back as one statement of its kind", "[rewriter]") {
  CHECK_FALSE(ForwardedTextProblem(Forwarded(StatementClass::kPublic, "SELECT 1")).has_value());
  CHECK_FALSE(ForwardedTextProblem(
                  Forwarded(StatementClass::kSession, "FETCH FORWARD 1 FROM \"x; SELECT 1\""))
                  .has_value());
  CHECK_FALSE(ForwardedTextProblem(Forwarded(StatementClass::kPublic,
                                             "DECLARE c CURSOR FOR SELECT name FROM pums.states"))
                  .has_value());
  // A second statement smuggled by an unquoted name.
  CHECK(ForwardedTextProblem(
            Forwarded(StatementClass::kSession, "FETCH FORWARD 1 x; SELECT * FROM pums.pums"))
            .has_value());
  CHECK(ForwardedTextProblem(Forwarded(StatementClass::kPrivateAggregate,
                                       "SELECT count(*) FROM pums.pums; SELECT 1"))
            .has_value());
  // A query whose text is no longer a query.
  CHECK(ForwardedTextProblem(Forwarded(StatementClass::kCatalog, "SET search_path = public"))
            .has_value());
  // Text that does not parse at all.
  CHECK(
      ForwardedTextProblem(Forwarded(StatementClass::kPublic, "SELECT FROM WHERE (")).has_value());
  // Refusals and dpgate's own answers are never sent.
  CHECK_FALSE(
      ForwardedTextProblem(Forwarded(StatementClass::kRefused, "SELECT 1; SELECT 2")).has_value());
}

TEST_CASE("every statement Classify accepts passes the forwarded-text check", "[rewriter]") {
  const auto config = testing::MakeTestConfig();
  SessionContext session;
  session.user = "alice";
  auto results = Classify(
      "SELECT educ, count(*) FROM pums.pums GROUP BY educ; SELECT name FROM pums.states; "
      "DECLARE \"a; b\" CURSOR WITH HOLD FOR SELECT name FROM pums.states; FETCH 2 IN \"a; b\"; "
      "CLOSE \"a; b\"",
      config, session);
  REQUIRE(results.ok());
  REQUIRE(results->size() == 5);
  for (const auto& r : *results) {
    INFO(r.original_sql << " -> " << r.rewritten_sql << " " << r.reason.message);
    CHECK(r.statement_class != StatementClass::kRefused);
    CHECK_FALSE(ForwardedTextProblem(r).has_value());
  }
}

}  // namespace
}  // namespace dpgate::rewriter
