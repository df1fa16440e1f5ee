// Discrete Laplace (two-sided geometric) noise for integer results
// (docs/PRIVACY.md §3.1).
//
// P(Z = z) = (1 - α)/(1 + α) · α^|z|, α = exp(-1/scale). Adding Z to an
// integer query whose value moves by at most L1 between neighbouring databases
// is (L1/scale)-DP (Ghosh, Roughgarden, Sundararajan, STOC 2009; Canonne,
// Kamath, Steinke, NeurIPS 2020, §2). Sampling is exact: CKS Algorithm 2 on a
// rational scale t/s equal to the double `scale` (no floating-point noise).
#pragma once

#include <cstdint>

#include "dpgate/common/result.h"
#include "dpgate/mechanisms/random_source.h"
#include "dpgate/mechanisms/sensitivity.h"

namespace dpgate::mechanisms {

class DiscreteLaplace {
 public:
  // Smallest and largest scales Build accepts (the exact rational form t/s of
  // the scale needs t, s < 2^63).
  static constexpr double kMinScale = 0x1.0p-8;
  static constexpr double kMaxScale = 0x1.0p48;

  // ε-DP for an integer query with the given sensitivity: scale = L1/ε,
  // rounded up by one ulp so that rounding can only add noise.
  static Result<DiscreteLaplace> Build(double epsilon, Sensitivity sensitivity);
  // Noise with P(z) ∝ exp(-|z|/scale).
  static Result<DiscreteLaplace> BuildWithScale(double scale);

  // One draw of the noise Z.
  int64_t Sample(RandomSource& rng) const;
  // value + Z, saturating at the int64 range.
  int64_t AddNoise(int64_t value, RandomSource& rng) const;

  double scale() const { return scale_; }
  // ε this noise gives for a given L1 sensitivity: L1/scale.
  double EpsilonFor(double l1_sensitivity) const { return l1_sensitivity / scale_; }
  // P(Z = z), exact up to floating point.
  double Pmf(int64_t z) const;
  // Var Z = 2α/(1-α)².
  double Variance() const;
  // Smallest integer w with P(|Z| <= w) >= level (level in (0, 1)).
  double ConfidenceHalfWidth(double level) const;

 private:
  DiscreteLaplace(double scale, uint64_t t, uint64_t s) : scale_(scale), t_(t), s_(s) {}
  double scale_;
  uint64_t t_;  // scale = t / s exactly
  uint64_t s_;
};

}  // namespace dpgate::mechanisms
