// Small text helpers shared by the accountant's sources (internal header).
#pragma once

#include <cstdio>
#include <string>

namespace dpgate::accountant::internal {

// A JSON string literal (with quotes). Bytes >= 0x80 pass through unchanged:
// the input is UTF-8 text.
inline std::string JsonString(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

// A number for people: at most 6 significant digits, "0.3" rather than
// "0.30000000000000071".
inline std::string Human(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace dpgate::accountant::internal
