// Applying a ReleasePlan to the rows of a rewritten private aggregate
// (DESIGN.md §1 step 4): split the query's (ε, δ) over the plan's noised
// quantities and its partition selection, noise every quantity with
// mechanisms/, drop groups that fail selection (or release exactly the public
// keys), compute each output column, then HAVING / ORDER BY / OFFSET / LIMIT on
// the noisy rows (post-processing). Pure: no I/O but the RandomSource, so it is
// unit-tested without a database.
//
// Raw values enter here and never leave: the result holds only released
// (noised) values, and nothing in this file logs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dpgate/common/result.h"
#include "dpgate/config/config.h"
#include "dpgate/mechanisms/random_source.h"
#include "dpgate/rewriter/release_plan.h"

namespace dpgate::proxy {

// The rows the upstream returned for the rewritten SQL, in text format.
struct UpstreamRows {
  std::vector<std::string> column_names;
  std::vector<int32_t> type_oids;
  std::vector<std::vector<std::optional<std::string>>> rows;
};

// The (ε, δ) a query may spend and the mechanism family to spend it with.
struct QueryBudget {
  double epsilon = 0;
  double delta = 0;
  config::Mechanism mechanism = config::Mechanism::kLaplace;
};

// What the privacy receipt says about one output column. Data-independent:
// it follows from the plan and the budget only.
struct ColumnReceipt {
  std::string name;
  std::string role;
  std::string mechanism;                 // "discrete Laplace", "snapped Laplace", ...
  double epsilon = 0;                    // ε spent on this column's quantities
  double noise_scale = 0;                // of its main quantity (b or σ)
  std::optional<double> error_bound_95;  // half-width of a 95% interval, when data-independent
  std::string clamp;                     // e.g. "salary clamped to [0, 300000] per row"
};

struct Released {
  struct Field {
    std::string name;
    int32_t type_oid = 25;
  };
  std::vector<Field> fields;
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::vector<ColumnReceipt> receipts;
  std::string selection;  // partition-selection rule, as text
  double epsilon_charged = 0;
  double delta_charged = 0;
};

// The budget a plan spends, given the query budget: the full (ε, δ) when the
// plan noises at least one quantity or selects partitions. Used for the charge
// before anything runs, and for EXPLAIN (DP).
struct PlannedRelease {
  std::vector<ColumnReceipt> receipts;
  std::string selection;
  double epsilon = 0;
  double delta = 0;
};
Result<PlannedRelease> PlanRelease(const rewriter::ReleasePlan& plan, const QueryBudget& budget);

// The released columns' names and types, from the plan and the types of the
// rewritten SQL's columns: what Describe answers before anything runs, and
// exactly what ApplyReleasePlan sends.
Result<std::vector<Released::Field>> ReleasedFields(const rewriter::ReleasePlan& plan,
                                                    const std::vector<int32_t>& sql_column_types);

// Noises and releases `upstream` per `plan`. Errors (a column that does not
// parse as a number, a row of the wrong width) mean the upstream result is not
// what the plan expects: the caller sends a generic error, never the rows.
Result<Released> ApplyReleasePlan(const rewriter::ReleasePlan& plan, const QueryBudget& budget,
                                  const UpstreamRows& upstream, mechanisms::RandomSource& rng);

}  // namespace dpgate::proxy
