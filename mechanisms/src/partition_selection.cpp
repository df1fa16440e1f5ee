#include "dpgate/mechanisms/partition_selection.h"

#include <cmath>
#include <cstdio>
#include <string>

#include "dpgate/mechanisms/sensitivity.h"

namespace dpgate::mechanisms {

namespace {
constexpr size_t kMaxTableSize = 50'000'000;

std::string Format(const char* fmt, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, a);
  return buf;
}
}  // namespace

Result<PartitionSelection> PartitionSelection::Build(double epsilon, double delta,
                                                     int64_t max_groups, PartitionRule rule) {
  if (Status s = ValidateEpsilon(epsilon); !s) return s;
  if (Status s = ValidatePositiveDelta(delta); !s) return s;
  if (max_groups < 1) {
    return MakeError("mechanism",
                     "max groups contributed must be >= 1, got " + std::to_string(max_groups));
  }
  PartitionSelection p;
  p.rule_ = rule;
  p.epsilon_ = epsilon;
  p.delta_ = delta;
  p.max_groups_ = max_groups;
  const double k = static_cast<double>(max_groups);

  if (rule == PartitionRule::kTruncatedGeometric) {
    // DVGM 2022, Theorem 1: with per-group budget (ε', δ') = (ε/k, δ/k)
    // (basic composition over the k groups a unit touches), the
    // optimal keep probability is the recursion
    //   π(0) = 0,  π(n) = min(e^ε' π(n−1) + δ',  1 − e^−ε' (1 − π(n−1) − δ'),  1).
    // Each computed π(n) carries a rounding error of a few ulps (< 1e-15
    // absolute) against the constraint on its computed predecessor, so δ' is
    // shaved by max(1e-6·δ', 1e-15) and ε' by a relative 1e-9: the computed
    // table then meets the constraints for the true (ε/k, δ/k)
    // (docs/PRIVACY.md §5.1).
    if (delta / k < 1e-13) {
      return MakeError("mechanism", "partition selection needs delta / max_groups >= 1e-13");
    }
    const double eps = epsilon / k * (1 - 1e-9);
    const double del = delta / k - std::fmax(delta / k * 1e-6, 1e-15);
    const double growth = std::exp(eps), shrink = std::exp(-eps);
    double pi = 0;
    while (pi < 1) {
      if (p.keep_.size() >= kMaxTableSize) {
        return MakeError("mechanism",
                         "partition selection needs a larger epsilon or delta: "
                         "the keep-probability table would exceed 5e7 entries");
      }
      pi = std::fmin(std::fmin(growth * pi + del, 1 - shrink * (1 - pi - del)), 1.0);
      p.keep_.push_back(pi);
    }
    p.always_kept_from_ = static_cast<int64_t>(p.keep_.size());
    p.threshold_ = 1;
    while (p.keep_[p.threshold_ - 1] < 0.5) ++p.threshold_;
    return p;
  }

  // Laplace thresholding with discrete Laplace noise of scale k/ε on the
  // distinct-unit count (L1 sensitivity k, so ε-DP for groups in both
  // neighbours). A group with one unit is released iff 1 + Z >= τ, with
  // probability P(Z >= τ − 1) = α^(τ−1)/(1 + α), α = e^(−ε/k), for τ >= 2.
  // The unit's (at most k) own groups are all released with probability
  // <= 1 − (1 − p)^k; requiring p <= p* = 1 − (1 − δ)^(1/k) makes that <= δ
  // (docs/PRIVACY.md §5.2). τ = 1 + ceil(ln(p*(1+α)) / ln α).
  Result<DiscreteLaplace> noise =
      DiscreteLaplace::BuildWithScale(std::nextafter(k / epsilon, INFINITY));
  if (!noise) return noise.error();
  p.laplace_scale_ = noise->scale();
  p.laplace_ = *noise;
  const double alpha = std::exp(-1 / p.laplace_scale_);
  const double p_star = -std::expm1(std::log1p(-delta) / k);
  double tau = 1 + std::ceil(std::log(p_star * (1 + alpha)) / std::log(alpha));
  if (tau < 2) tau = 2;
  // Guard against floating-point rounding at the boundary.
  while (std::pow(alpha, tau - 1) / (1 + alpha) > p_star) tau += 1;
  p.laplace_threshold_ = static_cast<int64_t>(tau);
  p.threshold_ = 1;
  while (p.KeepProbability(p.threshold_) < 0.5) ++p.threshold_;
  return p;
}

double PartitionSelection::KeepProbability(int64_t n) const {
  if (n <= 0) return 0;
  if (rule_ == PartitionRule::kTruncatedGeometric) {
    return static_cast<size_t>(n) >= keep_.size() ? 1.0 : keep_[n - 1];
  }
  // P(n + Z >= τ) for Z discrete Laplace with α = e^(−1/b):
  // P(Z >= m) = α^m/(1+α) for m >= 1, and 1 − α^(1−m)/(1+α) for m <= 0.
  const double alpha = std::exp(-1 / laplace_scale_);
  const double m = static_cast<double>(laplace_threshold_ - n);
  if (m >= 1) return std::exp(-m / laplace_scale_) / (1 + alpha);
  return 1 - std::exp(-(1 - m) / laplace_scale_) / (1 + alpha);
}

bool PartitionSelection::Keep(int64_t n, RandomSource& rng) const {
  if (n <= 0) return false;
  if (rule_ == PartitionRule::kTruncatedGeometric) {
    // Bernoulli(π(n)) exactly for the double π(n) (docs/PRIVACY.md §1.2).
    return rng.Bernoulli(KeepProbability(n));
  }
  return laplace_->AddNoise(n, rng) >= laplace_threshold_;
}

std::string PartitionSelection::Describe() const {
  const std::string budget = "epsilon=" + Format("%.6g", epsilon_) +
                             ", delta=" + Format("%.6g", delta_) +
                             ", max_groups=" + std::to_string(max_groups_);
  if (rule_ == PartitionRule::kTruncatedGeometric) {
    return "truncated geometric partition selection (Desfontaines et al., PETS 2022; " + budget +
           "): a group with n distinct units is kept with probability pi(n); pi(n) >= 0.5 from n=" +
           std::to_string(threshold_) + ", always kept from n=" + std::to_string(always_kept_from_);
  }
  return "Laplace thresholding (" + budget + "): kept if distinct units + discrete Laplace(scale " +
         Format("%.6g", laplace_scale_) + ") >= " + std::to_string(laplace_threshold_) +
         "; kept with probability >= 0.5 from n=" + std::to_string(threshold_);
}

}  // namespace dpgate::mechanisms
