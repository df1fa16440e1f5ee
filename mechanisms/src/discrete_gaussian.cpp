#include "dpgate/mechanisms/discrete_gaussian.h"

#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include "dpgate/mechanisms/sensitivity.h"

#include "dpgate/mechanisms/composition.h"
#include "dpgate/mechanisms/gaussian_calibration.h"
#include "exact_bernoulli.h"

namespace dpgate::mechanisms {

using internal::u128;
using internal::U256;

namespace {

// Σ_{y∈Z} exp(−y²/(2σ²)). For σ >= 1 by Poisson summation (Jacobi theta):
// σ√(2π)·Σ_{k∈Z} exp(−2π²σ²k²), whose k ≠ 0 terms are < 1e-8 and vanish fast.
double Normaliser(double sigma) {
  if (sigma < 1) {
    double sum = 1;
    for (int y = 1; y < 200; ++y) sum += 2 * std::exp(-y * y / (2 * sigma * sigma));
    return sum;
  }
  double sum = 1;
  for (int k = 1; k < 5; ++k) {
    sum += 2 * std::exp(-2 * std::numbers::pi * std::numbers::pi * sigma * sigma * k * k);
  }
  return sigma * std::sqrt(2 * std::numbers::pi) * sum;
}

// ∫_m^∞ exp(−y²/(2σ²)) dy.
double GaussIntegralFrom(double m, double sigma) {
  return sigma * std::sqrt(2 * std::numbers::pi) * 0.5 * std::erfc(m / (sigma * std::sqrt(2.0)));
}
double Density(double y, double sigma) {
  return std::exp(-y * y / (2 * sigma * sigma));
}

// Bounds on T(c) = Σ_{y >= c} f(y), f(y) = exp(−y²/(2σ²)), integer c >= 0
// (docs/PRIVACY.md §3.2). f is decreasing on y >= 0 and convex on y >= σ.
// On the convex part, from Y0 = ceil(σ + 1/2) on, Hermite–Hadamard gives
//   ∫_c^∞ f + f(c)/2  <=  Σ_{y>=c} f(y)  <=  ∫_{c−1/2}^∞ f      (c >= Y0);
// below Y0 the terms are summed exactly (or, beyond 2^17 of them, bounded by
// monotonicity: ∫_c^{Y0} f <= Σ_{c<=y<Y0} f(y) <= f(c) + ∫_c^{Y0} f).
// Only the c >= 0 case is used (P[Y > a] for a < 0 goes through symmetry).
struct TailBounds {
  double lower, upper;
};
TailBounds TailBeyondHead(double c, double sigma);
// The first 1024 terms exactly, the rest bounded: the bounds' slack is then
// far below δ for small σ, where the discrete curve differs most from the
// continuous one.
TailBounds Tail(double c, double sigma) {
  constexpr int kExactTerms = 1024;
  double head = 0;
  int i = 0;
  for (; i < kExactTerms; ++i) {
    const double term = Density(c + i, sigma);
    if (term < head * 1e-18) break;  // the rest is bounded below, at no loss
    head += term;
  }
  const TailBounds rest = TailBeyondHead(c + i, sigma);
  return {head + rest.lower, head + rest.upper};
}
TailBounds TailBeyondHead(double c, double sigma) {
  const double y0 = std::ceil(sigma + 0.5);
  if (c >= y0) {
    return {GaussIntegralFrom(c, sigma) + Density(c, sigma) / 2, GaussIntegralFrom(c - 0.5, sigma)};
  }
  double head_lower = 0, head_upper = 0;
  if (y0 - c <= 131072) {
    // At most 131072 terms; the counter is an integer so that it is exact.
    const auto terms = static_cast<int64_t>(std::ceil(y0 - c));
    for (int64_t i = 0; i < terms; ++i) head_lower += Density(c + static_cast<double>(i), sigma);
    head_upper = head_lower;
  } else {
    const double middle = GaussIntegralFrom(c, sigma) - GaussIntegralFrom(y0, sigma);
    head_lower = middle;
    head_upper = Density(c, sigma) + middle;
  }
  return {head_lower + GaussIntegralFrom(y0, sigma) + Density(y0, sigma) / 2,
          head_upper + GaussIntegralFrom(y0 - 0.5, sigma)};
}
double TailUpper(double c, double sigma) {
  return Tail(c, sigma).upper;
}
double TailLower(double c, double sigma) {
  return Tail(c, sigma).lower;
}

// Bounds on P[Y > a] for Y ~ N_Z(0, σ²), via symmetry for a < 0.
double ProbAboveUpper(double a, double sigma, double norm) {
  if (a >= 0) return TailUpper(std::floor(a) + 1, sigma) / norm;
  // P[Y > a] = 1 − P[Y <= a] = 1 − P[Y >= ceil(−a)].
  return 1 - TailLower(std::ceil(-a), sigma) / norm;
}
double ProbAboveLower(double a, double sigma, double norm) {
  if (a >= 0) return TailLower(std::floor(a) + 1, sigma) / norm;
  return 1 - TailUpper(std::ceil(-a), sigma) / norm;
}

}  // namespace

double DiscreteGaussian::DeltaUpperBound(double sigma, double epsilon, double sensitivity) {
  // CKS 2020 Theorem 7 (docs/PRIVACY.md §3.2).
  const double norm = Normaliser(sigma);
  const double s2 = sigma * sigma;
  const double a = epsilon * s2 / sensitivity - sensitivity / 2;
  const double b = epsilon * s2 / sensitivity + sensitivity / 2;
  return ProbAboveUpper(a, sigma, norm) - std::exp(epsilon) * ProbAboveLower(b, sigma, norm);
}

Result<double> DiscreteGaussian::CalibrateSigma(double epsilon, double delta,
                                                Sensitivity sensitivity) {
  if (Status s = ValidateEpsilon(epsilon); !s) return s;
  if (Status s = ValidatePositiveDelta(delta); !s) return s;
  if (Status s = sensitivity.Validate(); !s) return s;
  const Sensitivity integral{std::ceil(sensitivity.per_group), sensitivity.max_groups};
  Result<double> start = AnalyticGaussianSigma(epsilon, delta, integral.L2());
  if (!start) return start.error();
  if (integral.max_groups > 1) {
    // zCDP: largest ρ whose (ε, δ) conversion fits, then σ = Δ₂/√(2ρ).
    double lo = 0, hi = epsilon;  // ε(ρ) >= ρ, so ρ <= ε
    for (int i = 0; i < 60; ++i) {
      const double mid = 0.5 * (lo + hi);
      Result<double> eps = RhoToEpsilon(mid, delta);
      if (!eps) return eps.error();
      (*eps <= epsilon ? lo : hi) = mid;
    }
    if (!(lo > 0)) return MakeError("mechanism", "cannot calibrate discrete Gaussian noise");
    return std::nextafter(integral.L2() / std::sqrt(2 * lo), INFINITY);
  }
  const double d = integral.per_group;
  auto too_small = [&](double sigma) { return DeltaUpperBound(sigma, epsilon, d) > delta; };
  double hi = *start;
  while (too_small(hi)) {
    hi *= 1.25;
    if (hi > kMaxSigma) return MakeError("mechanism", "discrete Gaussian sigma out of range");
  }
  double lo = *start * 0.5;
  while (!too_small(lo)) {
    lo *= 0.5;
    if (lo < kMinSigma) return hi;
  }
  for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (too_small(mid) ? lo : hi) = mid;
  }
  return hi;  // DeltaUpperBound(hi) <= δ
}

