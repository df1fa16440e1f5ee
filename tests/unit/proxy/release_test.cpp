// Applying a ReleasePlan: budget split, noise within its stated bounds,
// partition selection, public keys, post-processing, and refusal of results
// that do not match the plan. Deterministic RNG for repeatability; bounds are
// derived from the mechanisms' own confidence intervals at 1 - 1e-7.
#include <catch2/catch.hpp>
#include <cmath>

#include "dpgate/mechanisms/discrete_laplace.h"
#include "dpgate/mechanisms/partition_selection.h"
#include "dpgate/mechanisms/random_source.h"
#include "dpgate/proxy/release.h"

using dpgate::mechanisms::DeterministicRandomSource;
using dpgate::proxy::ApplyReleasePlan;
using dpgate::proxy::PlanRelease;
using dpgate::proxy::QueryBudget;
using dpgate::proxy::UpstreamRows;
using namespace dpgate::rewriter;

namespace {

NoisedQuantity Quantity(const std::string& kind, int column, double per_group) {
  NoisedQuantity q;
  q.kind = kind;
  q.sql_column = column;
  q.sensitivity.per_group = per_group;
  q.sensitivity.max_groups = 1;
  return q;
}

// SELECT region, count(*) FROM t GROUP BY region  (thresholded)
// rewritten SQL columns: region, dp_count, dp_units
ReleasePlan GroupCountPlan() {
  ReleasePlan p;
  p.sql_columns = {"region", "dp_count", "dp_units"};
  OutputColumn key;
  key.name = "region";
  key.role = ColumnRole::kGroupKey;
  key.group_key_sql_column = 0;
  OutputColumn count;
  count.name = "count";
  count.role = ColumnRole::kCount;
  count.type = ValueType::kInt8;
  count.inputs = {Quantity("count", 1, 1)};
  p.columns = {key, count};
  p.partition_selection.kind = PartitionSelection::Kind::kThreshold;
  p.partition_selection.units_sql_column = 2;
  p.partition_selection.max_groups_contributed = 1;
  return p;
}

QueryBudget Budget(double epsilon, double delta) {
  QueryBudget b;
  b.epsilon = epsilon;
  b.delta = delta;
  return b;
}

}  // namespace

TEST_CASE("the whole query budget is spent, split between quantities and selection") {
  auto planned = PlanRelease(GroupCountPlan(), Budget(1.0, 1e-6));
  REQUIRE(planned.ok());
  CHECK(planned->epsilon == Approx(1.0));
  CHECK(planned->delta == Approx(1e-6));
  REQUIRE(planned->receipts.size() == 1);
  CHECK(planned->receipts[0].name == "count");
  CHECK(planned->receipts[0].mechanism == "discrete Laplace");
  CHECK(planned->receipts[0].epsilon < 1.0);  // part went to partition selection
  CHECK(planned->receipts[0].error_bound_95.has_value());
  // No budget at all is refused, not silently released.
  CHECK_FALSE(PlanRelease(GroupCountPlan(), Budget(0, 1e-6)).ok());
  // Partition selection needs δ > 0.
  CHECK_FALSE(PlanRelease(GroupCountPlan(), Budget(1, 0)).ok());
}

TEST_CASE("large groups are released with noisy counts near the truth, one-unit groups are not") {
  DeterministicRandomSource rng(7);
  UpstreamRows up;
  up.column_names = {"region", "dp_count", "dp_units"};
  up.type_oids = {25, 20, 20};
  for (int g = 0; g < 200; ++g) {
    up.rows.push_back({"big" + std::to_string(g), std::string("5000"), std::string("5000")});
    up.rows.push_back({"tiny" + std::to_string(g), std::string("1"), std::string("1")});
  }
  const auto budget = Budget(1.0, 1e-9);
  auto planned = PlanRelease(GroupCountPlan(), budget);
  REQUIRE(planned.ok());
  auto released = ApplyReleasePlan(GroupCountPlan(), budget, up, rng);
  REQUIRE(released.ok());
  // Noise bound at level 1 - 1e-7 per value (union over 200 values: < 2e-5
  // is too loose, so use 1 - 1e-9 per value: total failure < 1e-6).
  auto noise = dpgate::mechanisms::DiscreteLaplace::Build(planned->receipts[0].epsilon,
                                                          dpgate::mechanisms::Sensitivity{1, 1});
  REQUIRE(noise.ok());
  const double bound = noise->ConfidenceHalfWidth(1 - 1e-9);
  int big = 0;
  for (const auto& row : released->rows) {
    REQUIRE(row[0].has_value());
    // With δ_sel ≤ 1e-9, a one-unit group is kept with probability ≤ 1e-9
    // each: P(any of 200 kept) ≤ 2e-7.
    CHECK(row[0]->rfind("tiny", 0) != 0);
    if (row[0]->rfind("big", 0) == 0) {
      ++big;
      CHECK(std::abs(std::stod(*row[1]) - 5000) <= bound);
    }
  }
  // A 5000-unit group is always kept by the selection rule at these parameters.
  CHECK(big == 200);
  REQUIRE(released->fields.size() == 2);
  CHECK(released->fields[1].type_oid == 20);
}

