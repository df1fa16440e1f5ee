// Budget split, composition and the estimators built on noisy values.
#include <catch2/catch.hpp>

#include <cmath>

#include "dpgate/mechanisms/budget_split.h"
#include "dpgate/mechanisms/composition.h"
#include "dpgate/mechanisms/discrete_laplace.h"
#include "dpgate/mechanisms/estimators.h"
#include "stats.h"

using namespace dpgate::mechanisms;
using namespace dpgate::mechanisms::testing;

TEST_CASE("budget split: Laplace gives delta to partition selection only") {
  auto s = BudgetSplit::Build(1.0, 1e-6, 3, true, NoiseKind::kLaplace);
  REQUIRE(s.ok());
  CHECK(s->selection().epsilon == Approx(0.25));
  CHECK(s->per_aggregate().epsilon == Approx(0.25));
  CHECK(s->selection().delta == 1e-6);
  CHECK(s->per_aggregate().delta == 0);
  CHECK(s->total().epsilon == Approx(1.0).epsilon(1e-15));
  CHECK(s->total().delta == 1e-6);
  // Configurable share.
  auto share = BudgetSplit::Build(1.0, 1e-6, 2, true, NoiseKind::kLaplace, 0.5);
  REQUIRE(share.ok());
  CHECK(share->selection().epsilon == Approx(0.5));
  CHECK(share->per_aggregate().epsilon == Approx(0.25));
  // No selection: δ is not spent.
  auto none = BudgetSplit::Build(1.0, 1e-6, 2, false, NoiseKind::kLaplace);
  REQUIRE(none.ok());
  CHECK(none->per_aggregate().epsilon == Approx(0.5));
  CHECK(none->total().delta == 0);
  CHECK(BudgetSplit::Build(1.0, 0, 2, false, NoiseKind::kLaplace).ok());
}

TEST_CASE("budget split: Gaussian halves delta between selection and aggregates") {
  auto s = BudgetSplit::Build(2.0, 1e-6, 4, true, NoiseKind::kGaussian);
  REQUIRE(s.ok());
  CHECK(s->selection().delta == Approx(5e-7));
  CHECK(s->per_aggregate().delta == Approx(1.25e-7));
  CHECK(s->total().delta == Approx(1e-6));
  CHECK(s->total().epsilon == Approx(2.0));
  auto only_selection = BudgetSplit::Build(1.0, 1e-6, 0, true, NoiseKind::kGaussian);
  REQUIRE(only_selection.ok());
  CHECK(only_selection->selection().epsilon == 1.0);
  CHECK(only_selection->selection().delta == 1e-6);
}

TEST_CASE("budget split rejects impossible requests") {
  CHECK_FALSE(BudgetSplit::Build(0, 1e-6, 1, true, NoiseKind::kLaplace).ok());
  CHECK_FALSE(BudgetSplit::Build(1, 1.0, 1, true, NoiseKind::kLaplace).ok());
  CHECK_FALSE(BudgetSplit::Build(1, 0, 1, true, NoiseKind::kLaplace).ok());    // selection needs δ
  CHECK_FALSE(BudgetSplit::Build(1, 0, 1, false, NoiseKind::kGaussian).ok());  // Gaussian needs δ
  CHECK_FALSE(BudgetSplit::Build(1, 1e-6, 0, false, NoiseKind::kLaplace).ok());
  CHECK_FALSE(BudgetSplit::Build(1, 1e-6, 2, true, NoiseKind::kLaplace, 1.0).ok());
  CHECK_FALSE(BudgetSplit::Build(1, 1e-6, 2, true, NoiseKind::kLaplace, 0.0).ok());
}

TEST_CASE("composition: basic and zCDP with the conversions") {
  const PrivacyLoss total = ComposeBasic({{0.5, 1e-7}, {0.25, 0}, {0.25, 3e-7}});
  CHECK(total.epsilon == Approx(1.0));
  CHECK(total.delta == Approx(4e-7));
  CHECK(GaussianRho(2, 4) == Approx(0.125));
  CHECK(PureDpRho(0.5) == Approx(0.125));
  // Bun–Steinke: ρ = 0.5, δ = 1e-5 → 0.5 + 2√(0.5·ln 1e5) = 5.298...
  CHECK(RhoToEpsilonBunSteinke(0.5, 1e-5) ==
        Approx(0.5 + 2 * std::sqrt(0.5 * std::log(1e5))).epsilon(1e-12));
  for (double rho : {1e-4, 0.01, 0.5, 3.0}) {
    for (double delta : {1e-3, 1e-6, 1e-10}) {
      INFO("rho " << rho << " delta " << delta);
      const double bs = RhoToEpsilonBunSteinke(rho, delta);
      const double cks = RhoToEpsilonCks(rho, delta);
      // On these parameters CKS is no looser than BS16, and positive.
      CHECK(cks <= bs * (1 + 1e-9));
      CHECK(cks > 0);
      auto eps = RhoToEpsilon(rho, delta);
      REQUIRE(eps.ok());
      CHECK(*eps >= cks);
      CHECK(*eps <= cks * (1 + 1e-11));
    }
  }
  // The reason for zCDP: 10 Gaussian releases at σ calibrated for ρ = 0.01
  // each compose to ρ = 0.1, cheaper than 10 × their individual (ε, δ).
  auto each = RhoToEpsilon(0.01, 1e-7);
  auto together = RhoToEpsilon(0.1, 1e-6);
  REQUIRE(each.ok());
  REQUIRE(together.ok());
  CHECK(*together < 10 * *each);
  CHECK_FALSE(RhoToEpsilon(-1, 1e-6).ok());
  CHECK_FALSE(RhoToEpsilon(1, 0).ok());
  CHECK(*RhoToEpsilon(0, 1e-6) == 0.0);
}