Result<DiscreteGaussian> DiscreteGaussian::Build(double epsilon, double delta,
                                                 Sensitivity sensitivity) {
  Result<double> sigma = CalibrateSigma(epsilon, delta, sensitivity);
  if (!sigma) return sigma.error();
  return BuildWithSigma(*sigma);
}

Result<DiscreteGaussian> DiscreteGaussian::BuildWithSigma(double sigma) {
  if (!std::isfinite(sigma) || !(sigma >= kMinSigma) || !(sigma <= kMaxSigma)) {
    return MakeError("mechanism", "discrete Gaussian sigma must be in [2^-4, 2^40], got " +
                                      FormatNumber(sigma) +
                                      " (check epsilon, delta and sensitivity)");
  }
  // σ² as a double rounded up, then as the exact rational num/den.
  const double var = std::nextafter(sigma * sigma, INFINITY);
  int exp = 0;
  const double mant = std::frexp(var, &exp);
  uint64_t m = static_cast<uint64_t>(std::ldexp(mant, 53));
  int e = exp - 53;
  while (e < 0 && (m & 1) == 0) {
    m >>= 1;
    ++e;
  }
  u128 num = m, den = 1;
  if (e >= 0) {
    num <<= e;  // var <= 2^80 + ulp: num < 2^81
  } else {
    den <<= -e;  // var >= 2^-8: den <= 2^61
  }
  // t = floor(σ) + 1 with floor(σ) = max a such that a²·den <= num.
  uint64_t a = static_cast<uint64_t>(std::floor(std::sqrt(var)));
  while (a > 0 && static_cast<u128>(a) * a * den > num) --a;
  while (static_cast<u128>(a + 1) * (a + 1) * den <= num) ++a;
  return DiscreteGaussian(std::sqrt(var), num, den, a + 1);
}

