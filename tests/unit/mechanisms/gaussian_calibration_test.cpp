#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "dpgate/mechanisms/gaussian_calibration.h"

using namespace dpgate::mechanisms;

namespace {

// Balle & Wang 2018, Algorithm 1, written independently of the library's
// bisection on σ: bisection on v (or u) of B⁺/B⁻, then σ = α·Δ/√(2ε).
double BalleWangAlgorithm1(double epsilon, double delta, double sens) {
  auto phi = StandardNormalCdf;
  const double delta0 = phi(0) - std::exp(epsilon) * phi(-std::sqrt(2 * epsilon));
  auto b_plus = [&](double v) {
    return phi(std::sqrt(epsilon * v)) - std::exp(epsilon) * phi(-std::sqrt(epsilon * (v + 2)));
  };
  auto b_minus = [&](double u) {
    return phi(-std::sqrt(epsilon * u)) - std::exp(epsilon) * phi(-std::sqrt(epsilon * (u + 2)));
  };
  double alpha;
  if (delta >= delta0) {
    // v* = sup{v >= 0 : B⁺(v) <= δ}; B⁺ increasing.
    double lo = 0, hi = 1;
    while (b_plus(hi) <= delta) hi *= 2;
    for (int i = 0; i < 200; ++i) {
      const double mid = (lo + hi) / 2;
      (b_plus(mid) <= delta ? lo : hi) = mid;
    }
    alpha = std::sqrt(1 + lo / 2) - std::sqrt(lo / 2);
  } else {
    // u* = inf{u >= 0 : B⁻(u) <= δ}; B⁻ decreasing.
    double lo = 0, hi = 1;
    while (b_minus(hi) > delta) hi *= 2;
    for (int i = 0; i < 200; ++i) {
      const double mid = (lo + hi) / 2;
      (b_minus(mid) <= delta ? hi : lo) = mid;
    }
    alpha = std::sqrt(1 + hi / 2) + std::sqrt(hi / 2);
  }
  return alpha * sens / std::sqrt(2 * epsilon);
}

}  // namespace

TEST_CASE("analytic Gaussian sigma matches independently computed values") {
  // Reference σ computed with mpmath at 40 digits by bisection on Balle &
  // Wang 2018 Theorem 8 (Δ = 1):
  //   ε=1,   δ=1e-5  → 3.73063163481594
  //   ε=0.1, δ=1e-6  → 36.3046904261958
  //   ε=2,   δ=1e-8  → 2.65292676805583
  //   ε=0.5, δ=1e-10 → 11.436239995092
  struct Case {
    double epsilon, delta, sigma;
  };
  for (const Case c : {Case{1, 1e-5, 3.73063163481594}, Case{0.1, 1e-6, 36.3046904261958},
                       Case{2, 1e-8, 2.65292676805583}, Case{0.5, 1e-10, 11.436239995092}}) {
    INFO("epsilon " << c.epsilon << " delta " << c.delta);
    auto sigma = AnalyticGaussianSigma(c.epsilon, c.delta, 1);
    REQUIRE(sigma.ok());
    CHECK(*sigma == Approx(c.sigma).epsilon(1e-9));
    CHECK(*sigma == Approx(BalleWangAlgorithm1(c.epsilon, c.delta, 1)).epsilon(1e-8));
    // Sensitivity scales σ linearly.
    auto scaled = AnalyticGaussianSigma(c.epsilon, c.delta, 7.5);
    REQUIRE(scaled.ok());
    CHECK(*scaled == Approx(7.5 * *sigma).epsilon(1e-12));
  }
}

TEST_CASE("analytic Gaussian sigma satisfies the Balle-Wang condition tightly") {
  for (double epsilon : {0.01, 0.3, 1.0, 3.0, 10.0}) {
    for (double delta : {1e-3, 1e-6, 1e-9, 1e-12}) {
      INFO("epsilon " << epsilon << " delta " << delta);
      auto sigma = AnalyticGaussianSigma(epsilon, delta, 2.0);
      REQUIRE(sigma.ok());
      const double achieved = GaussianDelta(*sigma, epsilon, 2.0);
      CHECK(achieved <= delta);
      CHECK(achieved >= delta * (1 - 1e-9));
      // The classic bound is valid (and looser) for ε < 1.
      if (epsilon < 1) CHECK(ClassicGaussianSigma(epsilon, delta, 2.0) >= *sigma);
    }
  }
}

TEST_CASE("analytic Gaussian sigma rejects bad parameters") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_FALSE(AnalyticGaussianSigma(0, 1e-6, 1).ok());
  CHECK_FALSE(AnalyticGaussianSigma(nan, 1e-6, 1).ok());
  CHECK_FALSE(AnalyticGaussianSigma(inf, 1e-6, 1).ok());
  CHECK_FALSE(AnalyticGaussianSigma(1, 0, 1).ok());
  CHECK_FALSE(AnalyticGaussianSigma(1, 1, 1).ok());
  CHECK_FALSE(AnalyticGaussianSigma(1, nan, 1).ok());
  CHECK_FALSE(AnalyticGaussianSigma(1, 1e-6, 0).ok());
  CHECK_FALSE(AnalyticGaussianSigma(1, 1e-6, -1).ok());
  CHECK_FALSE(AnalyticGaussianSigma(1, 1e-6, inf).ok());
}

TEST_CASE("standard normal quantile inverts the CDF") {
  CHECK(StandardNormalQuantile(0.975) == Approx(1.959963984540054).epsilon(1e-12));
  CHECK(StandardNormalQuantile(0.5) == Approx(0.0).margin(1e-14));
  CHECK(StandardNormalQuantile(1 - 1e-7) == Approx(5.199337582192817).epsilon(1e-10));
}
