#include "dpgate/proxy/binary_format.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace dpgate::proxy {
namespace {

// Type OIDs (pg_type.dat in the PostgreSQL sources).
constexpr int32_t kBool = 16, kBytea = 17, kChar = 18, kName = 19, kInt8 = 20, kInt2 = 21,
                  kInt4 = 23, kText = 25, kOid = 26, kJson = 114, kFloat4 = 700, kFloat8 = 701,
                  kUnknown = 705, kBpchar = 1042, kVarchar = 1043, kDate = 1082, kTime = 1083,
                  kTimestamp = 1114, kTimestampTz = 1184, kNumeric = 1700, kUuid = 2950,
                  kJsonb = 3802;

Error Unsupported(std::string_view what) {
  return MakeError("0A000", "dpgate cannot send this value in binary format (" + std::string(what) +
                                "); request the text format for this column");
}

void PutBigEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

template <typename T>
Result<T> ParseInteger(std::string_view text) {
  T v{};
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || p != end || text.empty()) return Unsupported("integer text");
  return v;
}

Result<double> ParseFloat(std::string_view text) {
  if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (text == "Infinity") return std::numeric_limits<double>::infinity();
  if (text == "-Infinity") return -std::numeric_limits<double>::infinity();
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  // Subnormals set ERANGE but are exact: only reject a parse that stopped.
  if (s.empty() || end != s.c_str() + s.size()) return Unsupported("float text");
  return v;
}

// Days from 1970-01-01 to a proleptic Gregorian date: the civil-from-days
// arithmetic of H. Hinnant, "chrono-Compatible Low-Level Date Algorithms"
// (the era/year-of-era decomposition), written out here.
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// PostgreSQL's epoch for dates and timestamps is 2000-01-01.
constexpr int64_t kPgEpochDays = 10957;  // DaysFromCivil(2000, 1, 1)
constexpr int64_t kMicrosPerDay = 86400LL * 1000000;

struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool Done() const { return i == s.size(); }
  bool Peek(char c) const { return i < s.size() && s[i] == c; }
  bool Take(char c) {
    if (!Peek(c)) return false;
    ++i;
    return true;
  }
  // Exactly `min..max` decimal digits.
  bool Digits(size_t min, size_t max, int64_t* out) {
    size_t n = 0;
    int64_t v = 0;
    while (i < s.size() && n < max && s[i] >= '0' && s[i] <= '9') {
      v = v * 10 + (s[i] - '0');
      ++i;
      ++n;
    }
    *out = v;
    return n >= min;
  }
};

// "YYYY-MM-DD" (ISO), years of four or more digits, no BC.
bool ParseDate(Cursor* c, int64_t* days) {
  int64_t y = 0, m = 0, d = 0;
  if (!c->Digits(4, 9, &y) || !c->Take('-') || !c->Digits(2, 2, &m) || !c->Take('-') ||
      !c->Digits(2, 2, &d)) {
    return false;
  }
  if (m < 1 || m > 12 || d < 1 || d > 31) return false;
  *days = DaysFromCivil(y, m, d) - kPgEpochDays;
  return true;
}

// "HH:MM:SS[.ffffff]" as microseconds since midnight.
bool ParseTime(Cursor* c, int64_t* micros) {
  int64_t h = 0, mi = 0, se = 0;
  if (!c->Digits(2, 2, &h) || !c->Take(':') || !c->Digits(2, 2, &mi) || !c->Take(':') ||
      !c->Digits(2, 2, &se)) {
    return false;
  }
  int64_t frac = 0;
  if (c->Take('.')) {
    const size_t start = c->i;
    if (!c->Digits(1, 6, &frac)) return false;
    for (size_t n = c->i - start; n < 6; ++n) frac *= 10;
  }
  *micros = ((h * 60 + mi) * 60 + se) * 1000000 + frac;
  return h <= 24;
}

// "+HH[:MM[:SS]]" or "-HH..." as seconds east of UTC.
bool ParseOffset(Cursor* c, int64_t* seconds) {
  int sign = 0;
  if (c->Take('+')) {
    sign = 1;
  } else if (c->Take('-')) {
    sign = -1;
  } else {
    return false;
  }
  int64_t h = 0, m = 0, s = 0;
  if (!c->Digits(2, 2, &h)) return false;
  if (c->Take(':') && !c->Digits(2, 2, &m)) return false;
  if (c->Take(':') && !c->Digits(2, 2, &s)) return false;
  *seconds = sign * (h * 3600 + m * 60 + s);
  return true;
}