TEST_CASE("public keys release exactly the declared keys, empty ones too") {
  ReleasePlan p = GroupCountPlan();
  p.partition_selection = {};
  p.partition_selection.kind = PartitionSelection::Kind::kPublicKeys;
  p.partition_selection.public_keys = {{"north", "south", "east"}};
  UpstreamRows up;
  up.column_names = {"region", "dp_count", "dp_units"};
  up.type_oids = {25, 20, 20};
  up.rows = {{std::string("north"), std::string("100"), std::string("100")},
             {std::string("secret-undeclared"), std::string("1"), std::string("1")}};
  DeterministicRandomSource rng(11);
  auto r = ApplyReleasePlan(p, Budget(1.0, 0), up, rng);
  REQUIRE(r.ok());
  REQUIRE(r->rows.size() == 3);
  CHECK(*r->rows[0][0] == "north");
  CHECK(*r->rows[1][0] == "south");
  CHECK(*r->rows[2][0] == "east");
  for (const auto& row : r->rows) CHECK(*row[0] != "secret-undeclared");
  // Empty keys come back as non-negative noisy counts.
  CHECK(std::stol(*r->rows[1][1]) >= 0);
}

TEST_CASE("HAVING, ORDER BY and LIMIT apply to released values") {
  ReleasePlan p = GroupCountPlan();
  p.partition_selection = {};
  p.partition_selection.kind = PartitionSelection::Kind::kPublicKeys;
  p.partition_selection.public_keys = {{"a", "b", "c", "d"}};
  PostFilter having;
  having.kind = PostFilter::Kind::kCompare;
  having.column = 1;
  having.op = ">";
  having.constant = "500";
  having.constant_is_numeric = true;
  p.having = having;
  p.order_by = {OrderKey{1, true, false}};
  p.limit = 2;
  UpstreamRows up;
  up.column_names = {"region", "dp_count", "dp_units"};
  up.type_oids = {25, 20, 20};
  up.rows = {{std::string("a"), std::string("1000"), std::string("1000")},
             {std::string("b"), std::string("3000"), std::string("3000")},
             {std::string("c"), std::string("2000"), std::string("2000")},
             {std::string("d"), std::string("10"), std::string("10")}};
  DeterministicRandomSource rng(3);
  // ε = 5 for one quantity: scale 0.2; values differ by ≥ 1000, so the
  // order and the filter cannot flip.
  auto r = ApplyReleasePlan(p, Budget(5.0, 0), up, rng);
  REQUIRE(r.ok());
  REQUIRE(r->rows.size() == 2);
  CHECK(*r->rows[0][0] == "b");
  CHECK(*r->rows[1][0] == "c");
}

TEST_CASE("results that do not match the plan are refused, never released") {
  DeterministicRandomSource rng(5);
  UpstreamRows up;
  up.column_names = {"region", "dp_count"};
  up.type_oids = {25, 20};
  up.rows = {{std::string("north"), std::string("12")}};
  CHECK_FALSE(ApplyReleasePlan(GroupCountPlan(), Budget(1, 1e-6), up, rng).ok());
  UpstreamRows bad;
  bad.column_names = {"region", "dp_count", "dp_units"};
  bad.type_oids = {25, 20, 20};
  bad.rows = {{std::string("north"), std::string("not-a-number"), std::string("5000")}};
  CHECK_FALSE(ApplyReleasePlan(GroupCountPlan(), Budget(1, 1e-6), bad, rng).ok());
}

TEST_CASE("a global aggregate over an empty table still releases one noisy row") {
  ReleasePlan p = GroupCountPlan();
  p.columns.erase(p.columns.begin());
  p.partition_selection = {};
  UpstreamRows up;
  up.column_names = {"region", "dp_count", "dp_units"};
  up.type_oids = {25, 20, 20};
  DeterministicRandomSource rng(9);
  auto r = ApplyReleasePlan(p, Budget(1, 0), up, rng);
  REQUIRE(r.ok());
  REQUIRE(r->rows.size() == 1);
  CHECK(std::stol(*r->rows[0][0]) >= 0);
}
