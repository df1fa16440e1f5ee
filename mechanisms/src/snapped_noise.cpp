#include "dpgate/mechanisms/snapped_noise.h"

#include <cmath>
#include <limits>
#include <string>

#include "dpgate/mechanisms/sensitivity.h"

#include "dpgate/mechanisms/gaussian_calibration.h"

namespace dpgate::mechanisms {

double PowerOfTwoAtMost(double x) {
  int exp = 0;
  std::frexp(x, &exp);  // x = m·2^exp, m in [0.5, 1)
  return std::ldexp(1.0, exp - 1);
}

namespace {

Status ValidateGranularity(double g) {
  if (g == 0) return Status::Ok();
  int exp = 0;
  if (!std::isfinite(g) || !(g > 0) || std::frexp(g, &exp) != 0.5) {
    return MakeError("mechanism",
                     "granularity must be a power of two > 0 (e.g. 0.0009765625 = "
                     "2^-10), or 0 for automatic; got " +
                         FormatNumber(g));
  }
  return Status::Ok();
}

// Per-group sensitivity in grid steps after rounding both neighbours' values
// to the grid (docs/PRIVACY.md §4.2).
Sensitivity GridSensitivity(const Sensitivity& s, double g) {
  return Sensitivity{std::floor(s.per_group / g) + 1, s.max_groups};
}

}  // namespace

Result<SnappedNoise> SnappedNoise::BuildLaplace(double epsilon, Sensitivity sensitivity,
                                                double granularity) {
  if (Status s = ValidateEpsilon(epsilon); !s) return s;
  if (Status s = sensitivity.Validate(); !s) return s;
  if (Status s = ValidateGranularity(granularity); !s) return s;
  double g = granularity;
  if (g == 0) {
    const double scale = sensitivity.L1() / epsilon;
    g = PowerOfTwoAtMost(std::fmin(sensitivity.per_group, scale)) * std::ldexp(1.0, -kGridBits);
    // Keep the grid-unit scale within what the exact sampler accepts.
    while (scale / g > DiscreteLaplace::kMaxScale / 4) g *= 2;
  }
  if (!(g >= 0x1.0p-1000) || !std::isfinite(g)) {
    return MakeError("mechanism",
                     "sensitivity or noise scale too small or too large for a "
                     "granularity grid");
  }
  Result<DiscreteLaplace> noise = DiscreteLaplace::Build(epsilon, GridSensitivity(sensitivity, g));
  if (!noise) return noise.error();
  return SnappedNoise(NoiseKind::kLaplace, g, *noise);
}

Result<SnappedNoise> SnappedNoise::BuildGaussian(double epsilon, double delta,
                                                 Sensitivity sensitivity, double granularity) {
  if (Status s = ValidateEpsilon(epsilon); !s) return s;
  if (Status s = ValidatePositiveDelta(delta); !s) return s;
  if (Status s = sensitivity.Validate(); !s) return s;
  if (Status s = ValidateGranularity(granularity); !s) return s;
  double g = granularity;
  if (g == 0) {
    Result<double> sigma = AnalyticGaussianSigma(epsilon, delta, sensitivity.L2());
    if (!sigma) return sigma.error();
    g = PowerOfTwoAtMost(std::fmin(sensitivity.per_group, *sigma)) * std::ldexp(1.0, -kGridBits);
    while (*sigma / g > DiscreteGaussian::kMaxSigma / 4) g *= 2;
  }
  if (!(g >= 0x1.0p-1000) || !std::isfinite(g)) {
    return MakeError("mechanism",
                     "sensitivity or noise scale too small or too large for a "
                     "granularity grid");
  }
  Result<DiscreteGaussian> noise =
      DiscreteGaussian::Build(epsilon, delta, GridSensitivity(sensitivity, g));
  if (!noise) return noise.error();
  return SnappedNoise(NoiseKind::kGaussian, g, *noise);
}

int64_t SnappedNoise::AddNoiseInGridUnits(double value, RandomSource& rng) const {
  constexpr double kLimit = 0x1.0p62;
  double units = std::isnan(value) ? 0 : value / granularity_;  // exact: g is a power of two
  units = std::fmax(-kLimit, std::fmin(kLimit, units));
  const int64_t rounded = static_cast<int64_t>(std::round(units));
  return std::visit([&](const auto& n) { return n.AddNoise(rounded, rng); }, noise_);
}

double SnappedNoise::AddNoise(double value, RandomSource& rng) const {
  // Converting the noisy integer back to a double is post-processing.
  return static_cast<double>(AddNoiseInGridUnits(value, rng)) * granularity_;
}

double SnappedNoise::scale() const {
  return granularity_ *
         std::visit(
             [](const auto& n) {
               if constexpr (std::is_same_v<std::decay_t<decltype(n)>, DiscreteLaplace>) {
                 return n.scale();
               } else {
                 return n.sigma();
               }
             },
             noise_);
}

double SnappedNoise::Variance() const {
  return granularity_ * granularity_ *
         std::visit([](const auto& n) { return n.Variance(); }, noise_);
}

double SnappedNoise::ConfidenceHalfWidth(double level) const {
  const double grid =
      std::visit([&](const auto& n) { return n.ConfidenceHalfWidth(level); }, noise_);
  return granularity_ * (grid + 0.5);
}

}  // namespace dpgate::mechanisms
