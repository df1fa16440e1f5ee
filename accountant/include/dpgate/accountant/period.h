// Budget periods (docs/LEDGER.md "Periods"). A budget of "10 per month" is
// spent within one period and starts afresh in the next. Periods roll over at
// fixed instants in UTC, never in a local time zone, so every dpgate process
// sharing a ledger agrees on which period a charge belongs to.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "dpgate/config/config.h"

namespace dpgate::accountant {

using TimePoint = std::chrono::system_clock::time_point;

// The clock the ledger reads "now" from. Injectable so tests can move time
// across a period boundary without waiting.
using Clock = std::function<TimePoint()>;
Clock SystemClock();

// The first instant of the period containing `t` (UTC):
//   day   -> 00:00 of that day
//   week  -> 00:00 of the ISO week's Monday
//   month -> 00:00 of the 1st of the month
//   never -> the Unix epoch (one period for all time)
TimePoint BudgetPeriodStart(config::Period period, TimePoint t);

// The first instant of the following period; for `never`, TimePoint::max().
TimePoint BudgetPeriodEnd(config::Period period, TimePoint start);

// A label people read: "2026-11-23", "2026-W48" (ISO week-year), "2026-11",
// "all time".
std::string BudgetPeriodLabel(config::Period period, TimePoint start);

// Parses "day" | "week" | "month" | "never".
bool ParsePeriod(const std::string& text, config::Period* out);

// Microseconds since the Unix epoch (truncated towards minus infinity) and back;
// the ledger keeps timestamps at PostgreSQL's microsecond precision.
int64_t ToMicros(TimePoint t);
TimePoint FromMicros(int64_t micros);

// "2026-11-23 10:59:43.123456+00": a timestamptz literal PostgreSQL parses
// exactly, independent of the session's DateStyle and TimeZone.
std::string FormatTimestampUtc(TimePoint t);
// "2026-11-23T10:59:43Z" (seconds precision) for reports and messages.
std::string FormatIso8601(TimePoint t);
// Parses "YYYY-MM-DD" as 00:00 UTC of that day.
bool ParseDate(const std::string& text, TimePoint* out);

}  // namespace dpgate::accountant
