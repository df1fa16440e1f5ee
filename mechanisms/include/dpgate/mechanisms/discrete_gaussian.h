// Discrete Gaussian noise for integer results (docs/PRIVACY.md §3.2).
//
// P(Z = z) ∝ exp(−z²/(2σ²)) on the integers (Canonne, Kamath, Steinke, "The
// Discrete Gaussian for Differential Privacy", NeurIPS 2020). Sampling is
// exact: CKS Algorithm 3 with σ² held as an exact rational, every acceptance
// test in integer arithmetic.
//
// Calibration. The continuous analytic σ (Balle & Wang 2018) is NOT enough
// for the discrete Gaussian: summing CKS Theorem 7's exact privacy curve
// shows δ up to 17% above target at that σ (ε = 2, δ = 1e-8; see the tests).
// So σ is calibrated on the discrete Gaussian itself:
//  - one group (k = 1): bisection on an upper bound of CKS Theorem 7's δ,
//    whose tail sums are bounded by integrals (docs/PRIVACY.md §3.2);
//  - k > 1 groups (a vector release): the multivariate discrete Gaussian is
//    Δ₂²/(2σ²)-zCDP (CKS Theorem 14), converted to (ε, δ) by RhoToEpsilon.
#pragma once

#include <cstdint>

#include "dpgate/common/result.h"
#include "dpgate/mechanisms/random_source.h"
#include "dpgate/mechanisms/sensitivity.h"

namespace dpgate::mechanisms {

class DiscreteGaussian {
 public:
  static constexpr double kMinSigma = 0x1.0p-4;
  static constexpr double kMaxSigma = 0x1.0p40;

  // (ε, δ)-DP for an integer query with the given sensitivity (a
  // non-integer Δ is rounded up: integer outputs move by integers).
  static Result<DiscreteGaussian> Build(double epsilon, double delta, Sensitivity sensitivity);
  // The σ Build uses (see the calibration note above).
  static Result<double> CalibrateSigma(double epsilon, double delta, Sensitivity sensitivity);
  // An upper bound on CKS Theorem 7's δ for one integer query of sensitivity
  // Δ at noise σ: P[Y > εσ²/Δ − Δ/2] − e^ε·P[Y > εσ²/Δ + Δ/2], Y ~ N_Z(0, σ²),
  // with the first tail bounded above and the second below by integrals.
  static double DeltaUpperBound(double sigma, double epsilon, double sensitivity);
  // Noise with parameter σ (σ² is rounded up to the next double).
  static Result<DiscreteGaussian> BuildWithSigma(double sigma);

  int64_t Sample(RandomSource& rng) const;
  int64_t AddNoise(int64_t value, RandomSource& rng) const;  // saturating

  double sigma() const { return sigma_; }
  // ρ of zCDP for a given L2 sensitivity: Δ²/(2σ²) (CKS Theorem 4).
  double RhoFor(double l2_sensitivity) const;
  // P(Z = z); the normaliser by Poisson summation (exact series).
  double Pmf(int64_t z) const;
  // Var Z (< σ², CKS Proposition 19); exact sum for σ <= 2^10, else σ².
  double Variance() const;
  // An integer w with P(|Z| <= w) >= level: the exact smallest one for
  // σ <= 4096 (PMF sum), else ceil(Φ⁻¹((1+level)/2)·σ), valid because
  // P(|Z| > w) <= 2·Φc(w/σ) (docs/PRIVACY.md §3.2).
  double ConfidenceHalfWidth(double level) const;

 private:
  DiscreteGaussian(double sigma, unsigned __int128 num, unsigned __int128 den, uint64_t t)
      : sigma_(sigma), num_(num), den_(den), t_(t) {}
  double sigma_;
  unsigned __int128 num_;  // σ² = num / den exactly
  unsigned __int128 den_;
  uint64_t t_;  // floor(σ) + 1, the Laplace proposal's scale
};

}  // namespace dpgate::mechanisms
