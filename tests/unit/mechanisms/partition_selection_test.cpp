#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "dpgate/mechanisms/partition_selection.h"
#include "stats.h"

using namespace dpgate::mechanisms;
using namespace dpgate::mechanisms::testing;

TEST_CASE("truncated geometric keep probabilities satisfy the DP constraints") {
  // DVGM 2022, Definition/Lemma: a keep-probability function π is (ε, δ)-DP
  // for partition selection (one partition per unit) iff π(0) = 0 and for
  // all n >= 1: π(n) <= e^ε π(n−1) + δ and 1 − π(n−1) <= e^ε (1 − π(n)) + δ.
  // With k groups it is checked at (ε/k, δ/k).
  struct Case {
    double epsilon, delta;
    int64_t k;
  };
  for (const Case c :
       {Case{1, 1e-5, 1}, Case{0.1, 1e-8, 1}, Case{2, 1e-10, 4}, Case{0.5, 1e-6, 10}}) {
    INFO("epsilon " << c.epsilon << " delta " << c.delta << " k " << c.k);
    auto ps = PartitionSelection::Build(c.epsilon, c.delta, c.k);
    REQUIRE(ps.ok());
    const double e = std::exp(c.epsilon / c.k), d = c.delta / c.k;
    CHECK(ps->KeepProbability(0) == 0);
    for (int64_t n = 1; n <= ps->AlwaysKeptFrom() + 1; ++n) {
      const double prev = ps->KeepProbability(n - 1), cur = ps->KeepProbability(n);
      REQUIRE(cur <= e * prev + d);
      REQUIRE(1 - prev <= e * (1 - cur) + d);
      REQUIRE(cur >= prev);
    }
    CHECK(ps->KeepProbability(ps->AlwaysKeptFrom()) == 1.0);
    CHECK(ps->KeepProbability(ps->AlwaysKeptFrom() - 1) < 1.0);
  }
}

TEST_CASE("truncated geometric matches the DVGM closed form") {
  // DVGM 2022 Theorem 1: for 1 <= n <= n*, π(n) = δ·(e^(nε) − 1)/(e^ε − 1),
  // n* = 1 + floor((1/ε)·ln((e^ε + 2δ − 1)/((e^ε + 1)·δ))). ε = 1, δ = 1e-5
  // gives n* = 1 + floor(ln((e + 2e-5 − 1)/((e + 1)·1e-5))) = 1 + floor(10.74) = 11.
  const double eps = 1, del = 1e-5;
  auto ps = PartitionSelection::Build(eps, del, 1);
  REQUIRE(ps.ok());
  const int64_t n_star =
      1 + static_cast<int64_t>(std::floor(
              std::log((std::exp(eps) + 2 * del - 1) / ((std::exp(eps) + 1) * del)) / eps));
  CHECK(n_star == 11);
  for (int64_t n = 1; n <= n_star; ++n) {
    const double closed = del * std::expm1(n * eps) / std::expm1(eps);
    // The library shaves δ by a relative 1e-6 for floating-point safety.
    CHECK(ps->KeepProbability(n) == Approx(closed).epsilon(2e-6));
  }
  // Beyond n*, symmetric: 1 − π(n*+j) follows the mirrored recursion, and
  // π reaches 1 at 2n* or 2n* + 1.
  CHECK(ps->AlwaysKeptFrom() >= 2 * n_star);
  CHECK(ps->AlwaysKeptFrom() <= 2 * n_star + 2);
  CHECK(ps->Threshold() == n_star + 1);
}

