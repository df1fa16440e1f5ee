// PlanCache: hits are identical to a fresh Classify, anything that changes
// the rewrite (a constant, the search_path, the user, the budget) misses,
// and the LRU bound holds.
#include "dpgate/rewriter/plan_cache.h"

#include <catch2/catch.hpp>
#include <cctype>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "fixtures.h"

namespace dpgate::rewriter {
namespace {

SessionContext Alice() {
  SessionContext session;
  session.user = "alice";
  return session;
}

// Every field the proxy acts on, rendered: equal texts mean equal results.
std::string Render(const std::vector<StatementResult>& results) {
  std::string out;
  for (const auto& r : results) out += ToJson(r) + "\n" + r.rewritten_sql + "\n";
  return out;
}

TEST_CASE("plan cache: a hit returns the same results as a fresh Classify") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config);
  SessionContext session = Alice();
  session.epsilon = 0.5;
  session.delta = 1e-7;
  const std::string sql =
      "SELECT sex, count(*), avg(income) FROM pums.pums WHERE age > 30 GROUP BY sex; "
      "SELECT 1; COPY pums.pums TO STDOUT";
  auto first = cache.Classify(sql, session);
  REQUIRE(first.ok());
  auto second = cache.Classify(sql, session);
  REQUIRE(second.ok());
  CHECK(cache.stats().hits == 1);
  CHECK(cache.stats().misses == 1);
  CHECK(first->get() == second->get());  // the very same shared entry
  auto fresh = Classify(sql, config, session);
  REQUIRE(fresh.ok());
  REQUIRE((*second)->size() == 3);
  CHECK(Render(**second) == Render(*fresh));
  CHECK((*second)->at(0).plan->budget_split_filled);
  CHECK((*second)->at(2).statement_class == StatementClass::kRefused);
}

TEST_CASE("plan cache: queries differing only in a constant share a fingerprint but not an entry") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config);
  auto young = cache.Classify("SELECT count(*) FROM pums.pums WHERE age > 30", Alice());
  auto old = cache.Classify("SELECT count(*) FROM pums.pums WHERE age > 90", Alice());
  REQUIRE(young.ok());
  REQUIRE(old.ok());
  CHECK(cache.stats().misses == 2);
  CHECK(cache.stats().hits == 0);
  CHECK((*young)->at(0).fingerprint == (*old)->at(0).fingerprint);
  CHECK((*young)->at(0).rewritten_sql.find("30") != std::string::npos);
  CHECK((*old)->at(0).rewritten_sql.find("90") != std::string::npos);
  CHECK((*old)->at(0).rewritten_sql.find("> 30") == std::string::npos);
  // Whitespace is part of the text too: a different text is a different key.
  auto spaced = cache.Classify("SELECT count(*) FROM pums.pums WHERE age >  30", Alice());
  REQUIRE(spaced.ok());
  CHECK(cache.stats().misses == 3);
}

TEST_CASE("plan cache: a different search_path, user or budget misses") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config);
  const std::string sql = "SELECT count(*) FROM pums";
  SessionContext default_path = Alice();
  SessionContext pums_path = Alice();
  pums_path.search_path = {"pums"};

  auto refused = cache.Classify(sql, default_path);
  auto accepted = cache.Classify(sql, pums_path);
  REQUIRE(refused.ok());
  REQUIRE(accepted.ok());
  CHECK(cache.stats().misses == 2);
  CHECK((*refused)->at(0).statement_class == StatementClass::kRefused);
  CHECK((*accepted)->at(0).statement_class == StatementClass::kPrivateAggregate);

  // "$user" expands to the user's name, so the user is part of the key.
  SessionContext bob = pums_path;
  bob.user = "bob";
  REQUIRE(cache.Classify(sql, bob).ok());
  CHECK(cache.stats().misses == 3);

  // The ε/δ split is in the plan.
  SessionContext budget = pums_path;
  budget.epsilon = 1.0;
  budget.delta = 1e-6;
  auto with_budget = cache.Classify(sql, budget);
  REQUIRE(with_budget.ok());
  CHECK(cache.stats().misses == 4);
  CHECK((*with_budget)->at(0).plan->budget_split_filled);
  CHECK_FALSE((*accepted)->at(0).plan->budget_split_filled);
  budget.epsilon = 0.5;
  REQUIRE(cache.Classify(sql, budget).ok());
  CHECK(cache.stats().misses == 5);

  // Field boundaries are encoded: ["a,b"] is not ["a", "b"].
  SessionContext joined = Alice();
  joined.search_path = {"pums,public"};
  SessionContext split = Alice();
  split.search_path = {"pums", "public"};
  REQUIRE(cache.Classify(sql, joined).ok());
  auto split_result = cache.Classify(sql, split);
  REQUIRE(split_result.ok());
  CHECK(cache.stats().misses == 7);
  CHECK((*split_result)->at(0).statement_class == StatementClass::kPrivateAggregate);

  // And the same session again hits.
  REQUIRE(cache.Classify(sql, pums_path).ok());
  CHECK(cache.stats().hits == 1);
}

