// Statistical thresholds for the mechanism tests. Every threshold is derived
// from the distribution under test and a stated failure probability; no test
// retries.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "dpgate/mechanisms/gaussian_calibration.h"

namespace dpgate::mechanisms::testing {

// Upper critical value of the chi-square distribution with `dof` degrees of
// freedom at tail probability `p`, by the Wilson–Hilferty cube approximation
// (Wilson & Hilferty 1931): χ² ≈ k·(1 − 2/(9k) + z·√(2/(9k)))³, z = Φ⁻¹(1−p).
// At p = 1e-7 the approximation is conservative: the exact tail probability
// at the returned value is below 1e-7 for every k from 2 to 500 (checked with
// mpmath's regularised incomplete gamma: 1.5e-8 at k=2, 9.8e-8 at k=500), so
// a test at p = 1e-7 fails by chance with probability < 1e-7.
inline double ChiSquareCritical(int dof, double p) {
  const double k = dof;
  const double z = StandardNormalQuantile(1 - p);
  const double c = 1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k));
  return k * c * c * c;
}

// Two-sided Bernstein bound: for n i.i.d. variables with variance `variance`
// and |X − E X| <= bound, P(|mean − E X| >= t) <= 2·exp(−n t² / (2v + 2bt/3)).
// Returns the t at which that probability equals `failure`.
inline double BernsteinHalfWidth(double n, double variance, double bound, double failure) {
  const double l = std::log(2 / failure);
  // n t² − (2 b l / 3) t − 2 v l = 0
  const double b = 2 * bound * l / 3;
  return (b + std::sqrt(b * b + 8 * n * variance * l)) / (2 * n);
}

struct ChiSquareResult {
  double statistic = 0;
  int dof = 0;
};

// Pearson's statistic of integer samples against a PMF: every integer with
// expected count >= 5 is its own bin; everything else is one "rest" bin,
// merged into the nearest bin if its expected count is < 5.
inline ChiSquareResult ChiSquare(const std::map<int64_t, int64_t>& counts, int64_t n,
                                 const std::function<double(int64_t)>& pmf, int64_t centre) {
  std::vector<int64_t> zs;
  // Expand from the mode outwards while each value's expected count is >= 5.
  int64_t lo = centre, hi = centre;
  while (n * pmf(lo - 1) >= 5) --lo;
  while (n * pmf(hi + 1) >= 5) ++hi;
  double stat = 0, central_mass = 0;
  int64_t central_count = 0;
  std::vector<std::pair<double, double>> bins;  // (observed, expected)
  for (int64_t z = lo; z <= hi; ++z) {
    const double e = n * pmf(z);
    const auto it = counts.find(z);
    const double o = it == counts.end() ? 0 : static_cast<double>(it->second);
    bins.emplace_back(o, e);
    central_mass += pmf(z);
    central_count += static_cast<int64_t>(o);
  }
  const double rest_expected = n * (1 - central_mass);
  const double rest_observed = static_cast<double>(n - central_count);
  if (rest_expected >= 5) {
    bins.emplace_back(rest_observed, rest_expected);
  } else {
    bins.back().first += rest_observed;
    bins.back().second += rest_expected;
  }
  for (const auto& [o, e] : bins) stat += (o - e) * (o - e) / e;
  return ChiSquareResult{stat, static_cast<int>(bins.size()) - 1};
}

// Multiplicative Chernoff bound for a binomial count with mean μ:
// P(|X − μ| >= r·μ) <= 2·exp(−r²μ/3) for r <= 1. Returns r at `failure`.
inline double ChernoffRelativeError(double mu, double failure) {
  return std::sqrt(3 * std::log(2 / failure) / mu);
}

}  // namespace dpgate::mechanisms::testing
