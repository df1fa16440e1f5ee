#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>

#include "dpgate/mechanisms/discrete_laplace.h"
#include "stats.h"

using namespace dpgate::mechanisms;
using namespace dpgate::mechanisms::testing;

namespace {

// Exact moments of the discrete Laplace from its PMF (|z| up to 60·scale).
struct Moments {
  double m2 = 0, m4 = 0;
};
Moments ExactMoments(const DiscreteLaplace& dl) {
  Moments m;
  const int64_t limit = static_cast<int64_t>(60 * dl.scale()) + 60;
  for (int64_t z = -limit; z <= limit; ++z) {
    const double p = dl.Pmf(z), zz = static_cast<double>(z) * z;
    m.m2 += p * zz;
    m.m4 += p * zz * zz;
  }
  return m;
}

void CheckDistribution(double scale) {
  INFO("scale " << scale);
  auto dl = DiscreteLaplace::BuildWithScale(scale);
  REQUIRE(dl.ok());
  RandomSource& rng = SecureRandom();
  constexpr int64_t kDraws = 1'000'000;
  std::map<int64_t, int64_t> counts;
  double sum = 0, sum_sq = 0;
  int64_t max_abs = 0;
  for (int64_t i = 0; i < kDraws; ++i) {
    const int64_t z = dl->Sample(rng);
    ++counts[z];
    sum += static_cast<double>(z);
    sum_sq += static_cast<double>(z) * static_cast<double>(z);
    max_abs = std::max(max_abs, z < 0 ? -z : z);
  }
  // Distribution: Pearson chi-square at p = 1e-7 (stats.h).
  const auto r = ChiSquare(
      counts, kDraws, [&](int64_t z) { return dl->Pmf(z); }, 0);
  CHECK(r.statistic < ChiSquareCritical(r.dof, 1e-7));

  // Mean and variance. Truncation: P(|Z| > T) = 2α^(T+1)/(1+α) <= 2e^(−T/b);
  // with T = 40·b that is < 1e-17 per draw, < 1e-11 over all draws. On that
  // event Z and Z² are bounded, and Bernstein (stats.h) at failure 1e-7 each
  // gives the thresholds. Total failure probability < 3e-7.
  const Moments m = ExactMoments(*dl);
  const double bound = std::ceil(40 * scale);
  REQUIRE(max_abs <= bound);
  CHECK(m.m2 == Approx(dl->Variance()).epsilon(1e-9));
  CHECK(std::fabs(sum / kDraws) < BernsteinHalfWidth(kDraws, m.m2, bound, 1e-7));
  CHECK(std::fabs(sum_sq / kDraws - m.m2) <
        BernsteinHalfWidth(kDraws, m.m4 - m.m2 * m.m2, bound * bound, 1e-7));
}

}  // namespace

TEST_CASE("discrete Laplace matches its PMF and its mean and variance") {
  CheckDistribution(1.0);  // ε = 1, Δ = 1
  CheckDistribution(3.7);  // a scale with a non-trivial rational form
  CheckDistribution(0.3);  // small scale: most mass at 0
}

TEST_CASE("discrete Laplace: neighbouring outputs differ by at most e^ε") {
  // ε = 0.7, Δ = 2: outputs for true values 0 and 2. For every bucket z with
  // expected count μ >= 20000 under both, the observed counts are within a
  // relative r = ChernoffRelativeError(μ, 1e-9) of μ (Chernoff; at most 60
  // buckets × 2 counts, failure < 1.2e-7), so the observed log-ratio is
  // within ln((1+r)/(1−r)) of the true one, which is at most ε = 0.7.
  const double epsilon = 0.7;
  auto dl = DiscreteLaplace::Build(epsilon, Sensitivity{2, 1});
  REQUIRE(dl.ok());
  RandomSource& rng = SecureRandom();
  constexpr int64_t kDraws = 1'000'000;
  std::map<int64_t, int64_t> a, b;
  for (int64_t i = 0; i < kDraws; ++i) {
    ++a[dl->AddNoise(0, rng)];
    ++b[dl->AddNoise(2, rng)];
  }
  double worst = 0;
  int buckets = 0;
  for (int64_t z = -60; z <= 60; ++z) {
    const double mu_a = kDraws * dl->Pmf(z), mu_b = kDraws * dl->Pmf(z - 2);
    const double mu = std::min(mu_a, mu_b);
    if (mu < 20000) continue;
    ++buckets;
    const double r = ChernoffRelativeError(mu, 1e-9);
    const double ratio = std::fabs(std::log(static_cast<double>(a[z]) / b[z]));
    CHECK(ratio <= epsilon + std::log((1 + r) / (1 - r)));
    worst = std::max(worst, ratio);
  }
  CHECK(buckets >= 5);
  // The mechanism is not over-noised either: outside the interval [0, 2] the
  // true log-ratio is exactly ε, so some bucket comes close to it.
  CHECK(worst > epsilon - 0.1);
}

