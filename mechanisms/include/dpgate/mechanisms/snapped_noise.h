// Noise for real-valued results, on a power-of-two grid (docs/PRIVACY.md §4).
//
// Floating-point Laplace/Gaussian samplers leak the true value through the
// low-order bits of their output (Mironov, "On Significance of the Least
// Significant Bits for Differential Privacy", CCS 2012). As in Google's
// "Secure Noise Generation" paper (2020), the value is first rounded to a
// multiple of a power-of-two granularity g, and integer noise (discrete Laplace
// or discrete Gaussian, exactly sampled) is added in units of g:
//   output = g · (round(value / g) + Z).
// The output is a function of an integer only, so its bits carry nothing but
// that integer. Rounding moves each group's value by < g/2 on each side, so a
// unit moves a group's grid value by at most Δ_g = floor(Δ/g) + 1 grid steps;
// Z is calibrated to Δ_g (L1 = k·Δ_g, L2 = √k·Δ_g), which costs a relative
// 2^-kGridBits of extra noise at most.
#pragma once

#include <cstdint>
#include <variant>

#include "dpgate/common/result.h"
#include "dpgate/mechanisms/discrete_gaussian.h"
#include "dpgate/mechanisms/discrete_laplace.h"
#include "dpgate/mechanisms/random_source.h"
#include "dpgate/mechanisms/sensitivity.h"

namespace dpgate::mechanisms {

enum class NoiseKind { kLaplace, kGaussian };

class SnappedNoise {
 public:
  // Automatic granularity: the largest power of two <= min(Δ, noise scale) /
  // 2^kGridBits, so one grid step is ~1e-6 of both the sensitivity and the
  // noise.
  static constexpr int kGridBits = 20;

  // ε-DP real-valued Laplace-type noise. granularity 0 = automatic, else a
  // power of two > 0.
  static Result<SnappedNoise> BuildLaplace(double epsilon, Sensitivity sensitivity,
                                           double granularity = 0);
  // (ε, δ)-DP real-valued Gaussian-type noise.
  static Result<SnappedNoise> BuildGaussian(double epsilon, double delta, Sensitivity sensitivity,
                                            double granularity = 0);

  // g · (round(value/g) + Z). The value is first clamped to ±g·2^62 (a
  // 1-Lipschitz map applied to every database alike, so sensitivity holds)
  // and NaN is treated as 0; the sum saturates.
  double AddNoise(double value, RandomSource& rng) const;
  // The same on the integer grid: round(value/g) + Z (for tests and audits).
  int64_t AddNoiseInGridUnits(double value, RandomSource& rng) const;

  NoiseKind kind() const { return kind_; }
  double granularity() const { return granularity_; }
  // Noise scale in the value's units: g·b (Laplace) or g·σ (Gaussian).
  double scale() const;
  double Variance() const;  // in the value's units
  // Half-width w with P(|noise| <= w) >= level, in the value's units.
  // (Rounding the value adds at most g/2 more, included.)
  double ConfidenceHalfWidth(double level) const;
  // The noise in grid units.
  const std::variant<DiscreteLaplace, DiscreteGaussian>& grid_noise() const { return noise_; }

 private:
  SnappedNoise(NoiseKind kind, double g, std::variant<DiscreteLaplace, DiscreteGaussian> noise)
      : kind_(kind), granularity_(g), noise_(noise) {}
  NoiseKind kind_;
  double granularity_;
  std::variant<DiscreteLaplace, DiscreteGaussian> noise_;
};

// Largest power of two <= x (x finite > 0).
double PowerOfTwoAtMost(double x);

}  // namespace dpgate::mechanisms
