#include "dpgate/accountant/period.h"

#include <cstdio>
#include <functional>

namespace dpgate::accountant {

namespace chr = std::chrono;

Clock SystemClock() {
  return [] { return chr::system_clock::now(); };
}

TimePoint BudgetPeriodStart(config::Period period, TimePoint t) {
  const chr::sys_days day = chr::floor<chr::days>(t);
  switch (period) {
    case config::Period::kDay:
      return day;
    case config::Period::kWeek: {
      // weekday difference is taken modulo 7, so Sunday - Monday is 6 days.
      const chr::days since_monday = chr::weekday{day} - chr::Monday;
      return day - since_monday;
    }
    case config::Period::kMonth: {
      const chr::year_month_day ymd{day};
      return chr::sys_days{ymd.year() / ymd.month() / chr::day{1}};
    }
    case config::Period::kNever:
      break;
  }
  return TimePoint{};
}

TimePoint BudgetPeriodEnd(config::Period period, TimePoint start) {
  const chr::sys_days day = chr::floor<chr::days>(start);
  switch (period) {
    case config::Period::kDay:
      return day + chr::days{1};
    case config::Period::kWeek:
      return day + chr::days{7};
    case config::Period::kMonth: {
      const chr::year_month_day ymd{day};
      return chr::sys_days{(ymd.year() / ymd.month() / chr::day{1}) + chr::months{1}};
    }
    case config::Period::kNever:
      break;
  }
  return TimePoint::max();
}

std::string BudgetPeriodLabel(config::Period period, TimePoint start) {
  const chr::sys_days day = chr::floor<chr::days>(start);
  const chr::year_month_day ymd{day};
  char buf[32];
  switch (period) {
    case config::Period::kDay:
      std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", int(ymd.year()), unsigned(ymd.month()),
                    unsigned(ymd.day()));
      return buf;
    case config::Period::kWeek: {
      // The ISO week-year is the year of the week's Thursday; week 1 is the
      // week containing that year's first Thursday.
      const chr::sys_days monday = chr::floor<chr::days>(BudgetPeriodStart(period, start));
      const chr::sys_days thursday = monday + chr::days{3};
      const chr::year iso_year = chr::year_month_day{thursday}.year();
      const chr::sys_days jan1 = chr::sys_days{iso_year / chr::January / chr::day{1}};
      const int week = int((thursday - jan1).count() / 7) + 1;
      std::snprintf(buf, sizeof buf, "%04d-W%02d", int(iso_year), week);
      return buf;
    }
    case config::Period::kMonth:
      std::snprintf(buf, sizeof buf, "%04d-%02u", int(ymd.year()), unsigned(ymd.month()));
      return buf;
    case config::Period::kNever:
      break;
  }
  return "all time";
}

bool ParsePeriod(const std::string& text, config::Period* out) {
  if (text == "day")
    *out = config::Period::kDay;
  else if (text == "week")
    *out = config::Period::kWeek;
  else if (text == "month")
    *out = config::Period::kMonth;
  else if (text == "never")
    *out = config::Period::kNever;
  else
    return false;
  return true;
}

int64_t ToMicros(TimePoint t) {
  return chr::floor<chr::microseconds>(t.time_since_epoch()).count();
}

TimePoint FromMicros(int64_t micros) {
  return TimePoint{chr::duration_cast<TimePoint::duration>(chr::microseconds{micros})};
}

std::string FormatTimestampUtc(TimePoint t) {
  const auto us = chr::floor<chr::microseconds>(t);
  const chr::sys_days day = chr::floor<chr::days>(us);
  const chr::year_month_day ymd{day};
  const chr::hh_mm_ss hms{us - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02d:%02d:%02d.%06lld+00", int(ymd.year()),
                unsigned(ymd.month()), unsigned(ymd.day()), int(hms.hours().count()),
                int(hms.minutes().count()), int(hms.seconds().count()),
                static_cast<long long>(hms.subseconds().count()));
  return buf;
}

std::string FormatIso8601(TimePoint t) {
  const auto s = chr::floor<chr::seconds>(t);
  const chr::sys_days day = chr::floor<chr::days>(s);
  const chr::year_month_day ymd{day};
  const chr::hh_mm_ss hms{s - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", int(ymd.year()),
                unsigned(ymd.month()), unsigned(ymd.day()), int(hms.hours().count()),
                int(hms.minutes().count()), int(hms.seconds().count()));
  return buf;
}

bool ParseDate(const std::string& text, TimePoint* out) {
  int y = 0;
  unsigned m = 0, d = 0;
  char tail = 0;
  if (text.size() != 10 || std::sscanf(text.c_str(), "%4d-%2u-%2u%c", &y, &m, &d, &tail) != 3) {
    return false;
  }
  const chr::year_month_day ymd{chr::year{y}, chr::month{m}, chr::day{d}};
  if (!ymd.ok()) return false;
  *out = chr::sys_days{ymd};
  return true;
}

}  // namespace dpgate::accountant
