// The rewritten SQL of private aggregates, executed on a real PostgreSQL 15.
// No noise is added here: the rewritten query returns the bounded pre-noise
// aggregates the proxy would noise, so these tests check the claims of
// docs/REWRITER.md §7–§8 on data: one unit's effect on each group is at most
// what its sensitivity says, it reaches at most k groups, NULL values and
// NULL units are handled as documented, and with loose bounds and small
// units the answer is the true aggregate.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../../unit/rewriter/fixtures.h"
#include "dpgate/rewriter/rewriter.h"
#include "test_pg.h"

namespace dpgate::rewriter {
namespace {

using dpgate::testing::TestPg;

// Classifies `sql` (one statement) and requires a private aggregate.
StatementResult RewritePrivate(const std::string& sql, const config::Config& config,
                               std::vector<std::string> search_path = {"$user", "public"}) {
  SessionContext session;
  session.user = "alice";
  session.search_path = std::move(search_path);
  auto results = Classify(sql, config, session);
  REQUIRE(results.ok());
  REQUIRE(results->size() == 1);
  const StatementResult& result = results->front();
  INFO(sql << "\n-> " << result.reason.message);
  REQUIRE(result.statement_class == StatementClass::kPrivateAggregate);
  REQUIRE(result.plan.has_value());
  return result;
}

pqxx::result Run(const TestPg& pg, const std::string& db, const std::string& sql) {
  pqxx::connection connection(pg.Dsn(db));
  pqxx::nontransaction tx(connection);
  return tx.exec(sql);
}

// The rewritten SQL's column holding input `input` of output column `column`.
int QuantityColumn(const ReleasePlan& plan, size_t column, size_t input) {
  REQUIRE(column < plan.columns.size());
  REQUIRE(input < plan.columns[column].inputs.size());
  return plan.columns[column].inputs[input].sql_column;
}

int UnitsColumn(const ReleasePlan& plan) {
  const auto& cols = plan.sql_columns;
  REQUIRE(!cols.empty());
  REQUIRE(cols.back() == "dp_units");
  return static_cast<int>(cols.size()) - 1;
}

// A NULL pre-noise sum is treated as 0 by the proxy (docs/REWRITER.md §8.2).
double NumberOrZero(const pqxx::field& field) {
  return field.is_null() ? 0.0 : field.as<double>();
}

double ScalarQuantity(const pqxx::result& rows, int column) {
  REQUIRE(rows.size() == 1);
  return NumberOrZero(rows[0][column]);
}

// One group's pre-noise quantities, keyed by the sql column index.
using GroupValues = std::map<int, double>;

// Reads a grouped rewritten result: group key (column 0, as text) -> values.
std::map<std::string, GroupValues> ByGroup(const pqxx::result& rows, const ReleasePlan& plan) {
  REQUIRE(rows.columns() == static_cast<pqxx::row::size_type>(plan.sql_columns.size()));
  for (size_t i = 0; i < plan.sql_columns.size(); ++i) {
    REQUIRE(std::string(rows.column_name(static_cast<pqxx::row::size_type>(i))) ==
            plan.sql_columns[i]);
  }
  std::map<std::string, GroupValues> out;
  for (const auto& row : rows) {
    const std::string key = row[0].is_null() ? "<null>" : row[0].c_str();
    REQUIRE(out.count(key) == 0);  // one row per group
    GroupValues values;
    for (pqxx::row::size_type i = 1; i < row.size(); ++i) values[i] = NumberOrZero(row[i]);
    out[key] = values;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Crafted data: schema "exec", private table visits(uid, grp, amount) with
// k = 3, c = 2 and amount in [-5, 10]; private table people(uid, grp, x) with
// loose bounds for the exactness tests.

constexpr int kMaxGroups = 3;  // k
constexpr int kMaxRows = 2;    // c
constexpr double kLower = -5;
constexpr double kUpper = 10;

config::Config MakeExecConfig() {
  config::Config config;
  config.query.max_epsilon = 2.0;
  config::Dataset dataset;
  dataset.name = "exec";
  config::TableSpec visits = testing::PrivateTable("exec", "visits", "uid", kMaxGroups, kMaxRows);
  visits.columns.push_back({"amount", kLower, kUpper, {}});
  visits.columns.push_back({"grp", std::nullopt, std::nullopt, {}});
  dataset.tables.push_back(visits);
  config::TableSpec people = testing::PrivateTable("exec", "people", "uid", 10, 10);
  people.columns.push_back({"x", -1000.0, 3000.0, {}});
  dataset.tables.push_back(people);
  config::TableSpec copies;  // public: joined to multiply private rows
  copies.schema = "exec";
  copies.name = "copies";
  copies.is_public = true;
  dataset.tables.push_back(copies);
  config.datasets.push_back(dataset);
  return config;
}

// 300 small units, each with one or two rows (amount within bounds) in at
// most three of the groups 0..39; groups 40..49 hold no small unit. Plus, when
// `with_heavy_unit`, unit 0 with 10,000 rows: 200 in each of the 50 groups,
// every amount 100 (far above the upper bound 10).
void LoadVisits(const TestPg& pg, const std::string& db) {
  dpgate::testing::ExecSql(pg, db, R"(
    CREATE SCHEMA exec;
    CREATE TABLE exec.visits (uid int, grp int, amount double precision);
    INSERT INTO exec.visits
      SELECT u, (u + j * 7) % 40, ((u * 3 + j) % 16) - 5
      FROM generate_series(1, 300) AS u, generate_series(0, 2) AS j,
           generate_series(1, 2) AS r
      WHERE j <= u % 3 AND r <= 1 + (u + j) % 2;
    INSERT INTO exec.visits
      SELECT 0, g, 100 FROM generate_series(0, 49) AS g, generate_series(1, 200);
  )");
}

TEST_CASE("execution: one unit with 10,000 rows in 50 groups moves each group by at most c") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_heavy");
  LoadVisits(pg, db);
  {
    const auto heavy =
        Run(pg, db, "SELECT count(*), count(DISTINCT grp) FROM exec.visits WHERE uid = 0");
    REQUIRE(heavy[0][0].as<int>() == 10000);
    REQUIRE(heavy[0][1].as<int>() == 50);
  }
  const config::Config config = MakeExecConfig();
  const StatementResult result = RewritePrivate(
      "SELECT grp, count(*) AS n, sum(amount) AS total, count(DISTINCT uid) AS units "
      "FROM exec.visits GROUP BY grp",
      config);
  const ReleasePlan& plan = *result.plan;
  REQUIRE(plan.max_groups_contributed == kMaxGroups);
  REQUIRE(plan.max_rows_per_group == kMaxRows);
  const int count_col = QuantityColumn(plan, 1, 0);
  const int sum_col = QuantityColumn(plan, 2, 0);
  const int units_col = UnitsColumn(plan);
  // The plan's sensitivities are the bounds checked on the data below.
  const double count_delta = plan.columns[1].inputs[0].sensitivity.per_group;
  const double sum_delta = plan.columns[2].inputs[0].sensitivity.per_group;
  REQUIRE(count_delta == kMaxRows);
  REQUIRE(sum_delta == kMaxRows * std::max(std::abs(kLower), std::abs(kUpper)));

  // Several runs: which k groups survive is random (row_number over random()),
  // the bound must hold for every draw.
  std::vector<std::map<std::string, GroupValues>> with_runs;
  for (int run = 0; run < 4; ++run)
    with_runs.push_back(ByGroup(Run(pg, db, result.rewritten_sql), plan));

  dpgate::testing::ExecSql(pg, db, "DELETE FROM exec.visits WHERE uid = 0");
  const auto without = ByGroup(Run(pg, db, result.rewritten_sql), plan);
  REQUIRE(without.size() == 40);

  // Without the heavy unit every unit is small (≤ c rows per group, ≤ k
  // groups, amounts within bounds): the bounded answer is the true aggregate,
  // computed independently here.
  const auto truth = Run(pg, db,
                         "SELECT grp::text, count(*), sum(amount), count(DISTINCT uid) "
                         "FROM exec.visits GROUP BY grp");
  REQUIRE(truth.size() == without.size());
  for (const auto& row : truth) {
    const auto& got = without.at(row[0].c_str());
    CHECK(got.at(count_col) == row[1].as<double>());
    CHECK(got.at(sum_col) == Approx(row[2].as<double>()).margin(1e-9));
    CHECK(got.at(units_col) == row[3].as<double>());
  }

  for (const auto& with : with_runs) {
    // The heavy unit adds at most k groups (here: exactly k, all among the
    // 50 it is in) and changes at most k existing ones.
    std::set<std::string> touched;
    for (const auto& [key, values] : with) {
      const auto it = without.find(key);
      const GroupValues base = it == without.end()
                                   ? GroupValues{{count_col, 0}, {sum_col, 0}, {units_col, 0}}
                                   : it->second;
      const double dcount = values.at(count_col) - base.at(count_col);
      const double dsum = values.at(sum_col) - base.at(sum_col);
      const double dunits = values.at(units_col) - base.at(units_col);
      CHECK(std::abs(dcount) <= count_delta);
      CHECK(std::abs(dsum) <= sum_delta);
      CHECK(std::abs(dunits) <= 1);
      if (dcount != 0 || dsum != 0 || dunits != 0) {
        touched.insert(key);
        // Its 200 rows of 100 in a kept group: count clamped to c, each value
        // clamped to 10, the partial sum clamped to c·hi.
        CHECK(dcount == kMaxRows);
        CHECK(dsum == kMaxRows * kUpper);
        CHECK(dunits == 1);
      }
    }
    for (const auto& [key, values] : without) REQUIRE(with.count(key) == 1);
    CHECK(touched.size() == static_cast<size_t>(kMaxGroups));
    CHECK(with.size() - without.size() <= static_cast<size_t>(kMaxGroups));
  }
}

// A subquery or CTE in FROM that projects and filters is merged into the
// outer query (docs/REWRITER.md §5.4): renamed columns keep their bounds, the
// heavy unit moves each group by at most what the plan says and reaches at
// most k groups, and without it the answer is the true aggregate.
TEST_CASE("execution: subqueries and CTEs in FROM are bounded like the flat query") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_derived");
  LoadVisits(pg, db);
  const config::Config config = MakeExecConfig();
  const std::vector<std::string> forms = {
      "SELECT t.g, count(*) AS n, sum(t.a) AS total FROM (SELECT uid, grp AS g, amount AS a "
      "FROM exec.visits WHERE amount > -100) AS t GROUP BY t.g",
      "WITH v AS (SELECT * FROM exec.visits WHERE amount > -100) "
      "SELECT v.grp, count(*) AS n, sum(v.amount) AS total FROM v GROUP BY v.grp",
      "SELECT g, count(*) AS n, sum(a) AS total FROM (SELECT grp AS g, a FROM (SELECT grp, "
      "amount AS a FROM exec.visits) AS inner_rows WHERE a > -100) AS t GROUP BY g"};
  std::vector<StatementResult> results;
  std::vector<std::map<std::string, GroupValues>> with;
  for (const auto& sql : forms) {
    results.push_back(RewritePrivate(sql, config));
    const ReleasePlan& plan = *results.back().plan;
    REQUIRE(plan.max_groups_contributed == kMaxGroups);
    REQUIRE(plan.columns[2].lower == std::optional<double>(kLower));
    REQUIRE(plan.columns[2].upper == std::optional<double>(kUpper));
    with.push_back(ByGroup(Run(pg, db, results.back().rewritten_sql), plan));
  }
  dpgate::testing::ExecSql(pg, db, "DELETE FROM exec.visits WHERE uid = 0");
  const auto truth = Run(pg, db,
                         "SELECT grp::text, count(*), sum(amount) FROM exec.visits "
                         "WHERE amount > -100 GROUP BY grp");
  REQUIRE(truth.size() == 40);
  for (size_t f = 0; f < forms.size(); ++f) {
    INFO(forms[f] << "\n-> " << results[f].rewritten_sql);
    const ReleasePlan& plan = *results[f].plan;
    const int count_col = QuantityColumn(plan, 1, 0);
    const int sum_col = QuantityColumn(plan, 2, 0);
    const double count_delta = plan.columns[1].inputs[0].sensitivity.per_group;
    const double sum_delta = plan.columns[2].inputs[0].sensitivity.per_group;
    const auto without = ByGroup(Run(pg, db, results[f].rewritten_sql), plan);
    REQUIRE(without.size() == truth.size());
    for (const auto& row : truth) {
      const auto& got = without.at(row[0].c_str());
      CHECK(got.at(count_col) == row[1].as<double>());
      CHECK(got.at(sum_col) == Approx(row[2].as<double>()).margin(1e-9));
    }
    int touched = 0;
    for (const auto& [key, values] : with[f]) {
      const auto it = without.find(key);
      const double base_count = it == without.end() ? 0 : it->second.at(count_col);
      const double base_sum = it == without.end() ? 0 : it->second.at(sum_col);
      CHECK(std::abs(values.at(count_col) - base_count) <= count_delta);
      CHECK(std::abs(values.at(sum_col) - base_sum) <= sum_delta);
      if (values.at(count_col) != base_count) ++touched;
    }
    CHECK(touched == kMaxGroups);
  }
}

// Two private tables of one dataset joined on their units (docs/REWRITER.md
// §5.5): the first table's unit partitions the joined rows, so a unit with
// many rows on both sides (a 100 × 50 fan-out) still moves each group by at
// most c and reaches at most k groups; with small units the answer is the
// raw join's. Units whose types compare equal across distinct values
// (bigint vs double precision above 2^53) are not joined.
TEST_CASE("execution: two private tables joined on the unit keep one unit's bounds") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_private_join");
  dpgate::testing::ExecSql(pg, db, R"(
    CREATE SCHEMA exj;
    CREATE TABLE exj.accounts (uid bigint, grp int, v double precision);
    CREATE TABLE exj.payments (uid double precision, w double precision);
    -- 200 small units: one account row, one or no payment.
    INSERT INTO exj.accounts SELECT u, u % 20, u % 9 FROM generate_series(2, 201) AS u;
    INSERT INTO exj.payments SELECT u, u % 70 FROM generate_series(2, 201) AS u WHERE u % 3 <> 0;
    -- Unit 1: 100 account rows over 10 groups, 50 payments of 1000 each.
    INSERT INTO exj.accounts SELECT 1, g % 10, 50 FROM generate_series(1, 100) AS g;
    INSERT INTO exj.payments SELECT 1, 1000 FROM generate_series(1, 50);
  )");
  config::Config config;
  config.query.max_epsilon = 2.0;
  config::Dataset dataset;
  dataset.name = "exj";
  config::TableSpec accounts = testing::PrivateTable("exj", "accounts", "uid", 2, 1);
  accounts.columns.push_back({"v", 0.0, 10.0, {}});
  dataset.tables.push_back(accounts);
  config::TableSpec payments = testing::PrivateTable("exj", "payments", "uid", 1, 2);
  payments.columns.push_back({"w", 0.0, 100.0, {}});
  dataset.tables.push_back(payments);
  config.datasets.push_back(dataset);

