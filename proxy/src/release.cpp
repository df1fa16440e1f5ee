#include "dpgate/proxy/release.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <variant>

#include "dpgate/mechanisms/budget_split.h"
#include "dpgate/mechanisms/discrete_gaussian.h"
#include "dpgate/mechanisms/discrete_laplace.h"
#include "dpgate/mechanisms/estimators.h"
#include "dpgate/mechanisms/partition_selection.h"
#include "dpgate/mechanisms/snapped_noise.h"

namespace dpgate::proxy {
namespace {

namespace mech = dpgate::mechanisms;
using rewriter::ColumnRole;
using rewriter::NoisedQuantity;
using rewriter::ReleasePlan;

constexpr int32_t kInt8Oid = 20;
constexpr int32_t kFloat8Oid = 701;
constexpr double kReceiptLevel = 0.95;

Error PlanMismatch(const std::string& what) {
  return MakeError("XX000", "the upstream result does not match the release plan: " + what);
}

// Counts and unit counts are integers and get integer noise (discrete
// Laplace / Gaussian); sums are reals and get snapped noise so the low-order
// bits of the output carry no information (docs/PRIVACY.md, Mironov 2012).
bool IsIntegerQuantity(const NoisedQuantity& q) {
  return q.kind == "count" || q.kind == "units";
}

class QuantityNoise {
 public:
  static Result<QuantityNoise> Build(const NoisedQuantity& q, mech::PrivacyLoss loss,
                                     config::Mechanism mechanism) {
    const mech::Sensitivity s{q.sensitivity.per_group, q.sensitivity.max_groups};
    const bool gaussian = mechanism == config::Mechanism::kGaussian;
    if (IsIntegerQuantity(q)) {
      if (gaussian) {
        auto g = mech::DiscreteGaussian::Build(loss.epsilon, loss.delta, s);
        if (!g.ok()) return g.error();
        return QuantityNoise(Noise(*g));
      }
      auto l = mech::DiscreteLaplace::Build(loss.epsilon, s);
      if (!l.ok()) return l.error();
      return QuantityNoise(Noise(*l));
    }
    auto r = gaussian ? mech::SnappedNoise::BuildGaussian(loss.epsilon, loss.delta, s)
                      : mech::SnappedNoise::BuildLaplace(loss.epsilon, s);
    if (!r.ok()) return r.error();
    return QuantityNoise(Noise(*r));
  }

  double Add(double value, mech::RandomSource& rng) const {
    if (const auto* l = std::get_if<mech::DiscreteLaplace>(&noise_)) {
      return static_cast<double>(l->AddNoise(std::llround(value), rng));
    }
    if (const auto* g = std::get_if<mech::DiscreteGaussian>(&noise_)) {
      return static_cast<double>(g->AddNoise(std::llround(value), rng));
    }
    return std::get<mech::SnappedNoise>(noise_).AddNoise(value, rng);
  }
  double scale() const {
    return std::visit(
        [](const auto& n) -> double {
          using T = std::decay_t<decltype(n)>;
          if constexpr (std::is_same_v<T, mech::DiscreteGaussian>) {
            return n.sigma();
          } else {
            return n.scale();
          }
        },
        noise_);
  }
  double HalfWidth(double level) const {
    return std::visit([level](const auto& n) { return n.ConfidenceHalfWidth(level); }, noise_);
  }
  std::string name() const {
    if (std::holds_alternative<mech::DiscreteLaplace>(noise_)) return "discrete Laplace";
    if (std::holds_alternative<mech::DiscreteGaussian>(noise_)) return "discrete Gaussian";
    return std::get<mech::SnappedNoise>(noise_).kind() == mech::NoiseKind::kLaplace
               ? "snapped Laplace"
               : "snapped Gaussian";
  }

