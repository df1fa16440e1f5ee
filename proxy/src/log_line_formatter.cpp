#include "dpgate/proxy/log_line_formatter.h"

#include <spdlog/common.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/details/os.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

namespace dpgate::proxy {

namespace {

void Append(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.append(s.data(), s.data() + s.size());
}

void Append(std::string& dest, std::string_view s) {
  dest.append(s.data(), s.size());
}

}  // namespace

void LogLineFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  Write(msg, dest);
}

void LogLineFormatter::AppendTo(const spdlog::details::log_msg& msg, std::string& dest) {
  Write(msg, dest);
}

template <typename Destination>
void LogLineFormatter::Write(const spdlog::details::log_msg& msg, Destination& dest) {
  const auto since_epoch = msg.time.time_since_epoch();
  const auto second = std::chrono::floor<std::chrono::seconds>(since_epoch);
  if (second != cached_second_) {
    const std::time_t t = static_cast<std::time_t>(second.count());
    std::tm local{};
    ::localtime_r(&t, &local);
    char text[64];
    const size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &local);
    date_time_.assign(text, n);
    // The offset from UTC in minutes, as spdlog's %z: sign, hours, minutes.
    const long minutes = local.tm_gmtoff / 60;
    const long magnitude = std::labs(minutes);
    std::snprintf(text, sizeof text, "%c%02ld:%02ld", minutes < 0 ? '-' : '+', magnitude / 60,
                  magnitude % 60);
    zone_ = text;
    cached_second_ = second;
  }
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - second);
  const int ms = static_cast<int>(millis.count());
  const char fraction[4] = {'.', static_cast<char>('0' + ms / 100),
                            static_cast<char>('0' + ms / 10 % 10),
                            static_cast<char>('0' + ms % 10)};
  Append(dest, date_time_);
  Append(dest, std::string_view(fraction, sizeof fraction));
  Append(dest, zone_);
  dest.push_back(' ');
  const auto level = spdlog::level::to_string_view(msg.level);
  Append(dest, std::string_view(level.data(), level.size()));
  dest.push_back(' ');
  Append(dest, std::string_view(msg.payload.data(), msg.payload.size()));
  Append(dest, spdlog::details::os::default_eol);
}

std::unique_ptr<spdlog::formatter> LogLineFormatter::clone() const {
  return std::make_unique<LogLineFormatter>();
}

}  // namespace dpgate::proxy
