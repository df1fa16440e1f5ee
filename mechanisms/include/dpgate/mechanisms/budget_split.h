// Splitting one query's (ε, δ) across its noisy aggregates and partition
// selection (docs/PRIVACY.md §6). Shown by EXPLAIN (DP).
#pragma once

#include <optional>
#include <string>

#include "dpgate/common/result.h"
#include "dpgate/mechanisms/composition.h"
#include "dpgate/mechanisms/snapped_noise.h"

namespace dpgate::mechanisms {

// The rule (basic composition, docs/PRIVACY.md §6):
//  ε: partition selection (if any) gets `selection_share`·ε (default: an
//     equal share, 1/(m+1)); the m aggregates split the rest equally.
//  δ: Laplace: all of δ to partition selection (aggregates are pure ε-DP;
//     with no selection, δ is not spent). Gaussian: half to selection and
//     half split equally among the aggregates (all of it to the aggregates
//     without selection, all to selection with no aggregates).
class BudgetSplit {
 public:
  // ε finite > 0; δ in [0, 1), and > 0 when there is selection or a Gaussian
  // aggregate; m >= 0 with m + selection >= 1; share in (0, 1).
  static Result<BudgetSplit> Build(double epsilon, double delta, int num_aggregates,
                                   bool partition_selection, NoiseKind kind,
                                   std::optional<double> selection_share = std::nullopt);

  // Each aggregate's (ε, δ); zero if there are no aggregates.
  PrivacyLoss per_aggregate() const { return per_aggregate_; }
  // Partition selection's (ε, δ); zero if there is no selection.
  PrivacyLoss selection() const { return selection_; }
  // What the query actually spends (what the accountant charges):
  // basic composition of all parts (<= the requested (ε, δ)).
  PrivacyLoss total() const;
  int num_aggregates() const { return num_aggregates_; }
  bool has_selection() const { return has_selection_; }
  std::string Describe() const;

 private:
  BudgetSplit() = default;
  PrivacyLoss per_aggregate_;
  PrivacyLoss selection_;
  int num_aggregates_ = 0;
  bool has_selection_ = false;
};

}  // namespace dpgate::mechanisms
