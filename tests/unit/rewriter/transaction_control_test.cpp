// Transaction-control statements carry their kind, AND CHAIN and savepoint
// name, which the proxy needs to run a multi-statement Query as one implicit
// transaction block (docs/PROXY.md §1 item 10).
#include <catch2/catch.hpp>
#include <string>

#include "dpgate/rewriter/rewriter.h"
#include "fixtures.h"

namespace dpgate::rewriter {
namespace {

TEST_CASE("transaction-control statements carry their kind", "[rewriter]") {
  const auto config = testing::MakeTestConfig();
  SessionContext session;
  session.user = "alice";
  struct Case {
    const char* sql;
    TransactionControl kind;
    bool chain;
    const char* savepoint;
  };
  using T = TransactionControl;
  const Case cases[] = {
      {"BEGIN", T::kBegin, false, ""},
      {"START TRANSACTION ISOLATION LEVEL REPEATABLE READ", T::kBegin, false, ""},
      {"COMMIT", T::kCommit, false, ""},
      {"END", T::kCommit, false, ""},
      {"COMMIT AND CHAIN", T::kCommit, true, ""},
      {"ROLLBACK", T::kRollback, false, ""},
      {"ABORT", T::kRollback, false, ""},
      {"ROLLBACK AND CHAIN", T::kRollback, true, ""},
      {"SAVEPOINT Sp1", T::kSavepoint, false, "sp1"},
      {"RELEASE sp1", T::kRelease, false, "sp1"},
      {"RELEASE SAVEPOINT \"Sp1\"", T::kRelease, false, "Sp1"},
      {"ROLLBACK TO sp1", T::kRollbackTo, false, "sp1"},
      {"SET statement_timeout = '1s'", T::kNone, false, ""},
      {"SELECT 1", T::kNone, false, ""},
  };
  for (const auto& c : cases) {
    INFO(c.sql);
    auto results = Classify(c.sql, config, session);
    REQUIRE(results.ok());
    REQUIRE(results->size() == 1);
    const StatementResult& st = results->front();
    CHECK(st.statement_class != StatementClass::kRefused);
    CHECK(st.transaction == c.kind);
    CHECK(st.transaction_chain == c.chain);
    CHECK(st.savepoint == c.savepoint);
  }
  // Two-phase commit stays refused.
  auto refused = Classify("PREPARE TRANSACTION 'x'", config, session);
  REQUIRE(refused.ok());
  CHECK(refused->front().statement_class == StatementClass::kRefused);
}

}  // namespace
}  // namespace dpgate::rewriter