TEST_CASE("Laplace thresholding threshold matches a hand derivation") {
  // ε = 1, δ = 1e-5, k = 1: discrete Laplace α = e^-1; the smallest τ with
  // α^(τ−1)/(1+α) <= 1e-5 is τ − 1 = ceil(ln(1e-5·(1 + e^-1))/(−1)) = ceil(11.2) = 12.
  auto ps = PartitionSelection::Build(1, 1e-5, 1, PartitionRule::kLaplaceThreshold);
  REQUIRE(ps.ok());
  CHECK(ps->KeepProbability(1) <= 1e-5);
  CHECK(ps->KeepProbability(1) > 1e-5 * std::exp(-1.0));  // τ is the smallest
  CHECK(ps->Threshold() == 13);                           // P(n + Z >= 13) >= 1/2 iff n >= 13
  CHECK(ps->Describe().find(">= 13") != std::string::npos);
  // k = 4, ε = 1, δ = 1e-6: per-group p* = 1 − (1 − 1e-6)^(1/4) ≈ 2.5e-7, scale 4:
  // τ = 1 + ceil(ln(p*·(1 + e^-0.25))/(−0.25)) = 60 (computed with Python).
  auto k4 = PartitionSelection::Build(1, 1e-6, 4, PartitionRule::kLaplaceThreshold);
  REQUIRE(k4.ok());
  const double p1 = k4->KeepProbability(1);
  CHECK(1 - std::pow(1 - p1, 4) <= 1e-6);
  CHECK(k4->Describe().find(">= 60") != std::string::npos);
}

TEST_CASE("truncated geometric dominates Laplace thresholding") {
  // DVGM 2022 prove optimality: for the same (ε, δ, k) the truncated
  // geometric keeps every group at least as often.
  for (int64_t k : {1, 3}) {
    auto tg = PartitionSelection::Build(1, 1e-6, k);
    auto lt = PartitionSelection::Build(1, 1e-6, k, PartitionRule::kLaplaceThreshold);
    REQUIRE(tg.ok());
    REQUIRE(lt.ok());
    for (int64_t n = 1; n < 200; ++n) {
      INFO("k " << k << " n " << n);
      CHECK(tg->KeepProbability(n) >= lt->KeepProbability(n) * (1 - 1e-6));
    }
  }
}

TEST_CASE("partition selection Keep draws at the stated probability") {
  RandomSource& rng = SecureRandom();
  constexpr int64_t kDraws = 400'000;
  for (PartitionRule rule :
       {PartitionRule::kTruncatedGeometric, PartitionRule::kLaplaceThreshold}) {
    auto ps = PartitionSelection::Build(1, 1e-5, 1, rule);
    REQUIRE(ps.ok());
    const int64_t n = ps->Threshold();
    const double p = ps->KeepProbability(n);
    int64_t kept = 0;
    for (int64_t i = 0; i < kDraws; ++i) kept += ps->Keep(n, rng);
    // Bernstein, variance p(1−p), bound 1, failure 1e-7 per rule.
    CHECK(std::fabs(static_cast<double>(kept) / kDraws - p) <
          BernsteinHalfWidth(kDraws, p * (1 - p), 1, 1e-7));
    // A one-unit group: kept with probability <= 1e-5; 400000 draws see it
    // at most 4 + Bernstein margin times; zero-unit groups never.
    int64_t kept_one = 0;
    for (int64_t i = 0; i < kDraws; ++i) kept_one += ps->Keep(1, rng);
    CHECK(static_cast<double>(kept_one) / kDraws <
          1e-5 + BernsteinHalfWidth(kDraws, 1e-5, 1, 1e-7));
    CHECK_FALSE(ps->Keep(0, rng));
    CHECK_FALSE(ps->Keep(-5, rng));
  }
}

TEST_CASE("partition selection Build validates its parameters") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_FALSE(PartitionSelection::Build(0, 1e-5, 1).ok());
  CHECK_FALSE(PartitionSelection::Build(nan, 1e-5, 1).ok());
  CHECK_FALSE(PartitionSelection::Build(1, 0, 1).ok());
  CHECK_FALSE(PartitionSelection::Build(1, 1, 1).ok());
  CHECK_FALSE(PartitionSelection::Build(1, 1e-5, 0).ok());
  CHECK_FALSE(PartitionSelection::Build(1, 1e-5, -1, PartitionRule::kLaplaceThreshold).ok());
}
