#include "dpgate/mechanisms/budget_split.h"

#include <cstdio>

#include "dpgate/mechanisms/sensitivity.h"

namespace dpgate::mechanisms {

Result<BudgetSplit> BudgetSplit::Build(double epsilon, double delta, int num_aggregates,
                                       bool partition_selection, NoiseKind kind,
                                       std::optional<double> selection_share) {
  if (Status s = ValidateEpsilon(epsilon); !s) return s;
  if (Status s = ValidateDelta(delta); !s) return s;
  if (num_aggregates < 0 || (num_aggregates == 0 && !partition_selection)) {
    return MakeError("mechanism",
                     "a budget split needs at least one aggregate or partition "
                     "selection");
  }
  const bool gaussian = kind == NoiseKind::kGaussian && num_aggregates > 0;
  if ((partition_selection || gaussian) && !(delta > 0)) {
    return MakeError("mechanism",
                     std::string("delta must be > 0 for ") +
                         (partition_selection ? "partition selection" : "Gaussian noise") +
                         " (SET dp.delta)");
  }
  const double m = num_aggregates;
  double share = 0;
  if (partition_selection) {
    share = num_aggregates == 0 ? 1.0 : selection_share.value_or(1.0 / (m + 1));
    if (!(share > 0 && share <= 1) || (num_aggregates > 0 && share == 1)) {
      return MakeError("mechanism",
                       "partition selection share must be in (0, 1), got " + FormatNumber(share));
    }
  }
  BudgetSplit split;
  split.num_aggregates_ = num_aggregates;
  split.has_selection_ = partition_selection;
  split.selection_.epsilon = share * epsilon;
  if (num_aggregates > 0) split.per_aggregate_.epsilon = (1 - share) * epsilon / m;
  if (partition_selection) {
    split.selection_.delta = gaussian ? delta / 2 : delta;
  }
  if (gaussian) {
    split.per_aggregate_.delta = (partition_selection ? delta / 2 : delta) / m;
  }
  return split;
}

PrivacyLoss BudgetSplit::total() const {
  PrivacyLoss t;
  t.epsilon = selection_.epsilon + num_aggregates_ * per_aggregate_.epsilon;
  t.delta = selection_.delta + num_aggregates_ * per_aggregate_.delta;
  return t;
}

std::string BudgetSplit::Describe() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%d aggregate(s) at epsilon=%.6g delta=%.6g each; partition selection %s "
                "epsilon=%.6g delta=%.6g",
                num_aggregates_, per_aggregate_.epsilon, per_aggregate_.delta,
                has_selection_ ? "at" : "none:", selection_.epsilon, selection_.delta);
  return buf;
}

}  // namespace dpgate::mechanisms
