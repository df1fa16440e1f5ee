// The ReleasePlan: what the proxy executes on the rows of a rewritten private
// aggregate (DESIGN.md §1 step 4, docs/REWRITER.md §8). A plain struct, kept
// apart from the code that edits the parse tree (PgDog's rewrite plan): every
// field is a step or a parameter of a step, in the order the proxy applies them:
//   1. read the rewritten SQL's rows (columns `sql_columns`, in that order);
//   2. partition selection (drop groups whose noisy unit count fails the
//      threshold, or release exactly the declared public keys);
//   3. noise each `NoisedQuantity` with its sensitivity and ε/δ share and
//      compute each `OutputColumn` from them;
//   4. post-processing: HAVING, ORDER BY, OFFSET, LIMIT on the noisy rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dpgate::rewriter {

// What an output column is.
enum class ColumnRole {
  kGroupKey,            // passed through from the rewritten SQL (after partition selection)
  kCount,               // COUNT(*) or COUNT(col): one noisy count
  kCountDistinctUnits,  // COUNT(DISTINCT privacy_unit): the noisy number of units
  kSum,                 // SUM(col): one noisy clamped sum
  kAvg,                 // AVG(col) = midpoint + noisy centred sum / noisy count
  kVariance,            // VAR_*(col) from noisy centred sum, sum of squares, count
  kStddev,              // sqrt of the above variance
};
const char* ToString(ColumnRole role);

// The type of the value the proxy sends to the client for this column.
enum class ValueType {
  kFromUpstream,  // a group key: the upstream column's own type
  kInt8,          // counts (rounded after noise)
  kFloat8,        // sums, averages, variances
};
const char* ToString(ValueType type);

// How far one privacy unit can move a quantity (docs/REWRITER.md §7).
// Over all groups: L1 = k·Δ, L2 = √k·Δ.
struct AggregateSensitivity {
  double per_group = 0;    // Δ: one unit's largest effect on one group's value
  int64_t max_groups = 1;  // k: how many groups one unit can reach
  double L1() const { return static_cast<double>(max_groups) * per_group; }
  double L2() const { return std::sqrt(static_cast<double>(max_groups)) * per_group; }
};

// One quantity the proxy noises: a column of the rewritten SQL's result.
struct NoisedQuantity {
  // "count", "centred_sum", "sum", "centred_sum_of_squares", "units".
  std::string kind;
  int sql_column = -1;  // 0-based index into ReleasePlan::sql_columns
  AggregateSensitivity sensitivity;
  // The quantity's share of the query's (ε, δ), relative to the other
  // quantities' weights (the lead wires mechanisms/'s budget split in here:
  // epsilon/delta stay 0 until that is filled).
  double budget_weight = 1;
  double epsilon = 0;
  double delta = 0;
};

struct OutputColumn {
  std::string name;  // the user's output name, as PostgreSQL would name it
  ColumnRole role = ColumnRole::kGroupKey;
  ValueType type = ValueType::kFromUpstream;
  int group_key_sql_column = -1;       // for kGroupKey
  std::vector<NoisedQuantity> inputs;  // for aggregates, in the order the role needs them
  std::string source_column;           // the aggregated column ("" for COUNT(*))
  std::string source_table;            // schema.name of its table (for bounded aggregates)
  std::optional<double> lower;         // clamp bounds used (SUM/AVG/VARIANCE)
  std::optional<double> upper;
  std::optional<double> midpoint;  // AVG/VARIANCE re-centring
};

// Which groups are released (docs/REWRITER.md §9).
struct PartitionSelection {
  enum class Kind {
    kNone,        // global aggregate: exactly one row, always released
    kPublicKeys,  // every group key has public values: release exactly their cross product
    kThreshold,   // noisy count of distinct units must pass a threshold
  };
  Kind kind = Kind::kNone;
  // kPublicKeys: per group key, in group-key order, the declared values.
  std::vector<std::vector<std::string>> public_keys;
  // kThreshold: the rewritten SQL's column holding each group's unit count.
  int units_sql_column = -1;
  int64_t max_groups_contributed = 1;
  double budget_weight = 1;  // share of (ε, δ) for selection, relative to NoisedQuantity weights
  double epsilon = 0;        // filled with the budget split (see NoisedQuantity)
  double delta = 0;
};
const char* ToString(PartitionSelection::Kind kind);

// A HAVING condition over the released (noisy) output columns, evaluated by
// the proxy: post-processing, so it costs no privacy (docs/REWRITER.md §10).
struct PostFilter {
  enum class Kind { kAnd, kOr, kNot, kCompare, kIsNull, kIsNotNull, kColumnIsTrue };
  Kind kind = Kind::kCompare;
  std::vector<PostFilter> children;  // kAnd/kOr (2+), kNot (1)
  // kCompare: output column `column` <op> constant, op one of = <> < <= > >=.
  // kIsNull/kIsNotNull/kColumnIsTrue: `column` only.
  int column = -1;
  std::string op;
  std::string constant;  // the literal as written (numeric or string)
  bool constant_is_numeric = false;
};

struct OrderKey {
  int output_column = -1;
  bool descending = false;
  bool nulls_first = false;  // PostgreSQL default: NULLS LAST for ASC, FIRST for DESC
};

// Which SQL shape the rewrite has (docs/REWRITER.md §8). All three bound each
// unit's contribution; the cheaper ones are taken only when a bounding step
// provably removes nothing (§8.4, §8.5; docs/PRIVACY.md §2.2–§2.3).
enum class PlanShape {
  kPerUnitBounded,      // per-unit pre-aggregation + row_number() <= k (§8)
  kPerUnitNoRowNumber,  // per-unit pre-aggregation; no unit can reach more than k groups (§8.4)
  kPerRow,              // clamped per row; every unit is at most one row (§8.5)
};
const char* ToString(PlanShape shape);  // "per_unit_bounded", "per_unit_no_row_number", "per_row"

struct ReleasePlan {
  std::string dataset;
  std::string table;  // schema.name of the private table whose unit partitions the rows
  std::string privacy_unit;
  // Other private tables of the dataset joined to `table` on the unit
  // (docs/REWRITER.md §5.5); k and c are then the smallest of all of theirs.
  std::vector<std::string> joined_tables;
  // The k and c the sensitivities use: the config's, or 1 and 1 for kPerRow,
  // where each unit is one row in one group (docs/REWRITER.md §8.5).
  int64_t max_groups_contributed = 1;  // k
  int64_t max_rows_per_group = 1;      // c
  PlanShape shape = PlanShape::kPerUnitBounded;
  std::string shape_reason;              // why this shape (and not a cheaper one) was chosen
  std::vector<std::string> sql_columns;  // the rewritten SQL's output columns, in order
  std::vector<OutputColumn> columns;     // the user's output columns, in order
  PartitionSelection partition_selection;
  std::optional<PostFilter> having;
  std::vector<OrderKey> order_by;
  std::optional<int64_t> limit;
  std::optional<int64_t> offset;
  bool budget_split_filled = false;  // false until ε/δ shares are filled in
};

}  // namespace dpgate::rewriter