TEST_CASE("plan cache: the LRU bound holds and recently used entries survive") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config, 4);
  REQUIRE(cache.capacity() == 4);
  auto query = [](int i) {
    return "SELECT count(*) FROM pums.pums WHERE age > " + std::to_string(i);
  };
  for (int i = 0; i < 4; ++i) REQUIRE(cache.Classify(query(i), Alice()).ok());
  CHECK(cache.size() == 4);
  REQUIRE(cache.Classify(query(0), Alice()).ok());  // 0 is now the most recent
  CHECK(cache.stats().hits == 1);
  for (int i = 4; i < 20; ++i) {
    REQUIRE(cache.Classify(query(i), Alice()).ok());
    CHECK(cache.size() <= 4);
  }
  CHECK(cache.size() == 4);
  CHECK(cache.stats().evictions == 16);
  // The four most recent are kept; older ones (0 included, by now) are gone.
  const auto hits_before = cache.stats().hits;
  for (int i = 16; i < 20; ++i) REQUIRE(cache.Classify(query(i), Alice()).ok());
  CHECK(cache.stats().hits == hits_before + 4);
  REQUIRE(cache.Classify(query(0), Alice()).ok());
  CHECK(cache.stats().hits == hits_before + 4);
  CHECK(cache.size() == 4);

  // A result handed out stays valid after its entry is evicted.
  auto held = cache.Classify(query(100), Alice());
  REQUIRE(held.ok());
  for (int i = 200; i < 210; ++i) REQUIRE(cache.Classify(query(i), Alice()).ok());
  CHECK((*held)->at(0).rewritten_sql.find("100") != std::string::npos);

  cache.Clear();
  CHECK(cache.size() == 0);
}

TEST_CASE("plan cache: very long query texts are classified but not cached") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config);
  std::string sql = "SELECT count(*) FROM pums.pums WHERE age > 1";
  while (sql.size() <= PlanCache::kMaxCachedQueryBytes) sql += " OR age > 1";
  auto result = cache.Classify(sql, Alice());
  REQUIRE(result.ok());
  CHECK((*result)->at(0).statement_class == StatementClass::kPrivateAggregate);
  CHECK(cache.size() == 0);
}

TEST_CASE("plan cache: concurrent use from several threads stays bounded and consistent") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config, 8);
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const int age = (i * 7 + t) % 16;
        auto r = cache.Classify("SELECT count(*) FROM pums.pums WHERE age > " + std::to_string(age),
                                Alice());
        bool good = r.ok() && (*r)->size() == 1;
        if (good) {
          // The constant of this thread's own query, not another's.
          const std::string& rewritten = (*r)->at(0).rewritten_sql;
          const std::string needle = "> " + std::to_string(age);
          const auto at = rewritten.find(needle);
          good = at != std::string::npos && at + needle.size() < rewritten.size() &&
                 !std::isdigit(static_cast<unsigned char>(rewritten[at + needle.size()]));
        }
        if (!good) ++failures[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int f : failures) CHECK(f == 0);
  CHECK(cache.size() <= 8);
  const auto stats = cache.stats();
  CHECK(stats.hits + stats.misses == 800);
}

TEST_CASE("plan cache: schema facts given at construction choose the shape") {
  const config::Config config = testing::MakeTestConfig();
  const std::string sql = "SELECT educ, count(*) FROM pums.pums GROUP BY educ";
  PlanCache plain(config);
  PlanCache with_facts(config, testing::ParseFacts("pums.pums.pid", ""), 16);
  auto bounded = plain.Classify(sql, Alice());
  auto per_row = with_facts.Classify(sql, Alice());
  REQUIRE(bounded.ok());
  REQUIRE(per_row.ok());
  CHECK((*bounded)->at(0).plan->shape == PlanShape::kPerUnitBounded);
  CHECK((*per_row)->at(0).plan->shape == PlanShape::kPerRow);
  CHECK(with_facts.capacity() == 16);
  // A hit keeps the shape: the facts are fixed for the cache's life.
  auto again = with_facts.Classify(sql, Alice());
  REQUIRE(again.ok());
  CHECK(again->get() == per_row->get());
  auto fresh = Classify(sql, config, Alice(), testing::ParseFacts("pums.pums.pid", ""));
  REQUIRE(fresh.ok());
  CHECK(Render(**per_row) == Render(*fresh));
}