TEST_CASE("estimators clamp into the feasible range") {
  const Estimate c = EstimateCount(-3.0, 2.0);
  CHECK(c.value == 0.0);
  // AVG over [0, 100]: midpoint 50, r = 50.
  const Estimate avg = EstimateAverage(400.0, 30.0, 20.0, 4.0, 0, 100);
  CHECK(avg.value == Approx(70.0));
  CHECK(avg.half_width == Approx((30 + 50 * 4) / 20.0));
  CHECK(EstimateAverage(5000.0, 1, 10.0, 1, 0, 100).value == 100.0);
  CHECK(EstimateAverage(-5000.0, 1, 10.0, 1, 0, 100).value == 0.0);
  CHECK(EstimateAverage(1.0, 1, -2.0, 1, 0, 100).value == 50.0);
  CHECK(EstimateAverage(1.0, 1, -2.0, 1, 0, 100).half_width == 100.0);
  const Estimate var = EstimateVariance(0, 1, -50, 1, 10, 1, 0, 100);
  CHECK(var.value == 0.0);
  CHECK(EstimateVariance(0, 1, 1e9, 1, 10, 1, 0, 100).value == 2500.0);
  const Estimate sd = EstimateStddev(0, 1, 1e9, 1, 10, 1, 0, 100);
  CHECK(sd.value == 50.0);
  CHECK(sd.half_width <= 50.0);
  CHECK(PerInputLevel(0.95, 2) == Approx(0.975));
}

TEST_CASE("AVG and VARIANCE error bounds cover the truth at their level") {
  // 1000 units with values on [0, 10] (deterministic data), true AVG and
  // population VARIANCE known. Each release uses discrete Laplace noise at
  // scales typical of ε = 1 with sensitivity 5 (centred sum) and 1 (count);
  // each half-width is computed at PerInputLevel(0.95, parts). Over 20000
  // releases the miss rate must stay <= 0.05 + Bernstein margin (failure 1e-7).
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) values.push_back((i * 37 % 101) / 10.0);
  const double lower = 0, upper = 10, mid = 5, r = 5;
  double s = 0, q = 0;
  for (double v : values) {
    s += v - mid;
    q += (v - mid) * (v - mid);
  }
  const double n = static_cast<double>(values.size());
  const double true_avg = mid + s / n;
  const double true_var = q / n - (s / n) * (s / n);
  // Integer-valued noise on sums scaled by 1000 keeps everything exact.
  auto sum_noise = DiscreteLaplace::BuildWithScale(5.0 * 1000);
  auto sq_noise = DiscreteLaplace::BuildWithScale(25.0 * 1000);
  auto count_noise = DiscreteLaplace::BuildWithScale(1.0);
  REQUIRE(sum_noise.ok());
  REQUIRE(sq_noise.ok());
  REQUIRE(count_noise.ok());
  RandomSource& rng = SecureRandom();
  constexpr int kReleases = 20'000;
  int avg_miss = 0, var_miss = 0;
  for (int i = 0; i < kReleases; ++i) {
    const double ns = s + sum_noise->Sample(rng) / 1000.0;
    const double nq = q + sq_noise->Sample(rng) / 1000.0;
    const double nc = n + static_cast<double>(count_noise->Sample(rng));
    const double l2 = PerInputLevel(0.95, 2), l3 = PerInputLevel(0.95, 3);
    const Estimate a = EstimateAverage(ns, sum_noise->ConfidenceHalfWidth(l2) / 1000.0, nc,
                                       count_noise->ConfidenceHalfWidth(l2), lower, upper);
    avg_miss += std::fabs(a.value - true_avg) > a.half_width;
    const Estimate v = EstimateVariance(ns, sum_noise->ConfidenceHalfWidth(l3) / 1000.0, nq,
                                        sq_noise->ConfidenceHalfWidth(l3) / 1000.0, nc,
                                        count_noise->ConfidenceHalfWidth(l3), lower, upper);
    var_miss += std::fabs(v.value - true_var) > v.half_width;
  }
  (void)r;
  const double t = BernsteinHalfWidth(kReleases, 0.05 * 0.95, 1, 1e-7);
  CHECK(static_cast<double>(avg_miss) / kReleases <= 0.05 + t);
  CHECK(static_cast<double>(var_miss) / kReleases <= 0.05 + t);
}
