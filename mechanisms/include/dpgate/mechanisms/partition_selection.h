// Which groups may be released when group keys come from the data
// (docs/PRIVACY.md §5).
//
// A group whose key only exists because of one unit must be released with
// probability <= δ overall; groups present in both neighbours must be
// released with probabilities within e^ε (plus δ) of each other. Both rules
// below decide from the number n of distinct privacy units in a group, and a
// unit counts in at most k groups.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dpgate/common/result.h"
#include "dpgate/mechanisms/discrete_laplace.h"
#include "dpgate/mechanisms/random_source.h"

namespace dpgate::mechanisms {

enum class PartitionRule {
  // Keep with the optimal probability π(n) (Desfontaines, Voss, Gipson,
  // Mandayam, "Differentially Private Partition Selection", PETS 2022),
  // applied with (ε/k, δ/k) per group (docs/PRIVACY.md §5.1). The default: it dominates the other.
  kTruncatedGeometric,
  // Keep if n + DiscreteLaplace(k/ε) >= τ (Korolova et al. WWW 2009; Wilson
  // et al. PETS 2020), τ the smallest integer with release probability of a
  // single-unit group <= 1 − (1 − δ)^(1/k) (docs/PRIVACY.md §5.2).
  kLaplaceThreshold,
};

class PartitionSelection {
 public:
  // ε finite > 0, δ in (0, 1), k >= 1.
  static Result<PartitionSelection> Build(double epsilon, double delta, int64_t max_groups,
                                          PartitionRule rule = PartitionRule::kTruncatedGeometric);

  // Decide for a group with `distinct_units` privacy units (<= 0: never kept).
  bool Keep(int64_t distinct_units, RandomSource& rng) const;
  double KeepProbability(int64_t distinct_units) const;

  // Smallest n with KeepProbability(n) >= 1/2: the "threshold" shown by
  // EXPLAIN (DP).
  int64_t Threshold() const { return threshold_; }
  // Smallest n kept with certainty (truncated geometric), or -1 if none
  // (Laplace thresholding never keeps with certainty).
  int64_t AlwaysKeptFrom() const { return always_kept_from_; }
  PartitionRule rule() const { return rule_; }
  // One line for EXPLAIN (DP) and privacy receipts.
  std::string Describe() const;

 private:
  PartitionSelection() = default;
  PartitionRule rule_ = PartitionRule::kTruncatedGeometric;
  double epsilon_ = 0;
  double delta_ = 0;
  int64_t max_groups_ = 1;
  // Truncated geometric: π(1..N) with π(N) = 1; index n-1.
  std::vector<double> keep_;
  // Laplace thresholding: n + Z >= laplace_threshold_.
  int64_t laplace_threshold_ = 0;
  double laplace_scale_ = 0;
  std::optional<DiscreteLaplace> laplace_;
  int64_t threshold_ = 0;
  int64_t always_kept_from_ = -1;
};

}  // namespace dpgate::mechanisms