TEST_CASE("plan cache: a session's memo answers its repeated statement and nothing else") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config);
  PlanCache::Memo memo;
  const std::string sql = "SELECT count(*) FROM pums";
  SessionContext pums_path = Alice();
  pums_path.search_path = {"pums"};

  auto first = cache.Classify(sql, pums_path, &memo);
  REQUIRE(first.ok());
  CHECK(cache.stats().misses == 1);
  // The repeat is the very same result, without a lookup in the shared cache.
  auto again = cache.Classify(sql, pums_path, &memo);
  REQUIRE(again.ok());
  CHECK(again->get() == first->get());
  CHECK(cache.stats().hits == 0);
  CHECK(cache.stats().misses == 1);

  // Every field of the session that the shared key has also misses the memo:
  // the answer is the one a fresh Classify gives for that session.
  SessionContext default_path = Alice();
  auto refused = cache.Classify(sql, default_path, &memo);
  REQUIRE(refused.ok());
  CHECK((*refused)->at(0).statement_class == StatementClass::kRefused);
  SessionContext bob = pums_path;
  bob.user = "bob";
  auto for_bob = cache.Classify(sql, bob, &memo);
  REQUIRE(for_bob.ok());
  CHECK(for_bob->get() != first->get());
  SessionContext budget = pums_path;
  budget.epsilon = 1.0;
  budget.delta = 1e-7;
  auto with_budget = cache.Classify(sql, budget, &memo);
  REQUIRE(with_budget.ok());
  CHECK((*with_budget)->at(0).plan->budget_split_filled);
  budget.epsilon = std::nextafter(1.0, 2.0);  // the last bit of ε is a different split
  auto next_budget = cache.Classify(sql, budget, &memo);
  REQUIRE(next_budget.ok());
  CHECK(next_budget->get() != with_budget->get());
  budget.epsilon = 1.0;
  budget.delta = 1e-6;
  auto with_delta = cache.Classify(sql, budget, &memo);
  REQUIRE(with_delta.ok());
  CHECK(with_delta->get() != with_budget->get());
  // A different text misses too.
  auto other = cache.Classify("SELECT count(*) FROM pums WHERE age > 1", pums_path, &memo);
  REQUIRE(other.ok());
  CHECK(other->get() != first->get());
  CHECK(cache.stats().misses == 7);
  // Back to the first statement: the shared cache still has it.
  auto back = cache.Classify(sql, pums_path, &memo);
  REQUIRE(back.ok());
  CHECK(back->get() == first->get());
  CHECK(cache.stats().hits == 1);
}

TEST_CASE("plan cache: a session's memo keeps no long text") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config);
  PlanCache::Memo memo;
  std::string sql = "SELECT count(*) FROM pums.pums WHERE age > 1";
  while (sql.size() <= PlanCache::Memo::kMaxMemoQueryBytes) sql += " AND age > 1";
  REQUIRE(cache.Classify(sql, Alice(), &memo).ok());
  CHECK(memo.statements == nullptr);
  CHECK(memo.sql.empty());
  REQUIRE(cache.Classify(sql, Alice(), &memo).ok());
  CHECK(cache.stats().hits == 1);  // answered by the shared cache
}

TEST_CASE(
    "plan cache: ClassifyKept answers from the memo without sharing, a long text from owner") {
  const config::Config config = testing::MakeTestConfig();
  PlanCache cache(config);
  PlanCache::Memo memo;
  PlanCache::Statements owner;
  const std::string sql = "SELECT count(*) FROM pums.pums";
  auto first = cache.ClassifyKept(sql, Alice(), &memo, &owner);
  REQUIRE(first.ok());
  CHECK(*first == memo.statements.get());  // kept in the memo, not in owner
  CHECK(owner == nullptr);
  // The repeat is the memo's result: no lookup, and no new reference to it.
  const long uses = memo.statements.use_count();
  auto again = cache.ClassifyKept(sql, Alice(), &memo, &owner);
  REQUIRE(again.ok());
  CHECK(*again == *first);
  CHECK(memo.statements.use_count() == uses);
  CHECK(cache.stats().misses == 1);
  CHECK(cache.stats().hits == 0);
  CHECK(Render(**again) == Render(**cache.Classify(sql, Alice())));

  // Too long for the memo: held by owner, and the memo keeps the short one.
  std::string long_sql = "SELECT count(*) FROM pums.pums WHERE age > 1";
  while (long_sql.size() <= PlanCache::Memo::kMaxMemoQueryBytes) long_sql += " AND age > 1";
  auto held = cache.ClassifyKept(long_sql, Alice(), &memo, &owner);
  REQUIRE(held.ok());
  REQUIRE(owner != nullptr);
  CHECK(*held == owner.get());
  CHECK(memo.sql == sql);
  CHECK(Render(**held) == Render(**cache.Classify(long_sql, Alice())));
}

}  // namespace
}  // namespace dpgate::rewriter
