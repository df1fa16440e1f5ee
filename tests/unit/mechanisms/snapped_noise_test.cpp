#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "dpgate/mechanisms/snapped_noise.h"
#include "stats.h"

using namespace dpgate::mechanisms;
using namespace dpgate::mechanisms::testing;

TEST_CASE("snapped noise outputs lie on the power-of-two grid") {
  RandomSource& rng = SecureRandom();
  auto lap = SnappedNoise::BuildLaplace(0.5, Sensitivity{1000, 2});
  auto gau = SnappedNoise::BuildGaussian(0.5, 1e-6, Sensitivity{1000, 2});
  REQUIRE(lap.ok());
  REQUIRE(gau.ok());
  for (const SnappedNoise* n : {&*lap, &*gau}) {
    const double g = n->granularity();
    int exp = 0;
    REQUIRE(std::frexp(g, &exp) == 0.5);  // a power of two
    // Automatic granularity: ~2^-20 of min(Δ, scale).
    CHECK(g <= 1000 * 0x1.0p-20);
    CHECK(g > 1000 * 0x1.0p-22);
    for (int i = 0; i < 10000; ++i) {
      const double out = n->AddNoise(123456.789012345, rng);
      REQUIRE(std::fmod(out, g) == 0.0);
    }
  }
}

TEST_CASE("snapped noise: inputs differing in low-order bits give identical draws") {
  // With a shared seed, v and a value differing only below the grid produce
  // bit-identical outputs: nothing in the output depends on the low bits.
  auto n = SnappedNoise::BuildLaplace(1.0, Sensitivity{1, 1});
  REQUIRE(n.ok());
  const double g = n->granularity();
  const double v = 0.1;  // not on the grid
  const double v2 = std::nextafter(v, 1.0);
  const double v3 = v + g / 8;  // same nearest grid point as v?
  REQUIRE(std::round(v / g) == std::round(v2 / g));
  const bool same_cell = std::round(v / g) == std::round(v3 / g);
  DeterministicRandomSource a(1), b(1), c(1);
  for (int i = 0; i < 10000; ++i) {
    const double x = n->AddNoise(v, a);
    REQUIRE(x == n->AddNoise(v2, b));
    if (same_cell) REQUIRE(x == n->AddNoise(v3, c));
  }
}

TEST_CASE("snapped Laplace: neighbouring outputs differ by at most e^epsilon") {
  // Real values 0.3 and 0.3 + Δ with Δ = 1.7 (the worst-case shift), ε = 1.
  // Outputs are bucketed into intervals of width 0.5: post-processing, so the
  // bucket probabilities keep the e^ε bound. A bucket is used when both
  // observed counts are >= 25000; by Chernoff a bucket with mean μ < 20000
  // reaches 25000 with probability < exp(−0.0625·20000/3) < 1e-9, so used
  // buckets have μ >= 20000 and each count is within the relative error
  // r = ChernoffRelativeError(20000, 1e-9) of its mean. At most ~80 buckets:
  // total failure probability < 2e-7.
  const double epsilon = 1.0, sens = 1.7;
  auto n = SnappedNoise::BuildLaplace(epsilon, Sensitivity{sens, 1});
  REQUIRE(n.ok());
  const auto& dl = std::get<DiscreteLaplace>(n->grid_noise());
  // The grid scale is calibrated to floor(Δ/g) + 1 grid steps.
  CHECK(dl.EpsilonFor(std::floor(sens / n->granularity()) + 1) <= epsilon);
  CHECK(n->scale() == Approx(sens / epsilon).epsilon(1e-5));
  RandomSource& rng = SecureRandom();
  constexpr int64_t kDraws = 1'000'000;
  std::map<int64_t, int64_t> a, b;
  for (int64_t i = 0; i < kDraws; ++i) {
    ++a[static_cast<int64_t>(std::floor(n->AddNoise(0.3, rng) / 0.5))];
    ++b[static_cast<int64_t>(std::floor(n->AddNoise(0.3 + sens, rng) / 0.5))];
  }
  double worst = 0;
  int used = 0;
  for (const auto& [bucket, count_a] : a) {
    const auto it = b.find(bucket);
    if (it == b.end()) continue;
    const double lo = std::min<double>(count_a, it->second);
    if (lo < 25000) continue;
    const double r = ChernoffRelativeError(20000, 1e-9);
    const double ratio = std::fabs(std::log(static_cast<double>(count_a) / it->second));
    CHECK(ratio <= epsilon + std::log((1 + r) / (1 - r)));
    worst = std::max(worst, ratio);
    ++used;
  }
  CHECK(used >= 4);
  CHECK(worst > 0.5);  // the noise is not absurdly large either
}

TEST_CASE("snapped noise moments and half-width in the value's units") {
  auto n = SnappedNoise::BuildGaussian(1.0, 1e-5, Sensitivity{10, 1});
  REQUIRE(n.ok());
  const double sigma = n->scale();
  CHECK(sigma == Approx(10 * 3.7306).epsilon(0.03));
  CHECK(n->Variance() == Approx(sigma * sigma).epsilon(1e-9));
  RandomSource& rng = SecureRandom();
  constexpr int64_t kDraws = 200'000;
  int64_t inside = 0;
  const double w = n->ConfidenceHalfWidth(0.95);
  for (int64_t i = 0; i < kDraws; ++i) inside += std::fabs(n->AddNoise(50.0, rng) - 50.0) <= w;
  // Coverage >= 0.95 by construction; Bernstein (variance <= 0.25, bound 1)
  // at failure 1e-7 allows the empirical coverage to fall below by t.
  const double t = BernsteinHalfWidth(kDraws, 0.25, 1, 1e-7);
  CHECK(static_cast<double>(inside) / kDraws >= 0.95 - t);
  CHECK(static_cast<double>(inside) / kDraws <= 0.96 + t);  // and not too wide
}

TEST_CASE("snapped noise Build validates its parameters") {
  CHECK_FALSE(SnappedNoise::BuildLaplace(1, Sensitivity{1, 1}, 0.3).ok());  // not a power of 2
  CHECK_FALSE(SnappedNoise::BuildLaplace(1, Sensitivity{1, 1}, -0.5).ok());
  CHECK_FALSE(SnappedNoise::BuildLaplace(0, Sensitivity{1, 1}).ok());
  CHECK_FALSE(SnappedNoise::BuildLaplace(1, Sensitivity{0, 1}).ok());
  CHECK_FALSE(SnappedNoise::BuildGaussian(1, 0, Sensitivity{1, 1}).ok());
  CHECK_FALSE(SnappedNoise::BuildGaussian(1, 1.5, Sensitivity{1, 1}).ok());
  auto explicit_grid = SnappedNoise::BuildLaplace(1, Sensitivity{1, 1}, 0.25);
  REQUIRE(explicit_grid.ok());
  CHECK(explicit_grid->granularity() == 0.25);
  // Δ = 1 on a 0.25 grid: 5 grid steps (floor(4) + 1), scale 5 steps.
  CHECK(explicit_grid->scale() == Approx(1.25).epsilon(1e-12));
  CHECK(PowerOfTwoAtMost(3.0) == 2.0);
  CHECK(PowerOfTwoAtMost(4.0) == 4.0);
  CHECK(PowerOfTwoAtMost(0.3) == 0.25);
}