  const StatementResult result = RewritePrivate(
      "SELECT a.grp, count(*) AS n, sum(p.w) AS paid FROM exj.accounts a "
      "JOIN exj.payments p ON a.uid = p.uid GROUP BY a.grp",
      config);
  const ReleasePlan& plan = *result.plan;
  REQUIRE(plan.joined_tables == std::vector<std::string>{"exj.payments"});
  REQUIRE(plan.max_groups_contributed == 2);  // the larger k
  REQUIRE(plan.max_rows_per_group == 2);      // the larger c
  const int count_col = QuantityColumn(plan, 1, 0);
  const int sum_col = QuantityColumn(plan, 2, 0);
  const double count_delta = plan.columns[1].inputs[0].sensitivity.per_group;
  const double sum_delta = plan.columns[2].inputs[0].sensitivity.per_group;
  REQUIRE(count_delta == 2);
  REQUIRE(sum_delta == 200);

  std::vector<std::map<std::string, GroupValues>> with_runs;
  for (int run = 0; run < 3; ++run)
    with_runs.push_back(ByGroup(Run(pg, db, result.rewritten_sql), plan));
  dpgate::testing::ExecSql(pg, db,
                           "DELETE FROM exj.accounts WHERE uid = 1; "
                           "DELETE FROM exj.payments WHERE uid = 1");
  const auto without = ByGroup(Run(pg, db, result.rewritten_sql), plan);
  const auto truth = Run(pg, db,
                         "SELECT a.grp::text, count(*), sum(p.w) FROM exj.accounts a "
                         "JOIN exj.payments p ON a.uid = p.uid GROUP BY a.grp");
  REQUIRE(truth.size() == 20);
  REQUIRE(without.size() == truth.size());
  for (const auto& row : truth) {
    const auto& got = without.at(row[0].c_str());
    CHECK(got.at(count_col) == row[1].as<double>());
    CHECK(got.at(sum_col) == Approx(row[2].as<double>()).margin(1e-9));
  }
  for (const auto& with : with_runs) {
    int touched = 0;
    for (const auto& [key, values] : with) {
      const auto& base = without.at(key);
      const double dcount = values.at(count_col) - base.at(count_col);
      const double dsum = values.at(sum_col) - base.at(sum_col);
      CHECK(std::abs(dcount) <= count_delta);
      CHECK(std::abs(dsum) <= sum_delta);
      if (dcount != 0 || dsum != 0) ++touched;
    }
    CHECK(touched == 2);  // k groups of the 10 the 5,000 joined rows are in
  }