 private:
  using Noise = std::variant<mech::DiscreteLaplace, mech::DiscreteGaussian, mech::SnappedNoise>;
  explicit QuantityNoise(const Noise& n) : noise_(n) {}
  Noise noise_;
};

// Everything computed from the plan and the budget alone.
struct Calibration {
  std::vector<std::vector<QuantityNoise>> column_noise;  // per output column, per input
  std::optional<mech::PartitionSelection> selection;
  PlannedRelease planned;
};

std::string FormatNumber(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, p);
}

std::string DescribeClamp(const rewriter::OutputColumn& c, int64_t rows_per_group) {
  if (!c.lower.has_value() || !c.upper.has_value()) {
    if (c.role == ColumnRole::kCount) {
      return "at most " + std::to_string(rows_per_group) + " rows per unit and group";
    }
    return "";
  }
  return c.source_column + " clamped to [" + FormatNumber(*c.lower) + ", " +
         FormatNumber(*c.upper) + "], at most " + std::to_string(rows_per_group) +
         " rows per unit and group";
}

Result<Calibration> Calibrate(const ReleasePlan& plan, const QueryBudget& budget) {
  int quantities = 0;
  for (const auto& c : plan.columns) quantities += static_cast<int>(c.inputs.size());
  const bool selection =
      plan.partition_selection.kind == rewriter::PartitionSelection::Kind::kThreshold;
  Calibration cal;
  cal.column_noise.resize(plan.columns.size());
  if (quantities == 0 && !selection) {
    // Only public group keys: answered from the config, nothing is spent.
    cal.planned.selection = "public keys from the config; nothing noised";
    return cal;
  }
  const auto kind = budget.mechanism == config::Mechanism::kGaussian ? mech::NoiseKind::kGaussian
                                                                     : mech::NoiseKind::kLaplace;
  auto split = mech::BudgetSplit::Build(budget.epsilon, budget.delta, quantities, selection, kind);
  if (!split.ok()) return split.error();
  const double level = mech::PerInputLevel(kReceiptLevel, 1);
  for (size_t i = 0; i < plan.columns.size(); ++i) {
    const auto& col = plan.columns[i];
    if (col.role == ColumnRole::kGroupKey) continue;
    ColumnReceipt receipt;
    receipt.name = col.name;
    receipt.role = rewriter::ToString(col.role);
    receipt.clamp = DescribeClamp(col, plan.max_rows_per_group);
    for (const auto& q : col.inputs) {
      auto noise = QuantityNoise::Build(q, split->per_aggregate(), budget.mechanism);
      if (!noise.ok()) return noise.error();
      receipt.epsilon += split->per_aggregate().epsilon;
      cal.column_noise[i].push_back(*noise);
    }
    if (!cal.column_noise[i].empty()) {
      const auto& main = cal.column_noise[i].front();
      receipt.mechanism = main.name();
      receipt.noise_scale = main.scale();
      // Counts and sums: the noise's own interval. AVG / VARIANCE divide by a
      // noisy count, so their error depends on the group's size: no
      // data-independent bound is printed for them (docs/PRIVACY.md §8).
      if (col.role == ColumnRole::kCount || col.role == ColumnRole::kCountDistinctUnits ||
          col.role == ColumnRole::kSum) {
        receipt.error_bound_95 = main.HalfWidth(level);
      }
    }
    cal.planned.receipts.push_back(std::move(receipt));
  }
  switch (plan.partition_selection.kind) {
    case rewriter::PartitionSelection::Kind::kThreshold: {
      auto ps =
          mech::PartitionSelection::Build(split->selection().epsilon, split->selection().delta,
                                          plan.partition_selection.max_groups_contributed);
      if (!ps.ok()) return ps.error();
      cal.planned.selection = ps->Describe();
      cal.selection = std::move(*ps);
      break;
    }
    case rewriter::PartitionSelection::Kind::kPublicKeys:
      cal.planned.selection = "public keys from the config: every declared key is released";
      break;
    case rewriter::PartitionSelection::Kind::kNone:
      cal.planned.selection = "none: one global row";
      break;
  }
  cal.planned.epsilon = split->total().epsilon;
  cal.planned.delta = split->total().delta;
  return cal;
}

// Parses an upstream numeric text value. NULL (an empty group's SUM) is 0.
Result<double> ParseNumber(const std::optional<std::string>& text, const std::string& column) {
  if (!text.has_value()) return 0.0;
  const char* begin = text->c_str();
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin || *end != '\0' || !std::isfinite(v)) {
    return PlanMismatch("column " + column + " is not a finite number");
  }
  return v;
}

using Row = std::vector<std::optional<std::string>>;

enum class Truth { kFalse, kTrue, kUnknown };

std::optional<double> AsNumber(const std::optional<std::string>& v) {
  if (!v.has_value()) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(v->c_str(), &end);
  if (end == v->c_str() || *end != '\0') return std::nullopt;
  return d;
}

