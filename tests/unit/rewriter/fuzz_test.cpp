// Random byte strings and truncated SQL never crash the classifier, and
// never yield a private/public/catalog class for text that mentions a private
// table without the bounded rewrite (a bounded number of iterations, fixed
// seed, so a failure reproduces).
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "dpgate/rewriter/rewriter.h"
#include "fixtures.h"

namespace dpgate::rewriter {
namespace {

const std::vector<std::string>& Seeds() {
  static const std::vector<std::string> seeds = {
      "SELECT sex, count(*), avg(age) FROM pums.pums WHERE age BETWEEN 18 AND 65 GROUP BY sex "
      "HAVING count(*) > 10 ORDER BY sex LIMIT 5",
      "SELECT educ, sum(income) FROM pums.pums AS p WHERE p.race IN ('1','2') GROUP BY educ",
      "WITH x AS (SELECT * FROM pums.pums) SELECT count(*) FROM x",
      "SELECT * FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = "
      "c.relnamespace",
      "SET dp.epsilon = 0.5; SHOW dp.budget; EXPLAIN (DP) SELECT count(*) FROM pums.pums",
      "SELECT query_to_xml('select * from pums.pums', true, true, '')",
      "BEGIN; SELECT count(DISTINCT pid) FROM pums.pums; COMMIT",
      "SELECT region, count(*) FROM public.employees GROUP BY region ORDER BY 2 DESC",
  };
  return seeds;
}

void ClassifyMustNotCrash(const std::string& sql, const config::Config& config) {
  SessionContext session;
  session.user = "alice";
  auto results = Classify(sql, config, session);
  REQUIRE(results.ok());
  for (const auto& r : *results) {
    if (r.statement_class == StatementClass::kRefused) {
      CHECK(!r.reason.message.empty());
      continue;
    }
    // Any statement that reads the private table is a bounded rewrite.
    bool reads_private = false;
    for (const auto& relation : r.relations) {
      reads_private = reads_private || relation == "pums.pums" || relation == "public.employees";
    }
    if (reads_private) {
      CHECK((r.statement_class == StatementClass::kPrivateAggregate ||
             r.statement_class == StatementClass::kDpgateCommand));
      CHECK(r.plan.has_value());
    }
  }
}

}  // namespace

TEST_CASE("random bytes never crash the classifier", "[rewriter][fuzz]") {
  const config::Config config = testing::MakeTestConfig();
  std::mt19937 rng(20261123);  // test data only; never used for noise
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 200);
  for (int i = 0; i < 2000; ++i) {
    std::string sql(static_cast<size_t>(length(rng)), ' ');
    for (auto& ch : sql) ch = static_cast<char>(byte(rng));
    ClassifyMustNotCrash(sql, config);
  }
}

TEST_CASE("truncated and mutated SQL never crashes the classifier", "[rewriter][fuzz]") {
  const config::Config config = testing::MakeTestConfig();
  std::mt19937 rng(7);
  const std::string alphabet = " (),;*'\"$0123456789abcdefghijklmnopqrstuvwxyz.=<>-+/%";
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  for (const auto& seed : Seeds()) {
    for (size_t cut = 0; cut <= seed.size(); ++cut)
      ClassifyMustNotCrash(seed.substr(0, cut), config);
    for (int i = 0; i < 300; ++i) {
      std::string mutated = seed;
      std::uniform_int_distribution<size_t> where(0, mutated.size() - 1);
      const int edits = 1 + static_cast<int>(where(rng) % 3);
      for (int e = 0; e < edits; ++e) mutated[where(rng)] = alphabet[pick(rng)];
      ClassifyMustNotCrash(mutated, config);
    }
  }
}

TEST_CASE("JSON output escapes strings", "[rewriter]") {
  const config::Config config = testing::MakeTestConfig();
  SessionContext session;
  auto results = Classify("SELECT 'a\"b\\c\n\x01' AS \"x\"\"y\"", config, session);
  REQUIRE(results.ok());
  REQUIRE(results->size() == 1);
  const std::string json = ToJson((*results)[0]);
  CHECK(json.find("\\\"") != std::string::npos);
  CHECK(json.find("\\\\") != std::string::npos);
  CHECK(json.find("\\u0001") != std::string::npos);
  CHECK(json.find('\n') == std::string::npos);
  CHECK(json.find("\"class\":\"catalog\"") != std::string::npos);
  // Invalid UTF-8 is refused before parsing, and its JSON is still valid.
  auto bad = Classify("SELECT '\xff'", config, session);
  REQUIRE(bad.ok());
  REQUIRE(bad->size() == 1);
  CHECK((*bad)[0].reason.code == "22021");
}

}  // namespace dpgate::rewriter

namespace dpgate::rewriter {

TEST_CASE("the epsilon/delta split is filled from the session budget", "[rewriter]") {
  const config::Config config = testing::MakeTestConfig();
  SessionContext session;
  session.epsilon = 1.0;
  session.delta = 1e-6;
  auto results =
      Classify("SELECT educ, count(*), avg(age) FROM pums.pums GROUP BY educ", config, session);
  REQUIRE(results.ok());
  REQUIRE((*results)[0].plan.has_value());
  const ReleasePlan& plan = *(*results)[0].plan;
  CHECK(plan.budget_split_filled);
  double total = plan.partition_selection.epsilon;
  CHECK(plan.partition_selection.epsilon > 0);
  CHECK(plan.partition_selection.delta > 0);
  for (const auto& column : plan.columns) {
    for (const auto& quantity : column.inputs) {
      CHECK(quantity.epsilon > 0);
      total += quantity.epsilon;
    }
  }
  CHECK(total <= 1.0 + 1e-12);

  // Without a session budget the split is left to the caller.
  SessionContext unset;
  auto plain = Classify("SELECT count(*) FROM pums.pums", config, unset);
  REQUIRE(plain.ok());
  CHECK_FALSE((*plain)[0].plan->budget_split_filled);
}

}  // namespace dpgate::rewriter