  // 2^53 + 1 as bigint equals 2^53 as double precision under PostgreSQL's
  // own comparison (the bigint is converted), but they are different units.
  dpgate::testing::ExecSql(pg, db,
                           "INSERT INTO exj.accounts VALUES (9007199254740993, 0, 1); "
                           "INSERT INTO exj.payments VALUES (9007199254740992, 5)");
  const auto native = Run(pg, db,
                          "SELECT count(*) FROM exj.accounts a JOIN exj.payments p "
                          "ON a.uid = p.uid WHERE a.uid > 1000000");
  REQUIRE(native[0][0].as<int>() == 1);  // not vacuous: the native join matches them
  const StatementResult big = RewritePrivate(
      "SELECT count(*) AS n FROM exj.accounts a JOIN exj.payments p ON a.uid = p.uid "
      "WHERE a.uid > 1000000",
      config);
  CHECK(ScalarQuantity(Run(pg, db, big.rewritten_sql), QuantityColumn(*big.plan, 0, 0)) == 0);
}

// A join with a public table multiplies every private row (five copies per
// group here), and an outer join adds rows whose unit is NULL: per-unit
// pre-aggregation runs on the joined rows, so the bounds still hold per unit
// and the NULL-extended rows are dropped (docs/REWRITER.md §5.1, §8.2).
TEST_CASE("execution: joins that multiply rows or add NULL units keep the bounds") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_join");
  LoadVisits(pg, db);
  dpgate::testing::ExecSql(pg, db, R"(
    CREATE TABLE exec.copies (grp int, copy int);
    INSERT INTO exec.copies SELECT g, c FROM generate_series(0, 59) AS g, generate_series(1, 5) AS c;
  )");
  const config::Config config = MakeExecConfig();
  const StatementResult grouped = RewritePrivate(
      "SELECT v.grp, count(*) AS n, sum(v.amount) AS total FROM exec.visits v "
      "JOIN exec.copies c ON c.grp = v.grp GROUP BY v.grp",
      config);
  const ReleasePlan& plan = *grouped.plan;
  const int count_col = QuantityColumn(plan, 1, 0);
  const int sum_col = QuantityColumn(plan, 2, 0);
  const int units_col = UnitsColumn(plan);
  const auto with = ByGroup(Run(pg, db, grouped.rewritten_sql), plan);
  dpgate::testing::ExecSql(pg, db, "DELETE FROM exec.visits WHERE uid = 0");
  const auto without = ByGroup(Run(pg, db, grouped.rewritten_sql), plan);

