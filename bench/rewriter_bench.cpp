// Rewrite cost per query (docs/REWRITER.md §13): rewriter::Classify of a
// private aggregate, against a bare libpg_query parse + deparse round trip of
// the same text (the floor any tree-editing rewriter pays), and a PlanCache
// hit. Issue 4's targets: uncached ≤ 2× the round trip, a hit ≤ 0.2×.
#include <benchmark/benchmark.h>
#include <pg_query.h>
#include <pg_query.pb.h>

#include <array>
#include <cstdlib>
#include <optional>
#include <string>

#include "../tests/unit/rewriter/fixtures.h"
#include "dpgate/rewriter/plan_cache.h"
#include "dpgate/rewriter/rewriter.h"

namespace {

using dpgate::rewriter::PlanCache;
using dpgate::rewriter::SessionContext;

// Representative SmartNoise-style queries over pums.pums (fixtures.h config).
constexpr std::array<const char*, 4> kQueries = {
    // 0: global count
    "SELECT COUNT(*) AS c FROM PUMS.PUMS",
    // 1: grouped, WHERE, several aggregates incl. AVG
    "SELECT educ, SUM(income) AS total_income, AVG(income) AS avg_income, AVG(age) "
    "FROM PUMS.PUMS WHERE married = TRUE GROUP BY educ",
    // 2: two keys, ORDER BY and LIMIT (post-processing in the plan)
    "SELECT age, married, COUNT(*) AS n, SUM(income) AS income FROM PUMS.PUMS "
    "GROUP BY age, married ORDER BY income DESC LIMIT 50",
    // 3: join with a public table, variance
    "SELECT s.name, count(*), variance(p.income) FROM pums.pums p "
    "JOIN pums.states s ON s.code = p.race WHERE p.age BETWEEN 20 AND 60 GROUP BY s.name",
};

SessionContext Session() {
  SessionContext session;
  session.user = "alice";
  session.epsilon = 0.5;
  session.delta = 1e-7;
  return session;
}

// One libpg_query parse + deparse of `sql`, as Classify would pay at least.
void RoundTrip(benchmark::State& state, const char* sql) {
  for (auto _ : state) {
    PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(sql);
    if (parsed.error != nullptr) {
      state.SkipWithError(parsed.error->message);
      pg_query_free_protobuf_parse_result(parsed);
      break;
    }
    PgQueryDeparseResult deparsed = pg_query_deparse_protobuf(parsed.parse_tree);
    benchmark::DoNotOptimize(deparsed.query);
    pg_query_free_deparse_result(deparsed);
    pg_query_free_protobuf_parse_result(parsed);
  }
}

void BM_ParseDeparseRoundTrip(benchmark::State& state) {
  RoundTrip(state, kQueries[static_cast<size_t>(state.range(0))]);
}

// The SQL the rewriter writes for query number state.range(0); nullopt
// (and the benchmark skipped) when it cannot classify it.
std::optional<std::string> RewrittenSql(benchmark::State& state) {
  const auto config = dpgate::rewriter::testing::MakeTestConfig();
  auto result =
      dpgate::rewriter::Classify(kQueries[static_cast<size_t>(state.range(0))], config, Session());
  if (!result.ok()) {
    state.SkipWithError("classify failed");
    return std::nullopt;
  }
  return result->at(0).rewritten_sql;
}

// The same round trip of the rewritten SQL: the bounded query's tree is
// several times the input's, and deparsing it is part of any rewrite, so
// this is the floor for producing that text through libpg_query.
void BM_RewrittenSqlRoundTrip(benchmark::State& state) {
  const auto rewritten = RewrittenSql(state);
  if (!rewritten.has_value()) return;
  RoundTrip(state, rewritten->c_str());
}

// The floor of any rewriter that edits libpg_query's tree in C++ and deparses
// through its public API: (a) parse the input once into the C++ protobuf
// tree, and (b) serialise the final rewritten tree and deparse it once.
// (b) uses the rewritten SQL's own parse tree, built outside the loop: the
// same nodes as the rewriter's tree (locations aside).
void BM_FloorParseInput(benchmark::State& state) {
  const char* sql = kQueries[static_cast<size_t>(state.range(0))];
  for (auto _ : state) {
    PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(sql);
    pg_query::ParseResult tree;
    const bool ok =
        tree.ParseFromArray(parsed.parse_tree.data, static_cast<int>(parsed.parse_tree.len));
    pg_query_free_protobuf_parse_result(parsed);
    if (!ok) {
      state.SkipWithError("could not decode the parse tree");
      break;
    }
    benchmark::DoNotOptimize(tree.stmts_size());
  }
}

void BM_FloorDeparseRewritten(benchmark::State& state) {
  const auto rewritten = RewrittenSql(state);
  if (!rewritten.has_value()) return;
  PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(rewritten->c_str());
  pg_query::ParseResult tree;
  tree.ParseFromArray(parsed.parse_tree.data, static_cast<int>(parsed.parse_tree.len));
  pg_query_free_protobuf_parse_result(parsed);
  for (auto _ : state) {
    std::string bytes;
    tree.SerializeToString(&bytes);
    PgQueryDeparseResult deparsed = pg_query_deparse_protobuf({bytes.size(), bytes.data()});
    benchmark::DoNotOptimize(deparsed.query);
    pg_query_free_deparse_result(deparsed);
  }
}

// pg_query_fingerprint of the input: Classify reports it (docs/REWRITER.md
// §1.2), and libpg_query computes it only from text, so it is a second parse.
void BM_FingerprintInput(benchmark::State& state) {
  const char* sql = kQueries[static_cast<size_t>(state.range(0))];
  for (auto _ : state) {
    PgQueryFingerprintResult fingerprint = pg_query_fingerprint(sql);
    benchmark::DoNotOptimize(fingerprint.fingerprint);
    pg_query_free_fingerprint_result(fingerprint);
  }
}

void BM_RewriteUncached(benchmark::State& state) {
  const char* sql = kQueries[static_cast<size_t>(state.range(0))];
  const auto config = dpgate::rewriter::testing::MakeTestConfig();
  const SessionContext session = Session();
  for (auto _ : state) {
    auto result = dpgate::rewriter::Classify(sql, config, session);
    if (!result.ok() ||
        result->at(0).statement_class != dpgate::rewriter::StatementClass::kPrivateAggregate) {
      state.SkipWithError("query not accepted as a private aggregate");
      break;
    }
    benchmark::DoNotOptimize(result->at(0).rewritten_sql.data());
  }
}

// The same with schema facts that make every query's unit unique (and the
// join's key too): the per-row shape of docs/REWRITER.md §8.5 is chosen, so
// this is the shape analysis's cost plus a smaller tree to deparse.
void BM_RewriteUncachedPerRow(benchmark::State& state) {
  const char* sql = kQueries[static_cast<size_t>(state.range(0))];
  const auto config = dpgate::rewriter::testing::MakeTestConfig();
  const auto facts = dpgate::rewriter::testing::ParseFacts(
      "pums.pums.pid, pums.states.code", "pums.states.code=character, pums.pums.race=character");
  const SessionContext session = Session();
  for (auto _ : state) {
    auto result = dpgate::rewriter::Classify(sql, config, session, facts);
    if (!result.ok() || !result->at(0).plan ||
        result->at(0).plan->shape != dpgate::rewriter::PlanShape::kPerRow) {
      state.SkipWithError("query not rewritten in the per-row shape");
      break;
    }
    benchmark::DoNotOptimize(result->at(0).rewritten_sql.data());
  }
}

void BM_RewriteCacheHit(benchmark::State& state) {
  const char* sql = kQueries[static_cast<size_t>(state.range(0))];
  const auto config = dpgate::rewriter::testing::MakeTestConfig();
  const SessionContext session = Session();
  PlanCache cache(config);
  if (!cache.Classify(sql, session).ok()) {
    state.SkipWithError("classify failed");
    return;
  }
  for (auto _ : state) {
    auto result = cache.Classify(sql, session);
    benchmark::DoNotOptimize(result->get());
  }
  if (cache.stats().misses != 1) state.SkipWithError("expected every iteration to hit");
}

BENCHMARK(BM_ParseDeparseRoundTrip)->DenseRange(0, kQueries.size() - 1);
BENCHMARK(BM_RewrittenSqlRoundTrip)->DenseRange(0, kQueries.size() - 1);
BENCHMARK(BM_FloorParseInput)->DenseRange(0, kQueries.size() - 1);
BENCHMARK(BM_FloorDeparseRewritten)->DenseRange(0, kQueries.size() - 1);
BENCHMARK(BM_FingerprintInput)->DenseRange(0, kQueries.size() - 1);
BENCHMARK(BM_RewriteUncached)->DenseRange(0, kQueries.size() - 1);
BENCHMARK(BM_RewriteUncachedPerRow)->DenseRange(0, kQueries.size() - 1);
BENCHMARK(BM_RewriteCacheHit)->DenseRange(0, kQueries.size() - 1);

}  // namespace

BENCHMARK_MAIN();
