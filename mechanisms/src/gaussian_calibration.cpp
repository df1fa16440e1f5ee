#include "dpgate/mechanisms/gaussian_calibration.h"

#include <cmath>
#include <limits>

#include "dpgate/mechanisms/sensitivity.h"

namespace dpgate::mechanisms {

double StandardNormalCdf(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

double StandardNormalQuantile(double p) {
  if (!(p > 0 && p < 1)) return std::numeric_limits<double>::quiet_NaN();
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 1e-15 * std::fmax(1.0, std::fabs(lo)); ++i) {
    const double mid = 0.5 * (lo + hi);
    (StandardNormalCdf(mid) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double GaussianDelta(double sigma, double epsilon, double l2_sensitivity) {
  const double a = l2_sensitivity / (2 * sigma);
  const double b = epsilon * sigma / l2_sensitivity;
  // e^ε·Φ(−a−b) computed as exp(ε + log Φ(−a−b)) would lose nothing here:
  // both factors are finite for the ε Build() accepts (<= 700).
  return StandardNormalCdf(a - b) - std::exp(epsilon) * StandardNormalCdf(-a - b);
}

Result<double> AnalyticGaussianSigma(double epsilon, double delta, double l2_sensitivity) {
  if (Status s = ValidateEpsilon(epsilon); !s) return s;
  if (Status s = ValidatePositiveDelta(delta); !s) return s;
  if (Status s = Sensitivity{l2_sensitivity, 1}.Validate(); !s) return s;
  if (epsilon > 700) return MakeError("mechanism", "epsilon above 700 is not supported");
  // Work with Δ = 1 and scale at the end (δ depends on σ/Δ only).
  double hi = 1;
  while (GaussianDelta(hi, epsilon, 1) > delta) {
    hi *= 2;
    if (hi > 1e300) return MakeError("mechanism", "cannot calibrate Gaussian noise");
  }
  double lo = hi;
  while (GaussianDelta(lo, epsilon, 1) <= delta) {
    lo /= 2;
    if (lo < 1e-300) return MakeError("mechanism", "cannot calibrate Gaussian noise");
  }
  // Invariant: δ(lo) > δ >= δ(hi).
  for (int i = 0; i < 200 && (hi - lo) > 1e-13 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (GaussianDelta(mid, epsilon, 1) > delta ? lo : hi) = mid;
  }
  // hi satisfies the condition; the multiplication by Δ is rounded up.
  return std::nextafter(hi * l2_sensitivity, INFINITY);
}

double ClassicGaussianSigma(double epsilon, double delta, double l2_sensitivity) {
  return std::sqrt(2 * std::log(1.25 / delta)) * l2_sensitivity / epsilon;
}

}  // namespace dpgate::mechanisms