  // Without the heavy unit, small units have up to 2 × 5 joined rows per
  // group: the hand-written per-unit clamp over the join is the answer.
  const auto truth = Run(pg, db, R"(
    SELECT grp::text, sum(least(n, 2)), sum(least(greatest(s, -10), 20)), count(*)
    FROM (SELECT v.uid, v.grp, count(*) AS n,
                 coalesce(sum(least(greatest(v.amount, -5), 10)), 0) AS s
          FROM exec.visits v JOIN exec.copies c ON c.grp = v.grp
          WHERE v.uid IS NOT NULL GROUP BY v.uid, v.grp) AS per_unit
    GROUP BY grp)");
  REQUIRE(truth.size() == without.size());
  for (const auto& row : truth) {
    const auto& got = without.at(row[0].c_str());
    CHECK(got.at(count_col) == row[1].as<double>());
    CHECK(got.at(sum_col) == Approx(row[2].as<double>()).margin(1e-9));
    CHECK(got.at(units_col) == row[3].as<double>());
  }
  // The heavy unit's 1,000 joined rows per group still move ≤ k groups by c.
  int touched = 0;
  for (const auto& [key, values] : with) {
    const auto it = without.find(key);
    const double base_count = it == without.end() ? 0 : it->second.at(count_col);
    const double base_sum = it == without.end() ? 0 : it->second.at(sum_col);
    const double dcount = values.at(count_col) - base_count;
    const double dsum = values.at(sum_col) - base_sum;
    CHECK(dcount >= 0);
    CHECK(dcount <= kMaxRows);
    CHECK(std::abs(dsum) <= kMaxRows * std::max(std::abs(kLower), std::abs(kUpper)));
    if (dcount != 0 || dsum != 0) ++touched;
  }
  CHECK(touched == kMaxGroups);

  // RIGHT JOIN: groups 40..59 of `copies` match no remaining visit, so their
  // rows have a NULL unit and must not be counted (as one pooled "unit").
  const StatementResult right = RewritePrivate(
      "SELECT count(*) FROM exec.visits v RIGHT JOIN exec.copies c ON c.grp = v.grp", config);
  const auto right_rows = Run(pg, db, right.rewritten_sql);
  const auto right_truth = Run(pg, db, R"(
    SELECT sum(least(n, 2)), count(*)
    FROM (SELECT v.uid, count(*) AS n FROM exec.visits v JOIN exec.copies c ON c.grp = v.grp
          WHERE v.uid IS NOT NULL GROUP BY v.uid) AS per_unit)");
  CHECK(ScalarQuantity(right_rows, QuantityColumn(*right.plan, 0, 0)) ==
        right_truth[0][0].as<double>());
  CHECK(ScalarQuantity(right_rows, UnitsColumn(*right.plan)) == right_truth[0][1].as<double>());
  CHECK(Run(pg, db,
            "SELECT count(*) FROM exec.visits v RIGHT JOIN exec.copies c ON c.grp = v.grp "
            "WHERE v.uid IS NULL")[0][0]
            .as<int>() == 100);
}