int64_t DiscreteGaussian::Sample(RandomSource& rng) const {
  // CKS Algorithm 3: propose Y from the discrete Laplace of scale t and
  // accept with probability exp(−(|Y| − σ²/t)² / (2σ²)). With σ² = N/D:
  //   γ = (|Y|·D·t − N)² / (2·N·D·t²),
  // evaluated exactly in 256-bit integers.
  const u128 dt = den_ * t_;
  const U256 gamma_den = U256::Mul(num_ * den_, static_cast<u128>(t_) * t_).Shl1();
  for (;;) {
    const int64_t y = internal::SampleDiscreteLaplace(rng, t_, 1);
    const u128 abs_y = static_cast<u128>(y < 0 ? -static_cast<__int128>(y) : y);
    const u128 left = abs_y * dt;  // < 2^63 · 2^61
    const u128 diff = left >= num_ ? left - num_ : num_ - left;
    if (internal::BernoulliExpNeg(rng, U256::Mul(diff, diff), gamma_den)) return y;
  }
}

int64_t DiscreteGaussian::AddNoise(int64_t value, RandomSource& rng) const {
  int64_t out = 0;
  const int64_t z = Sample(rng);
  if (__builtin_add_overflow(value, z, &out)) {
    return z > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return out;
}

double DiscreteGaussian::RhoFor(double l2_sensitivity) const {
  return l2_sensitivity * l2_sensitivity / (2 * sigma_ * sigma_);
}

double DiscreteGaussian::Pmf(int64_t z) const {
  const double zd = static_cast<double>(z);
  return std::exp(-zd * zd / (2 * sigma_ * sigma_)) / Normaliser(sigma_);
}

double DiscreteGaussian::Variance() const {
  if (sigma_ > 1024) return sigma_ * sigma_;  // differs by < σ²·1e-1000
  const double norm = Normaliser(sigma_);
  double var = 0;
  const int64_t limit = static_cast<int64_t>(40 * sigma_) + 40;
  for (int64_t y = 1; y <= limit; ++y) {
    const double yd = static_cast<double>(y);
    var += 2 * yd * yd * std::exp(-yd * yd / (2 * sigma_ * sigma_));
  }
  return var / norm;
}

double DiscreteGaussian::ConfidenceHalfWidth(double level) const {
  if (!(level > 0 && level < 1)) return std::numeric_limits<double>::quiet_NaN();
  if (sigma_ <= 4096) {
    const double norm = Normaliser(sigma_);
    double coverage = 1 / norm;
    int64_t w = 0;
    while (coverage < level) {
      ++w;
      coverage += 2 * Density(static_cast<double>(w), sigma_) / norm;
    }
    return static_cast<double>(w);
  }
  // Σ_{y > w} f(y) <= ∫_w^∞ f and the normaliser is >= σ√(2π), so
  // P(|Z| > w) <= 2·Φc(w/σ) (docs/PRIVACY.md §3.2).
  return std::ceil(StandardNormalQuantile((1 + level) / 2) * sigma_);
}

}  // namespace dpgate::mechanisms