// SQL three-valued logic over the released (noisy) values: HAVING is
// post-processing and costs no privacy.
Truth Evaluate(const rewriter::PostFilter& f, const Row& row) {
  using K = rewriter::PostFilter::Kind;
  switch (f.kind) {
    case K::kAnd: {
      Truth acc = Truth::kTrue;
      for (const auto& c : f.children) {
        const Truth t = Evaluate(c, row);
        if (t == Truth::kFalse) return Truth::kFalse;
        if (t == Truth::kUnknown) acc = Truth::kUnknown;
      }
      return acc;
    }
    case K::kOr: {
      Truth acc = Truth::kFalse;
      for (const auto& c : f.children) {
        const Truth t = Evaluate(c, row);
        if (t == Truth::kTrue) return Truth::kTrue;
        if (t == Truth::kUnknown) acc = Truth::kUnknown;
      }
      return acc;
    }
    case K::kNot: {
      if (f.children.empty()) return Truth::kUnknown;
      const Truth t = Evaluate(f.children[0], row);
      if (t == Truth::kUnknown) return t;
      return t == Truth::kTrue ? Truth::kFalse : Truth::kTrue;
    }
    case K::kIsNull:
    case K::kIsNotNull: {
      if (f.column < 0 || static_cast<size_t>(f.column) >= row.size()) return Truth::kUnknown;
      const bool is_null = !row[f.column].has_value();
      return (is_null == (f.kind == K::kIsNull)) ? Truth::kTrue : Truth::kFalse;
    }
    case K::kColumnIsTrue: {
      if (f.column < 0 || static_cast<size_t>(f.column) >= row.size()) return Truth::kUnknown;
      const auto& v = row[f.column];
      if (!v.has_value()) return Truth::kUnknown;
      return (*v == "t" || *v == "true") ? Truth::kTrue : Truth::kFalse;
    }
    case K::kCompare: {
      if (f.column < 0 || static_cast<size_t>(f.column) >= row.size()) return Truth::kUnknown;
      const auto& v = row[f.column];
      if (!v.has_value()) return Truth::kUnknown;
      int cmp = 0;
      if (f.constant_is_numeric) {
        const auto a = AsNumber(v);
        const auto b = AsNumber(f.constant);
        if (!a || !b) return Truth::kUnknown;
        cmp = (*a < *b) ? -1 : (*a > *b ? 1 : 0);
      } else {
        cmp = v->compare(f.constant);
        cmp = cmp < 0 ? -1 : (cmp > 0 ? 1 : 0);
      }
      bool r = false;
      if (f.op == "=")
        r = cmp == 0;
      else if (f.op == "<>" || f.op == "!=")
        r = cmp != 0;
      else if (f.op == "<")
        r = cmp < 0;
      else if (f.op == "<=")
        r = cmp <= 0;
      else if (f.op == ">")
        r = cmp > 0;
      else if (f.op == ">=")
        r = cmp >= 0;
      else
        return Truth::kUnknown;
      return r ? Truth::kTrue : Truth::kFalse;
    }
  }
  return Truth::kUnknown;
}

// ORDER BY over released values: numbers compare as numbers, other values
// byte-wise (documented: not the upstream collation).
bool Less(const Row& a, const Row& b, const std::vector<rewriter::OrderKey>& keys) {
  for (const auto& k : keys) {
    const auto& x = a[k.output_column];
    const auto& y = b[k.output_column];
    if (!x.has_value() || !y.has_value()) {
      if (x.has_value() == y.has_value()) continue;
      // A NULL sorts first when nulls_first, else last.
      const bool x_first = !x.has_value() ? k.nulls_first : !k.nulls_first;
      return x_first;
    }
    int cmp = 0;
    const auto nx = AsNumber(x);
    const auto ny = AsNumber(y);
    if (nx && ny) {
      cmp = (*nx < *ny) ? -1 : (*nx > *ny ? 1 : 0);
    } else {
      cmp = x->compare(*y);
      cmp = cmp < 0 ? -1 : (cmp > 0 ? 1 : 0);
    }
    if (cmp != 0) return k.descending ? cmp > 0 : cmp < 0;
  }
  return false;
}

const NoisedQuantity* FindInput(const rewriter::OutputColumn& c, const std::string& kind,
                                size_t* index) {
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    if (c.inputs[i].kind == kind) {
      *index = i;
      return &c.inputs[i];
    }
  }
  return nullptr;
}

}  // namespace

Result<PlannedRelease> PlanRelease(const ReleasePlan& plan, const QueryBudget& budget) {
  auto cal = Calibrate(plan, budget);
  if (!cal.ok()) return cal.error();
  return std::move(cal->planned);
}