TEST_CASE("execution: a heavy unit in a global aggregate moves count and sum by at most c") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_global");
  LoadVisits(pg, db);
  // Make the heavy unit's values negative: the sum moves by c·lo = −10.
  dpgate::testing::ExecSql(pg, db, "UPDATE exec.visits SET amount = -1e9 WHERE uid = 0");
  const config::Config config = MakeExecConfig();
  const StatementResult result =
      RewritePrivate("SELECT count(*), sum(amount), count(amount) FROM exec.visits", config);
  const ReleasePlan& plan = *result.plan;
  const int count_col = QuantityColumn(plan, 0, 0);
  const int sum_col = QuantityColumn(plan, 1, 0);
  const int count_x_col = QuantityColumn(plan, 2, 0);
  const int units_col = UnitsColumn(plan);
  const auto with = Run(pg, db, result.rewritten_sql);
  dpgate::testing::ExecSql(pg, db, "DELETE FROM exec.visits WHERE uid = 0");
  const auto without = Run(pg, db, result.rewritten_sql);
  REQUIRE(with.size() == 1);
  REQUIRE(without.size() == 1);
  CHECK(NumberOrZero(with[0][count_col]) - NumberOrZero(without[0][count_col]) == kMaxRows);
  CHECK(NumberOrZero(with[0][count_x_col]) - NumberOrZero(without[0][count_x_col]) == kMaxRows);
  CHECK(NumberOrZero(with[0][sum_col]) - NumberOrZero(without[0][sum_col]) == kMaxRows * kLower);
  CHECK(NumberOrZero(with[0][units_col]) - NumberOrZero(without[0][units_col]) == 1);
  // Small units have up to six rows here (three groups × two rows, one
  // global group), so the bound bites: compare with the bounded aggregate
  // written by hand from docs/REWRITER.md §7.1 and §7.3.
  const auto truth = Run(pg, db, R"(
    SELECT sum(least(n, 2)), sum(least(greatest(s, -10), 20)), count(*)
    FROM (SELECT uid, count(*) AS n,
                 coalesce(sum(least(greatest(amount, -5), 10)), 0) AS s
          FROM exec.visits WHERE uid IS NOT NULL GROUP BY uid) AS per_unit)");
  CHECK(NumberOrZero(without[0][count_col]) == truth[0][0].as<double>());
  CHECK(NumberOrZero(without[0][sum_col]) == Approx(truth[0][1].as<double>()).margin(1e-9));
  CHECK(NumberOrZero(without[0][units_col]) == truth[0][2].as<double>());
  // And the bound did bite: the plain count is larger.
  CHECK(Run(pg, db, "SELECT count(*) FROM exec.visits")[0][0].as<double>() >
        truth[0][0].as<double>());
}