Result<std::string> EncodeTimestamp(std::string_view text, bool with_zone) {
  std::string out;
  if (text == "infinity" || text == "-infinity") {
    PutBigEndian(&out,
                 static_cast<uint64_t>(text[0] == '-' ? std::numeric_limits<int64_t>::min()
                                                      : std::numeric_limits<int64_t>::max()),
                 8);
    return out;
  }
  Cursor c{text};
  int64_t days = 0, micros = 0, offset = 0;
  if (!ParseDate(&c, &days) || !c.Take(' ') || !ParseTime(&c, &micros)) {
    return Unsupported("timestamp text not in ISO DateStyle");
  }
  if (with_zone && !ParseOffset(&c, &offset)) return Unsupported("timestamptz without offset");
  if (!c.Done()) return Unsupported("timestamp text not in ISO DateStyle");
  // timestamptz is sent as UTC microseconds: subtract the displayed offset.
  const int64_t v = days * kMicrosPerDay + micros - offset * 1000000;
  PutBigEndian(&out, static_cast<uint64_t>(v), 8);
  return out;
}

// numeric_send: int16 ndigits, int16 weight, int16 sign, int16 dscale, then
// ndigits base-10000 digits, most significant first; leading and trailing
// zero digits are not sent (numeric.c, make_result / numeric_send).
Result<std::string> EncodeNumeric(std::string_view text) {
  std::string out;
  auto header = [&out](int16_t ndigits, int16_t weight, uint16_t sign, int16_t dscale) {
    PutBigEndian(&out, static_cast<uint16_t>(ndigits), 2);
    PutBigEndian(&out, static_cast<uint16_t>(weight), 2);
    PutBigEndian(&out, sign, 2);
    PutBigEndian(&out, static_cast<uint16_t>(dscale), 2);
  };
  if (text == "NaN") {
    header(0, 0, 0xC000, 0);
    return out;
  }
  if (text == "Infinity" || text == "-Infinity") {
    // PostgreSQL 15 sends the infinities with dscale 32 (the display-scale
    // bits of its special-value header); the integration test checks it.
    header(0, 0, text[0] == '-' ? 0xF000 : 0xD000, 32);
    return out;
  }
  bool negative = false;
  size_t i = 0;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  std::string int_part, frac_part;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') int_part += text[i++];
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') frac_part += text[i++];
  }
  if (i != text.size() || (int_part.empty() && frac_part.empty())) {
    return Unsupported("numeric text");
  }
  if (frac_part.size() > 16383) return Unsupported("numeric scale");
  const auto dscale = static_cast<int16_t>(frac_part.size());
  // Align both parts on base-10000 digit boundaries around the point.
  int_part.insert(0, (4 - int_part.size() % 4) % 4, '0');
  frac_part.append((4 - frac_part.size() % 4) % 4, '0');
  std::vector<int16_t> digits;
  for (size_t p = 0; p < int_part.size(); p += 4) {
    digits.push_back(static_cast<int16_t>(std::stoi(int_part.substr(p, 4))));
  }
  int64_t weight = static_cast<int64_t>(int_part.size() / 4) - 1;
  for (size_t p = 0; p < frac_part.size(); p += 4) {
    digits.push_back(static_cast<int16_t>(std::stoi(frac_part.substr(p, 4))));
  }
  size_t first = 0;
  while (first < digits.size() && digits[first] == 0) {
    ++first;
    --weight;
  }
  size_t last = digits.size();
  while (last > first && digits[last - 1] == 0) --last;
  if (first == last) {
    header(0, 0, 0x0000, dscale);  // zero is positive with weight 0
    return out;
  }
  if (last - first > 32767 || weight > 32767 || weight < -32768) return Unsupported("numeric size");
  header(static_cast<int16_t>(last - first), static_cast<int16_t>(weight),
         negative ? 0x4000 : 0x0000, dscale);
  for (size_t p = first; p < last; ++p) PutBigEndian(&out, static_cast<uint16_t>(digits[p]), 2);
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> DecodeHex(std::string_view hex, std::string_view what) {
  std::string out;
  if (hex.size() % 2 != 0) return Unsupported(what);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = HexValue(hex[i]), lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) return Unsupported(what);
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace

bool HasBinaryConversion(int32_t type_oid) {
  switch (type_oid) {
    case kBool:
    case kBytea:
    case kChar:
    case kName:
    case kInt8:
    case kInt2:
    case kInt4:
    case kText:
    case kOid:
    case kJson:
    case kFloat4:
    case kFloat8:
    case kUnknown:
    case kBpchar:
    case kVarchar:
    case kDate:
    case kTime:
    case kTimestamp:
    case kTimestampTz:
    case kNumeric:
    case kUuid:
    case kJsonb:
      return true;
    default:
      return false;
  }
}

Result<std::string> TextToBinary(int32_t type_oid, std::string_view text) {
  std::string out;
  switch (type_oid) {
    case kText:
    case kName:
    case kVarchar:
    case kBpchar:
    case kJson:
    case kUnknown:
      // Text-like types send their characters as they are (textsend).
      return std::string(text);
    case kJsonb:
      out.push_back(1);  // jsonb_send: a version byte, then the text
      out.append(text);
      return out;
    case kChar:
      if (text.size() > 1) return Unsupported("\"char\" text");
      return std::string(text);
    case kBool:
      if (text == "t") return std::string(1, '\1');
      if (text == "f") return std::string(1, '\0');
      return Unsupported("boolean text");
    case kInt2: {
      auto v = ParseInteger<int16_t>(text);
      if (!v.ok()) return v.error();
      PutBigEndian(&out, static_cast<uint16_t>(*v), 2);
      return out;
    }
    case kInt4: {
      auto v = ParseInteger<int32_t>(text);
      if (!v.ok()) return v.error();
      PutBigEndian(&out, static_cast<uint32_t>(*v), 4);
      return out;
    }
    case kOid: {
      auto v = ParseInteger<uint32_t>(text);
      if (!v.ok()) return v.error();
      PutBigEndian(&out, *v, 4);
      return out;
    }
    case kInt8: {
      auto v = ParseInteger<int64_t>(text);
      if (!v.ok()) return v.error();
      PutBigEndian(&out, static_cast<uint64_t>(*v), 8);
      return out;
    }
    case kFloat4: {
      auto v = ParseFloat(text);
      if (!v.ok()) return v.error();
      const auto f = static_cast<float>(*v);
      uint32_t bits = 0;
      std::memcpy(&bits, &f, sizeof bits);
      PutBigEndian(&out, bits, 4);
      return out;
    }
    case kFloat8: {
      auto v = ParseFloat(text);
      if (!v.ok()) return v.error();
      uint64_t bits = 0;
      std::memcpy(&bits, &*v, sizeof bits);
      PutBigEndian(&out, bits, 8);
      return out;
    }
    case kNumeric:
      return EncodeNumeric(text);
    case kBytea:
      if (text.size() < 2 || text.substr(0, 2) != "\\x") return Unsupported("bytea not in hex");
      return DecodeHex(text.substr(2), "bytea text");
    case kUuid: {
      std::string hex;
      for (char c : text) {
        if (c != '-') hex.push_back(c);
      }
      if (hex.size() != 32) return Unsupported("uuid text");
      return DecodeHex(hex, "uuid text");
    }
    case kDate: {
      if (text == "infinity") {
        PutBigEndian(&out, static_cast<uint32_t>(std::numeric_limits<int32_t>::max()), 4);
        return out;
      }
      if (text == "-infinity") {
        PutBigEndian(&out, static_cast<uint32_t>(std::numeric_limits<int32_t>::min()), 4);
        return out;
      }
      Cursor c{text};
      int64_t days = 0;
      if (!ParseDate(&c, &days) || !c.Done()) return Unsupported("date text not in ISO DateStyle");
      PutBigEndian(&out, static_cast<uint32_t>(static_cast<int32_t>(days)), 4);
      return out;
    }
    case kTime: {
      Cursor c{text};
      int64_t micros = 0;
      if (!ParseTime(&c, &micros) || !c.Done()) return Unsupported("time text");
      PutBigEndian(&out, static_cast<uint64_t>(micros), 8);
      return out;
    }
    case kTimestamp:
      return EncodeTimestamp(text, false);
    case kTimestampTz:
      return EncodeTimestamp(text, true);
    default:
      return Unsupported("type oid " + std::to_string(type_oid));
  }
}

}  // namespace dpgate::proxy