TEST_CASE("discrete Laplace Build validates its parameters") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_FALSE(DiscreteLaplace::Build(0, Sensitivity{1, 1}).ok());
  CHECK_FALSE(DiscreteLaplace::Build(-1, Sensitivity{1, 1}).ok());
  CHECK_FALSE(DiscreteLaplace::Build(nan, Sensitivity{1, 1}).ok());
  CHECK_FALSE(DiscreteLaplace::Build(inf, Sensitivity{1, 1}).ok());
  CHECK_FALSE(DiscreteLaplace::Build(1, Sensitivity{0, 1}).ok());
  CHECK_FALSE(DiscreteLaplace::Build(1, Sensitivity{-2, 1}).ok());
  CHECK_FALSE(DiscreteLaplace::Build(1, Sensitivity{nan, 1}).ok());
  CHECK_FALSE(DiscreteLaplace::Build(1, Sensitivity{inf, 1}).ok());
  CHECK_FALSE(DiscreteLaplace::Build(1, Sensitivity{1, 0}).ok());
  CHECK_FALSE(DiscreteLaplace::BuildWithScale(0).ok());
  CHECK_FALSE(DiscreteLaplace::BuildWithScale(1e300).ok());
  auto ok = DiscreteLaplace::Build(0.5, Sensitivity{3, 4});
  REQUIRE(ok.ok());
  // L1 = k·Δ = 12; scale = L1/ε, never rounded down.
  CHECK(ok->scale() >= 24.0);
  CHECK(ok->scale() == Approx(24.0).epsilon(1e-15));
  CHECK(ok->EpsilonFor(12) <= 0.5);
}

TEST_CASE("discrete Laplace confidence half-width is the exact quantile") {
  for (double scale : {0.3, 1.0, 5.5, 1000.0}) {
    auto dl = DiscreteLaplace::BuildWithScale(scale);
    REQUIRE(dl.ok());
    for (double level : {0.5, 0.95, 0.99}) {
      INFO("scale " << scale << " level " << level);
      const double w = dl->ConfidenceHalfWidth(level);
      // Sum the PMF: coverage at w reaches the level, at w − 1 it does not.
      auto coverage = [&](double width) {
        double c = 0;
        for (int64_t z = -static_cast<int64_t>(width); z <= static_cast<int64_t>(width); ++z) {
          c += dl->Pmf(z);
        }
        return c;
      };
      CHECK(coverage(w) >= level - 1e-12);
      if (w > 0) CHECK(coverage(w - 1) < level + 1e-12);
    }
  }
}

TEST_CASE("discrete Laplace: a seeded source gives a reproducible stream") {
  auto dl = DiscreteLaplace::BuildWithScale(2.5);
  REQUIRE(dl.ok());
  DeterministicRandomSource a(7), b(7);
  for (int i = 0; i < 1000; ++i) REQUIRE(dl->Sample(a) == dl->Sample(b));
}

TEST_CASE("discrete Laplace AddNoise saturates instead of overflowing") {
  auto dl = DiscreteLaplace::BuildWithScale(1e6);
  REQUIRE(dl.ok());
  RandomSource& rng = SecureRandom();
  for (int i = 0; i < 1000; ++i) {
    const int64_t v = dl->AddNoise(std::numeric_limits<int64_t>::max(), rng);
    REQUIRE(v > std::numeric_limits<int64_t>::max() - 100'000'000);
  }
}