// Loose bounds ([-1000, 3000], midpoint 1000), every unit small: the
// rewritten quantities equal the true ones computed by plain SQL, including
// NULL values (skipped by sum/avg/count(x), counted by count(*)) and rows
// with a NULL unit (excluded everywhere).
TEST_CASE("execution: loose bounds and small units give the true aggregates, NULLs included") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_exact");
  dpgate::testing::ExecSql(pg, db, R"(
    CREATE SCHEMA exec;
    CREATE TABLE exec.people (uid int, grp text, x double precision);
    INSERT INTO exec.people
      SELECT u, 'g' || (u % 5), CASE WHEN u % 7 = 0 THEN NULL ELSE (u * 37) % 2500 - 700 END
      FROM generate_series(1, 500) AS u;
    -- A second row for some units, in another group.
    INSERT INTO exec.people
      SELECT u, 'g' || ((u + 1) % 5), (u * 11) % 900 FROM generate_series(1, 500, 3) AS u;
    -- A group whose values are all NULL, and rows with a NULL unit.
    INSERT INTO exec.people VALUES (1001, 'allnull', NULL), (1002, 'allnull', NULL);
    INSERT INTO exec.people SELECT NULL, 'g1', 2900 FROM generate_series(1, 50);
    INSERT INTO exec.people SELECT NULL, 'onlynullunit', 5 FROM generate_series(1, 3);
  )");
  const config::Config config = MakeExecConfig();
  const StatementResult result = RewritePrivate(
      "SELECT grp, count(*) AS n, count(x) AS nx, sum(x) AS s, avg(x) AS a, "
      "variance(x) AS v, count(DISTINCT uid) AS units FROM exec.people GROUP BY grp",
      config);
  const ReleasePlan& plan = *result.plan;
  REQUIRE(plan.columns[4].role == ColumnRole::kAvg);
  REQUIRE(plan.columns[5].role == ColumnRole::kVariance);
  REQUIRE(plan.columns[4].midpoint == 1000.0);
  const int n_col = QuantityColumn(plan, 1, 0);
  const int nx_col = QuantityColumn(plan, 2, 0);
  const int sum_col = QuantityColumn(plan, 3, 0);
  const int avg_centred_col = QuantityColumn(plan, 4, 0);
  const int avg_count_col = QuantityColumn(plan, 4, 1);
  const int var_centred_col = QuantityColumn(plan, 5, 0);
  const int var_squares_col = QuantityColumn(plan, 5, 1);
  const int var_count_col = QuantityColumn(plan, 5, 2);
  const int units_col = UnitsColumn(plan);
  REQUIRE(plan.columns[4].inputs[0].kind == "centred_sum");
  REQUIRE(plan.columns[4].inputs[1].kind == "count");
  REQUIRE(plan.columns[5].inputs[1].kind == "centred_sum_of_squares");

  const auto got = ByGroup(Run(pg, db, result.rewritten_sql), plan);
  const auto truth = Run(pg, db, R"(
    SELECT grp, count(*), count(x), coalesce(sum(x), 0), coalesce(sum(x - 1000), 0),
           coalesce(sum((x - 1000) * (x - 1000)), 0), count(DISTINCT uid)
    FROM exec.people WHERE uid IS NOT NULL GROUP BY grp)");
  REQUIRE(got.count("onlynullunit") == 0);
  REQUIRE(got.size() == truth.size());
  REQUIRE(got.count("allnull") == 1);
  for (const auto& row : truth) {
    INFO("group " << row[0].c_str());
    const auto& g = got.at(row[0].c_str());
    CHECK(g.at(n_col) == row[1].as<double>());
    CHECK(g.at(nx_col) == row[2].as<double>());
    CHECK(g.at(sum_col) == Approx(row[3].as<double>()).margin(1e-6));
    CHECK(g.at(avg_centred_col) == Approx(row[4].as<double>()).margin(1e-6));
    CHECK(g.at(avg_count_col) == row[2].as<double>());
    CHECK(g.at(var_centred_col) == Approx(row[4].as<double>()).margin(1e-6));
    CHECK(g.at(var_squares_col) == Approx(row[5].as<double>()).epsilon(1e-12));
    CHECK(g.at(var_count_col) == row[2].as<double>());
    CHECK(g.at(units_col) == row[6].as<double>());
  }
  CHECK(got.at("allnull").at(n_col) == 2);
  CHECK(got.at("allnull").at(nx_col) == 0);
  CHECK(got.at("allnull").at(sum_col) == 0);

  // The same as a global aggregate, with a WHERE.
  const StatementResult global =
      RewritePrivate("SELECT count(*), sum(x), avg(x) FROM exec.people WHERE grp <> 'g3'", config);
  const auto row = Run(pg, db, global.rewritten_sql);
  const auto expect = Run(pg, db,
                          "SELECT count(*), sum(x), sum(x - 1000), count(x) FROM exec.people "
                          "WHERE grp <> 'g3' AND uid IS NOT NULL");
  REQUIRE(row.size() == 1);
  CHECK(NumberOrZero(row[0][QuantityColumn(*global.plan, 0, 0)]) == expect[0][0].as<double>());
  CHECK(NumberOrZero(row[0][QuantityColumn(*global.plan, 1, 0)]) ==
        Approx(expect[0][1].as<double>()).margin(1e-6));
  CHECK(NumberOrZero(row[0][QuantityColumn(*global.plan, 2, 0)]) ==
        Approx(expect[0][2].as<double>()).margin(1e-6));
  CHECK(NumberOrZero(row[0][QuantityColumn(*global.plan, 2, 1)]) == expect[0][3].as<double>());

  // Over no rows: one row, NULL sums (read as 0) and zero units.
  const StatementResult empty =
      RewritePrivate("SELECT count(*), sum(x) FROM exec.people WHERE grp = 'none'", config);
  const auto none = Run(pg, db, empty.rewritten_sql);
  REQUIRE(none.size() == 1);
  CHECK(NumberOrZero(none[0][QuantityColumn(*empty.plan, 0, 0)]) == 0);
  CHECK(NumberOrZero(none[0][QuantityColumn(*empty.plan, 1, 0)]) == 0);
  CHECK(NumberOrZero(none[0][UnitsColumn(*empty.plan)]) == 0);
}

TEST_CASE("execution: a rewritten query with $1 runs with a bound parameter") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_param");
  LoadVisits(pg, db);
  dpgate::testing::ExecSql(pg, db, "DELETE FROM exec.visits WHERE uid = 0");
  const config::Config config = MakeExecConfig();
  const StatementResult result = RewritePrivate(
      "SELECT count(*), sum(amount) FROM exec.visits WHERE grp = $1 AND amount > $2", config);
  REQUIRE(result.rewritten_sql.find("$1") != std::string::npos);
  REQUIRE(result.rewritten_sql.find("$2") != std::string::npos);
  pqxx::connection connection(pg.Dsn(db));
  pqxx::nontransaction tx(connection);
  for (int grp : {3, 17, 39}) {
    const auto got = tx.exec_params(result.rewritten_sql, grp, 0);
    const auto truth = tx.exec_params(
        "SELECT count(*), coalesce(sum(amount), 0) FROM exec.visits WHERE grp = $1 AND amount > $2",
        grp, 0);
    REQUIRE(got.size() == 1);
    CHECK(NumberOrZero(got[0][QuantityColumn(*result.plan, 0, 0)]) == truth[0][0].as<double>());
    CHECK(NumberOrZero(got[0][QuantityColumn(*result.plan, 1, 0)]) == truth[0][1].as<double>());
    CHECK(truth[0][0].as<int>() > 0);
  }
}

// ---------------------------------------------------------------------------
// PUMS_pid.csv (1000 people, one row each) under the unit-test config
// (fixtures.h: pums.pums, unit pid, k = 3, c = 2, age [0, 100], income
// [0, 500000]; the data's maximum income is 420,500, so the bounds are loose).

// The SmartNoise test data lives in ../shared beside the checkout (as in CI);
// $DPGATE_PUMS_CSV points elsewhere when it is not there.
std::string PumsCsvPath() {
  const char* path = std::getenv("DPGATE_PUMS_CSV");
  return path != nullptr
             ? path
             : std::string(DPGATE_SOURCE_DIR) + "/../shared/data/smartnoise/PUMS_pid.csv";
}

