// dpgate serve's log lines are written by LogLineFormatter; they must be
// byte for byte what spdlog's pattern "%Y-%m-%dT%H:%M:%S.%e%z %l %v" writes
// (operators' log parsers read that layout; docs/PROXY.md §3).
#include "dpgate/proxy/log_line_formatter.h"

#include <spdlog/details/log_msg.h>
#include <spdlog/pattern_formatter.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace {

using dpgate::proxy::LogLineFormatter;

std::string Format(spdlog::formatter& f, const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t out;
  f.format(msg, out);
  return std::string(out.data(), out.size());
}

spdlog::details::log_msg Message(std::chrono::system_clock::time_point when,
                                 spdlog::level::level_enum level, std::string_view text) {
  spdlog::details::log_msg msg(spdlog::source_loc{}, "dpgate", level,
                               spdlog::string_view_t(text.data(), text.size()));
  msg.time = when;
  return msg;
}

// Sets TZ for one test and puts the old value back.
struct ZoneForTest {
  explicit ZoneForTest(const char* tz) {
    if (const char* old = std::getenv("TZ")) saved = old;
    ::setenv("TZ", tz, 1);
    ::tzset();
  }
  ~ZoneForTest() {
    if (saved) {
      ::setenv("TZ", saved->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  std::optional<std::string> saved;
};

void ExpectSameAsPattern() {
  spdlog::pattern_formatter pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  LogLineFormatter ours;
  using std::chrono::milliseconds;
  const auto base = std::chrono::system_clock::time_point(milliseconds(1796577167000));
  // Within one second (the cached text), across seconds, minutes, a day and
  // a year, and every millisecond digit position.
  const std::vector<milliseconds> offsets = {
      milliseconds(0),        milliseconds(1),          milliseconds(9),     milliseconds(10),
      milliseconds(99),       milliseconds(100),        milliseconds(999),   milliseconds(1000),
      milliseconds(1001),     milliseconds(59999),      milliseconds(60000), milliseconds(86399999),
      milliseconds(86400000), milliseconds(31536000123)};
  const std::vector<spdlog::level::level_enum> levels = {
      spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
      spdlog::level::warn,  spdlog::level::err,   spdlog::level::critical};
  for (const auto offset : offsets) {
    for (const auto level : levels) {
      const auto msg = Message(base + offset, level, "audit analyst=alice class=public rows=0");
      REQUIRE(Format(ours, msg) == Format(pattern, msg));
    }
  }
  // An empty message, and a clone.
  const auto empty = Message(base, spdlog::level::info, "");
  REQUIRE(Format(ours, empty) == Format(pattern, empty));
  auto copy = ours.clone();
  REQUIRE(Format(*copy, empty) == Format(pattern, empty));
}

}  // namespace

TEST_CASE("log lines match spdlog's pattern in UTC", "[proxy][log]") {
  const ZoneForTest zone("UTC0");
  ExpectSameAsPattern();
  // And the layout is the documented one.
  LogLineFormatter ours;
  const auto msg =
      Message(std::chrono::system_clock::time_point(std::chrono::milliseconds(1796577167042)),
              spdlog::level::info, "hello");
  REQUIRE(Format(ours, msg) == "2026-12-06T17:12:47.042+00:00 info hello\n");
}

TEST_CASE("log lines match spdlog's pattern east and west of UTC", "[proxy][log]") {
  {
    const ZoneForTest zone("IST-5:30");  // UTC+05:30
    ExpectSameAsPattern();
  }
  {
    const ZoneForTest zone("NST3:30");  // UTC-03:30
    ExpectSameAsPattern();
  }
}
