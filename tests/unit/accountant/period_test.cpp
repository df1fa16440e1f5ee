// Budget periods roll over at fixed UTC instants.
#include <catch2/catch.hpp>
#include <chrono>

#include "dpgate/accountant/period.h"

using namespace std::chrono;
using dpgate::accountant::BudgetPeriodEnd;
using dpgate::accountant::BudgetPeriodLabel;
using dpgate::accountant::BudgetPeriodStart;
using dpgate::accountant::FormatTimestampUtc;
using dpgate::accountant::FromMicros;
using dpgate::accountant::ParseDate;
using dpgate::accountant::TimePoint;
using dpgate::accountant::ToMicros;
using dpgate::config::Period;

namespace {
TimePoint At(int y, unsigned m, unsigned d, int h = 0, int min = 0, int s = 0) {
  return sys_days{year{y} / month{m} / day{d}} + hours{h} + minutes{min} + seconds{s};
}
}  // namespace

TEST_CASE("day periods start at 00:00 UTC") {
  CHECK(BudgetPeriodStart(Period::kDay, At(2026, 11, 23, 10, 59, 43)) == At(2026, 11, 23));
  CHECK(BudgetPeriodStart(Period::kDay, At(2026, 11, 23)) == At(2026, 11, 23));
  CHECK(BudgetPeriodStart(Period::kDay, At(2026, 11, 23) - microseconds{1}) == At(2026, 11, 22));
  CHECK(BudgetPeriodEnd(Period::kDay, At(2026, 12, 31)) == At(2027, 1, 1));
  CHECK(BudgetPeriodLabel(Period::kDay, At(2026, 11, 23)) == "2026-11-23");
}

TEST_CASE("month periods start on the 1st, across year and leap boundaries") {
  CHECK(BudgetPeriodStart(Period::kMonth, At(2026, 11, 30, 23, 59, 59)) == At(2026, 11, 1));
  CHECK(BudgetPeriodStart(Period::kMonth, At(2026, 12, 1)) == At(2026, 12, 1));
  CHECK(BudgetPeriodStart(Period::kMonth, At(2027, 1, 1) - microseconds{1}) == At(2026, 12, 1));
  CHECK(BudgetPeriodStart(Period::kMonth, At(2028, 2, 29, 12)) == At(2028, 2, 1));
  CHECK(BudgetPeriodEnd(Period::kMonth, At(2026, 12, 1)) == At(2027, 1, 1));
  CHECK(BudgetPeriodEnd(Period::kMonth, At(2028, 2, 1)) == At(2028, 3, 1));
  CHECK(BudgetPeriodLabel(Period::kMonth, At(2026, 11, 1)) == "2026-11");
}

TEST_CASE("week periods are ISO weeks starting Monday 00:00 UTC") {
  // 2026-11-23 is a Monday.
  CHECK(BudgetPeriodStart(Period::kWeek, At(2026, 11, 23)) == At(2026, 11, 23));
  CHECK(BudgetPeriodStart(Period::kWeek, At(2026, 11, 29, 23, 59, 59)) == At(2026, 11, 23));
  CHECK(BudgetPeriodStart(Period::kWeek, At(2026, 11, 30)) == At(2026, 11, 30));
  CHECK(BudgetPeriodStart(Period::kWeek, At(2026, 11, 23) - microseconds{1}) == At(2026, 11, 16));
  // A week spanning a year boundary: Thu 2026-12-31 belongs to the week of Mon 2026-12-28.
  CHECK(BudgetPeriodStart(Period::kWeek, At(2027, 1, 3, 12)) == At(2026, 12, 28));
  CHECK(BudgetPeriodEnd(Period::kWeek, At(2026, 12, 28)) == At(2027, 1, 4));
  CHECK(BudgetPeriodLabel(Period::kWeek, At(2026, 11, 23)) == "2026-W48");
  // ISO week-year differs from the calendar year at the edges.
  CHECK(BudgetPeriodLabel(Period::kWeek, At(2026, 12, 28)) == "2026-W53");
  CHECK(BudgetPeriodLabel(Period::kWeek, At(2024, 12, 30)) == "2025-W01");
  CHECK(BudgetPeriodLabel(Period::kWeek, At(2021, 1, 3)) == "2020-W53");
}

TEST_CASE("never is one period for all time") {
  CHECK(BudgetPeriodStart(Period::kNever, At(2026, 11, 23)) == TimePoint{});
  CHECK(BudgetPeriodStart(Period::kNever, At(2099, 1, 1)) == TimePoint{});
  CHECK(BudgetPeriodEnd(Period::kNever, TimePoint{}) == TimePoint::max());
  CHECK(BudgetPeriodLabel(Period::kNever, TimePoint{}) == "all time");
}

TEST_CASE("timestamps keep microseconds and format as UTC literals") {
  const TimePoint t = At(2026, 11, 23, 10, 59, 43) + microseconds{123456};
  CHECK(FormatTimestampUtc(t) == "2026-11-23 10:59:43.123456+00");
  CHECK(FromMicros(ToMicros(t)) == t);
  CHECK(FormatTimestampUtc(TimePoint{}) == "1970-01-01 00:00:00.000000+00");
  TimePoint d;
  REQUIRE(ParseDate("2026-02-28", &d));
  CHECK(d == At(2026, 2, 28));
  CHECK_FALSE(ParseDate("2026-02-30", &d));
  CHECK_FALSE(ParseDate("2026-2-3", &d));
}