// The schema of /work/shared/data/smartnoise/postgres_pums_schema.sql
// (database pums_pid), plus the public and private tables the case files
// also name.
void LoadPums(const TestPg& pg, const std::string& db) {
  REQUIRE(std::filesystem::exists(PumsCsvPath()));
  dpgate::testing::ExecSql(pg, db, R"(
    CREATE SCHEMA pums;
    CREATE TABLE pums.pums (age int, sex char(2), educ int, race char(2), income float,
                            married boolean, pid int);
    CREATE TABLE pums.household (pid int, rent float, rooms int, tenure text);
    INSERT INTO pums.household SELECT p, 400 + p % 900, 1 + p % 6,
                                      (ARRAY['own', 'rent'])[1 + p % 2]
      FROM generate_series(1, 1000) AS p;
    CREATE TABLE pums.states (code char(2), race char(2), name text, population int);
    INSERT INTO pums.states VALUES ('1', '1', 'one', 100), ('2', '2', 'two', 200),
                                   ('3', '3', 'three', 300);
    CREATE TABLE public.employees (employee_id int, salary numeric(12, 2), age int,
                                   region text, hired date, title text, shift text,
                                   remote text, grade text);
    INSERT INTO public.employees
      SELECT i, 1000 * i, 20 + i % 50, (ARRAY['north', 'south', 'east', 'west'])[1 + i % 4],
             DATE '2020-01-01' + i, 't' || (i % 3), (ARRAY['day', 'night'])[1 + i % 2],
             (ARRAY['yes', 'no'])[1 + i % 3 % 2], chr(97 + i % 5)
      FROM generate_series(1, 100) AS i;
    CREATE TABLE public.regions (region text, name text, n int);
    INSERT INTO public.regions VALUES ('north', 'North', 1), ('south', 'South', 2);
  )");
  // Loaded client-side (the server may not be able to read the checkout):
  // every field quoted as a literal, empty fields as NULL.
  pqxx::connection connection(pg.Dsn(db));
  pqxx::nontransaction tx(connection);
  std::ifstream csv(PumsCsvPath());
  std::string line;
  std::getline(csv, line);
  REQUIRE(line == "age,sex,educ,race,income,married,pid");
  std::string insert;
  while (std::getline(csv, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::string values;
    size_t start = 0;
    while (true) {
      const size_t comma = line.find(',', start);
      const std::string field =
          line.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      values +=
          (values.empty() ? "" : ", ") + (field.empty() ? std::string("NULL") : tx.quote(field));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    insert += (insert.empty() ? "INSERT INTO pums.pums VALUES (" : ", (") + values + ")";
  }
  tx.exec(insert);
  REQUIRE(tx.exec1("SELECT count(*) FROM pums.pums")[0].as<int>() == 1000);
}

struct CaseSql {
  std::string where;  // file:line
  std::string sql;
  std::vector<std::string> search_path = {"$user", "public"};
  std::string user = "alice";
  std::string unique;  // schema facts (docs/REWRITER.md §8.5), as in the case runner
  std::string types;
};

std::string Trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r") - begin + 1);
}

// A line "key: value" or "[i] key: value" of the case format
// (tests/unit/rewriter/cases/README.md) ends an SQL continuation.
bool IsKeyLine(const std::string& line) {
  size_t i = 0;
  if (!line.empty() && line[0] == '[') {
    i = line.find(']');
    if (i == std::string::npos) return false;
    i = line.find_first_not_of(' ', i + 1);
    if (i == std::string::npos) return false;
  }
  const size_t start = i;
  while (i < line.size() && (std::islower(static_cast<unsigned char>(line[i])) || line[i] == '_'))
    ++i;
  return i > start && i < line.size() && line[i] == ':';
}

// Only the setup keys (sql, search_path, user) matter here: which statements
// are accepted is decided by running Classify, not by the expectations.
std::vector<CaseSql> LoadCaseSql(const std::filesystem::path& file) {
  std::vector<CaseSql> cases;
  std::ifstream in(file);
  REQUIRE(in.good());
  std::string line;
  int number = 0;
  bool in_sql = false;
  while (std::getline(in, line)) {
    ++number;
    if (line.rfind("===", 0) == 0) {
      cases.push_back({file.filename().string() + ":" + std::to_string(number),
                       "",
                       {"$user", "public"},
                       "alice",
                       "",
                       ""});
      in_sql = false;
    } else if (cases.empty() || line.rfind("#", 0) == 0) {
      continue;
    } else if (IsKeyLine(line)) {
      const auto colon = line.find(':');
      const std::string key = Trim(line.substr(0, colon));
      const std::string value = Trim(line.substr(colon + 1));
      in_sql = key == "sql";
      if (key == "sql") cases.back().sql = value;
      if (key == "user") cases.back().user = value;
      if (key == "unique") cases.back().unique = value;
      if (key == "types") cases.back().types = value;
      if (key == "search_path") {
        cases.back().search_path.clear();
        std::stringstream items(value);
        std::string item;
        while (std::getline(items, item, ',')) cases.back().search_path.push_back(Trim(item));
      }
    } else if (in_sql) {
      cases.back().sql += "\n" + line;
    }
  }
  return cases;
}

TEST_CASE("execution: every accepted case-file query runs on PUMS_pid") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_cases");
  LoadPums(pg, db);
  const config::Config config = testing::MakeTestConfig();
  const std::filesystem::path dir =
      std::filesystem::path(DPGATE_SOURCE_DIR) / "tests/unit/rewriter/cases";
  int private_run = 0;
  int smartnoise_private_run = 0;
  int other_run = 0;
  pqxx::connection connection(pg.Dsn(db));
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".test") continue;
    for (const CaseSql& c : LoadCaseSql(entry.path())) {
      if (c.sql.find("\\x00") != std::string::npos) continue;
      SessionContext session;
      session.user = c.user;
      session.search_path = c.search_path;
      // The per-row rewrites of shapes.test run too (PUMS_pid has one row per
      // pid but no constraint here: this checks that they execute).
      auto results = Classify(c.sql, config, session, testing::ParseFacts(c.unique, c.types));
      REQUIRE(results.ok());
      for (const StatementResult& r : *results) {
        const bool reads_data = r.statement_class == StatementClass::kPrivateAggregate ||
                                r.statement_class == StatementClass::kPublic;
        if (!reads_data) continue;
        INFO(c.where << "\n" << c.sql << "\n-> " << r.rewritten_sql);
        // Parameters are exercised by their own test; here they would need
        // values of the right types.
        if (r.rewritten_sql.find('$') != std::string::npos) continue;
        // The upstream search_path is pinned to pg_catalog (docs/REWRITER.md §2):
        // run the rewrite the way the proxy will.
        pqxx::work tx(connection);
        tx.exec("SET LOCAL search_path = pg_catalog");
        CHECK_NOTHROW(tx.exec(r.rewritten_sql));
        tx.abort();
        if (r.statement_class == StatementClass::kPrivateAggregate) {
          ++private_run;
          if (entry.path().filename() == "smartnoise_pums.test") ++smartnoise_private_run;
        } else {
          ++other_run;
        }
      }
    }
  }
  // Not vacuous: the case files hold dozens of accepted private queries.
  CHECK(smartnoise_private_run >= 20);
  CHECK(private_run >= 40);
  WARN("ran " << private_run << " private rewrites (" << smartnoise_private_run
              << " SmartNoise) and " << other_run << " public statements");
}

