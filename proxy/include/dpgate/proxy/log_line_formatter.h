// The layout of `dpgate serve`'s log lines (docs/PROXY.md §3):
//
//   2026-12-06T19:12:47.123+00:00 info audit analyst=alice class=public ...
//
// the same bytes as spdlog's pattern "%Y-%m-%dT%H:%M:%S.%e%z %l %v" (local
// time, milliseconds, the zone's offset, the level's name, the message), but
// written without the pattern machinery: a line is logged for every
// statement, and the general formatter was ~10 % of the instructions of a
// relayed statement (bench/RESULTS.md, proxy). The date, time and offset are
// worked out once per second.
#pragma once

#include <spdlog/formatter.h>

#include <chrono>
#include <memory>
#include <string>

namespace dpgate::proxy {

class LogLineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
  // The same bytes, appended to `dest` (BatchedFdSink's batch, with no
  // buffer in between).
  void AppendTo(const spdlog::details::log_msg& msg, std::string& dest);

 private:
  template <typename Destination>
  void Write(const spdlog::details::log_msg& msg, Destination& dest);
  // The second the cached text is for, and "YYYY-MM-DDTHH:MM:SS" and
  // "+HH:MM" of that second.
  std::chrono::seconds cached_second_{-1};
  std::string date_time_;
  std::string zone_;
};

}  // namespace dpgate::proxy