Result<std::vector<Released::Field>> ReleasedFields(const ReleasePlan& plan,
                                                    const std::vector<int32_t>& sql_column_types) {
  if (sql_column_types.size() != plan.sql_columns.size()) {
    return PlanMismatch("wrong number of columns");
  }
  std::vector<Released::Field> fields;
  for (const auto& c : plan.columns) {
    Released::Field f;
    f.name = c.name;
    if (c.role == ColumnRole::kGroupKey) {
      if (c.group_key_sql_column < 0 ||
          static_cast<size_t>(c.group_key_sql_column) >= sql_column_types.size()) {
        return PlanMismatch("a group key outside the rewritten columns");
      }
      f.type_oid = sql_column_types[static_cast<size_t>(c.group_key_sql_column)];
    } else if (c.role == ColumnRole::kCount || c.role == ColumnRole::kCountDistinctUnits) {
      f.type_oid = kInt8Oid;
    } else {
      f.type_oid = kFloat8Oid;
    }
    fields.push_back(f);
  }
  return fields;
}

Result<Released> ApplyReleasePlan(const ReleasePlan& plan, const QueryBudget& budget,
                                  const UpstreamRows& upstream, mech::RandomSource& rng) {
  auto cal_result = Calibrate(plan, budget);
  if (!cal_result.ok()) return cal_result.error();
  Calibration& cal = *cal_result;
  const size_t width = plan.sql_columns.size();
  for (const auto& row : upstream.rows) {
    if (row.size() != width) return PlanMismatch("a row has the wrong number of columns");
  }
  if (upstream.type_oids.size() != width) return PlanMismatch("wrong number of columns");

  // The rows that take part in the release, before noise.
  std::vector<Row> candidates;
  using PSKind = rewriter::PartitionSelection::Kind;
  std::vector<size_t> key_columns;  // output columns that are group keys, in order
  for (size_t i = 0; i < plan.columns.size(); ++i) {
    if (plan.columns[i].role == ColumnRole::kGroupKey) key_columns.push_back(i);
  }
  switch (plan.partition_selection.kind) {
    case PSKind::kNone:
      if (upstream.rows.size() > 1) return PlanMismatch("a global aggregate returned many rows");
      // An empty table still releases its (noisy) zero row.
      candidates.push_back(upstream.rows.empty() ? Row(width) : upstream.rows.front());
      break;
    case PSKind::kThreshold: {
      const int units = plan.partition_selection.units_sql_column;
      if (units < 0 || static_cast<size_t>(units) >= width || !cal.selection.has_value()) {
        return PlanMismatch("no unit-count column for partition selection");
      }
      for (const auto& row : upstream.rows) {
        auto n = ParseNumber(row[units], "units");
        if (!n.ok()) return n.error();
        // The group is released with the probability the selection rule
        // gives its number of distinct units (docs/PRIVACY.md §5).
        if (cal.selection->Keep(std::llround(*n), rng)) candidates.push_back(row);
      }
      break;
    }
    case PSKind::kPublicKeys: {
      const auto& keys = plan.partition_selection.public_keys;
      if (keys.size() != key_columns.size()) {
        return MakeError("0A000",
                         "public group keys that are not in the select list are not yet "
                         "supported: add the GROUP BY columns to the SELECT list");
      }
      std::map<std::vector<std::string>, const Row*> by_key;
      for (const auto& row : upstream.rows) {
        std::vector<std::string> k;
        for (size_t c : key_columns) {
          const int sc = plan.columns[c].group_key_sql_column;
          k.push_back(row[sc].value_or(std::string()));
        }
        by_key[k] = &row;
      }
      // Cross product of the declared values, in declaration order. Keys the
      // data has but the config does not declare are never released.
      std::vector<size_t> idx(keys.size(), 0);
      bool any = !keys.empty();
      for (const auto& k : keys) any = any && !k.empty();
      while (any) {
        std::vector<std::string> k;
        for (size_t j = 0; j < keys.size(); ++j) k.push_back(keys[j][idx[j]]);
        auto it = by_key.find(k);
        Row row = it != by_key.end() ? *it->second : Row(width);
        for (size_t j = 0; j < key_columns.size(); ++j) {
          row[plan.columns[key_columns[j]].group_key_sql_column] = k[j];
        }
        candidates.push_back(std::move(row));
        size_t j = keys.size();
        while (j > 0) {
          --j;
          if (++idx[j] < keys[j].size()) break;
          idx[j] = 0;
          if (j == 0) any = false;
        }
      }
      break;
    }
  }

  Released out;
  auto fields = ReleasedFields(plan, upstream.type_oids);
  if (!fields.ok()) return fields.error();
  out.fields = std::move(*fields);
  const double level = mech::PerInputLevel(kReceiptLevel, 1);
  for (const Row& raw : candidates) {
    Row released(plan.columns.size());
    for (size_t i = 0; i < plan.columns.size(); ++i) {
      const auto& col = plan.columns[i];
      if (col.role == ColumnRole::kGroupKey) {
        released[i] = raw[col.group_key_sql_column];
        continue;
      }
      const auto& noise = cal.column_noise[i];
      if (noise.size() != col.inputs.size() || noise.empty()) {
        return PlanMismatch("column " + col.name + " has no noised inputs");
      }
      std::vector<double> noisy(col.inputs.size());
      for (size_t q = 0; q < col.inputs.size(); ++q) {
        const int sc = col.inputs[q].sql_column;
        if (sc < 0 || static_cast<size_t>(sc) >= width) return PlanMismatch("bad input column");
        auto v = ParseNumber(raw[sc], plan.sql_columns[sc]);
        if (!v.ok()) return v.error();
        noisy[q] = noise[q].Add(*v, rng);
      }
      switch (col.role) {
        case ColumnRole::kCount:
        case ColumnRole::kCountDistinctUnits: {
          // Post-processing: a count is never negative (docs/PRIVACY.md §8).
          const auto e = mech::EstimateCount(noisy[0], noise[0].HalfWidth(level));
          released[i] = std::to_string(std::llround(e.value));
          break;
        }
        case ColumnRole::kSum:
          released[i] = FormatNumber(noisy[0]);
          break;
        case ColumnRole::kAvg:
        case ColumnRole::kVariance:
        case ColumnRole::kStddev: {
          if (!col.lower.has_value() || !col.upper.has_value()) {
            return PlanMismatch("column " + col.name + " has no bounds");
          }
          size_t s_i = 0, n_i = 0, q_i = 0;
          const bool has_sum = FindInput(col, "centred_sum", &s_i) != nullptr;
          const bool has_count = FindInput(col, "count", &n_i) != nullptr;
          if (!has_sum || !has_count) {
            return PlanMismatch("column " + col.name + " lacks its sum or count");
          }
          const double lvl = mech::PerInputLevel(kReceiptLevel, 2);
          mech::Estimate e;
          if (col.role == ColumnRole::kAvg) {
            e = mech::EstimateAverage(noisy[s_i], noise[s_i].HalfWidth(lvl), noisy[n_i],
                                      noise[n_i].HalfWidth(lvl), *col.lower, *col.upper);
          } else {
            if (FindInput(col, "centred_sum_of_squares", &q_i) == nullptr) {
              return PlanMismatch("column " + col.name + " lacks its sum of squares");
            }
            const double lvl3 = mech::PerInputLevel(kReceiptLevel, 3);
            e = col.role == ColumnRole::kVariance
                    ? mech::EstimateVariance(noisy[s_i], noise[s_i].HalfWidth(lvl3), noisy[q_i],
                                             noise[q_i].HalfWidth(lvl3), noisy[n_i],
                                             noise[n_i].HalfWidth(lvl3), *col.lower, *col.upper)
                    : mech::EstimateStddev(noisy[s_i], noise[s_i].HalfWidth(lvl3), noisy[q_i],
                                           noise[q_i].HalfWidth(lvl3), noisy[n_i],
                                           noise[n_i].HalfWidth(lvl3), *col.lower, *col.upper);
          }
          released[i] = FormatNumber(e.value);
          break;
        }
        case ColumnRole::kGroupKey:
          break;
      }
    }
    out.rows.push_back(std::move(released));
  }

  // Post-processing on released values only.
  if (plan.having.has_value()) {
    std::erase_if(out.rows,
                  [&](const Row& r) { return Evaluate(*plan.having, r) != Truth::kTrue; });
  }
  for (const auto& k : plan.order_by) {
    if (k.output_column < 0 || static_cast<size_t>(k.output_column) >= plan.columns.size()) {
      return PlanMismatch("ORDER BY names a column that is not in the output");
    }
  }
  if (!plan.order_by.empty()) {
    std::stable_sort(out.rows.begin(), out.rows.end(),
                     [&](const Row& a, const Row& b) { return Less(a, b, plan.order_by); });
  }
  const auto offset = static_cast<size_t>(std::max<int64_t>(0, plan.offset.value_or(0)));
  if (offset > 0)
    out.rows.erase(out.rows.begin(), out.rows.begin() + std::min(offset, out.rows.size()));
  if (plan.limit.has_value() &&
      static_cast<size_t>(std::max<int64_t>(0, *plan.limit)) < out.rows.size()) {
    out.rows.resize(static_cast<size_t>(std::max<int64_t>(0, *plan.limit)));
  }
  out.receipts = std::move(cal.planned.receipts);
  out.selection = std::move(cal.planned.selection);
  out.epsilon_charged = cal.planned.epsilon;
  out.delta_charged = cal.planned.delta;
  return out;
}

}  // namespace dpgate::proxy
