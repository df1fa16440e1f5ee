#include "dpgate/mechanisms/discrete_laplace.h"

#include <cmath>
#include <limits>
#include <string>

#include "dpgate/mechanisms/sensitivity.h"

#include "exact_bernoulli.h"

namespace dpgate::mechanisms {

Result<DiscreteLaplace> DiscreteLaplace::Build(double epsilon, Sensitivity sensitivity) {
  if (Status s = ValidateEpsilon(epsilon); !s) return s;
  if (Status s = sensitivity.Validate(); !s) return s;
  // Round the scale up: a larger scale only strengthens the guarantee
  // (docs/PRIVACY.md §3.1).
  const double scale = std::nextafter(sensitivity.L1() / epsilon, INFINITY);
  return BuildWithScale(scale);
}

Result<DiscreteLaplace> DiscreteLaplace::BuildWithScale(double scale) {
  if (!std::isfinite(scale) || !(scale >= kMinScale) || !(scale <= kMaxScale)) {
    return MakeError("mechanism", "discrete Laplace scale must be in [2^-8, 2^48], got " +
                                      FormatNumber(scale) + " (check epsilon and sensitivity)");
  }
  // scale = m · 2^e with a 53-bit integer m: t = m, s = 2^-e (or t = scale,
  // s = 1 when e >= 0), so t/s equals the double exactly.
  int exp = 0;
  const double mant = std::frexp(scale, &exp);  // scale = mant · 2^exp, mant in [0.5, 1)
  const double m = std::ldexp(mant, 53);        // integer
  int e = exp - 53;
  uint64_t t = static_cast<uint64_t>(m);
  // Strip trailing zero bits to keep t and s small.
  while (e < 0 && (t & 1) == 0) {
    t >>= 1;
    ++e;
  }
  uint64_t s = 1;
  if (e >= 0) {
    t <<= e;  // scale <= 2^48, so t < 2^49
  } else {
    s = uint64_t{1} << (-e);  // -e <= 61 for scale >= 2^-8
  }
  return DiscreteLaplace(scale, t, s);
}

int64_t DiscreteLaplace::Sample(RandomSource& rng) const {
  return internal::SampleDiscreteLaplace(rng, t_, s_);
}

int64_t DiscreteLaplace::AddNoise(int64_t value, RandomSource& rng) const {
  int64_t out = 0;
  const int64_t z = Sample(rng);
  if (__builtin_add_overflow(value, z, &out)) {
    // Saturating is post-processing of the noisy value (docs/PRIVACY.md §3.1).
    return z > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return out;
}

double DiscreteLaplace::Pmf(int64_t z) const {
  const double one_minus_alpha = -std::expm1(-1 / scale_);
  const double alpha = 1 - one_minus_alpha;
  return one_minus_alpha / (1 + alpha) * std::exp(-std::fabs(static_cast<double>(z)) / scale_);
}

double DiscreteLaplace::Variance() const {
  const double one_minus_alpha = -std::expm1(-1 / scale_);
  const double alpha = 1 - one_minus_alpha;
  return 2 * alpha / (one_minus_alpha * one_minus_alpha);
}

double DiscreteLaplace::ConfidenceHalfWidth(double level) const {
  if (!(level > 0 && level < 1)) return std::numeric_limits<double>::quiet_NaN();
  // P(|Z| > w) = 2 α^(w+1) / (1 + α); smallest w with that <= 1 - level.
  const double alpha = std::exp(-1 / scale_);
  auto tail = [&](double w) { return 2 * std::exp(-(w + 1) / scale_) / (1 + alpha); };
  double w = std::ceil(-scale_ * std::log((1 - level) * (1 + alpha) / 2)) - 1;
  if (w < 0) w = 0;
  // Correct a possible off-by-one from floating point.
  while (w > 0 && tail(w - 1) <= 1 - level) --w;
  while (tail(w) > 1 - level) ++w;
  return w;
}

}  // namespace dpgate::mechanisms