TEST_CASE("execution: PUMS_pid ground truth is returned exactly with loose bounds") {
  const TestPg pg = dpgate::testing::RequireTestPg();
  const std::string db = dpgate::testing::CreateTestDatabase(pg, "rw_pums");
  LoadPums(pg, db);
  const config::Config config = testing::MakeTestConfig();

  // The SmartNoise queries of smartnoise_pums.test, verbatim.
  {
    const auto r = RewritePrivate("SELECT COUNT(*) AS c FROM PUMS.PUMS;", config);
    CHECK(ScalarQuantity(Run(pg, db, r.rewritten_sql), QuantityColumn(*r.plan, 0, 0)) == 1000);
  }
  {
    const auto r = RewritePrivate(
        "SELECT COUNT(*) AS count_all, SUM(income) AS sum_income, AVG(income) AS avg_income, "
        "VARIANCE(income) AS var_income, STDDEV(income) AS stddev_income FROM PUMS.PUMS;",
        config);
    const auto rows = Run(pg, db, r.rewritten_sql);
    CHECK(ScalarQuantity(rows, QuantityColumn(*r.plan, 0, 0)) == 1000);
    CHECK(ScalarQuantity(rows, QuantityColumn(*r.plan, 1, 0)) == 34380084);
    // AVG: centred sum around the midpoint 250,000 and the count.
    CHECK(ScalarQuantity(rows, QuantityColumn(*r.plan, 2, 0)) == 34380084.0 - 1000 * 250000.0);
    CHECK(ScalarQuantity(rows, QuantityColumn(*r.plan, 2, 1)) == 1000);
  }
  {
    const auto r = RewritePrivate("SELECT AVG(age), SUM(age), COUNT(age) FROM PUMS.PUMS;", config);
    const auto rows = Run(pg, db, r.rewritten_sql);
    CHECK(ScalarQuantity(rows, QuantityColumn(*r.plan, 0, 0)) == 44797.0 - 1000 * 50.0);
    CHECK(ScalarQuantity(rows, QuantityColumn(*r.plan, 0, 1)) == 1000);
    CHECK(ScalarQuantity(rows, QuantityColumn(*r.plan, 1, 0)) == 44797);
    CHECK(ScalarQuantity(rows, QuantityColumn(*r.plan, 2, 0)) == 1000);
  }
  {
    const auto r = RewritePrivate(
        "SELECT COUNT(*) AS c, married AS m FROM PUMS.PUMS GROUP BY married ORDER BY c DESC;",
        config);
    const int key = r.plan->columns[1].group_key_sql_column;
    const int count = QuantityColumn(*r.plan, 0, 0);
    std::map<std::string, double> by_married;
    for (const auto& row : Run(pg, db, r.rewritten_sql))
      by_married[row[key].c_str()] = row[count].as<double>();
    CHECK(by_married == std::map<std::string, double>{{"t", 549}, {"f", 451}});
  }
  {
    const auto r = RewritePrivate(
        "SELECT sex, COUNT(*) AS n, COUNT(*) AS foo FROM PUMS.PUMS GROUP BY sex ORDER BY sex;",
        config);
    REQUIRE(r.plan->partition_selection.kind == PartitionSelection::Kind::kPublicKeys);
    const int key = r.plan->columns[0].group_key_sql_column;
    std::map<std::string, std::pair<double, double>> by_sex;
    for (const auto& row : Run(pg, db, r.rewritten_sql)) {
      by_sex[Trim(row[key].c_str())] = {row[QuantityColumn(*r.plan, 1, 0)].as<double>(),
                                        row[QuantityColumn(*r.plan, 2, 0)].as<double>()};
    }
    CHECK(by_sex ==
          std::map<std::string, std::pair<double, double>>{{"1", {514, 514}}, {"0", {486, 486}}});
  }
  {
    const auto r = RewritePrivate("SELECT SUM(age) FROM PUMS.PUMS;", config);
    CHECK(ScalarQuantity(Run(pg, db, r.rewritten_sql), QuantityColumn(*r.plan, 0, 0)) == 44797);
  }
  // Unit counts: every pid is one person.
  {
    const auto r = RewritePrivate(
        "SELECT COUNT (*) AS foo, COUNT(DISTINCT pid) AS bar FROM PUMS.PUMS;", config);
    const auto rows = Run(pg, db, r.rewritten_sql);
    CHECK(ScalarQuantity(rows, UnitsColumn(*r.plan)) == 1000);
  }
}

}  // namespace
}  // namespace dpgate::rewriter
