#include "dpgate/accountant/chain.h"

#include <openssl/sha.h>

#include <cstdio>

namespace dpgate::accountant {

namespace {

// Bumped if the encoding ever changes, so old and new rows cannot collide.
constexpr char kEncodingTag[] = "dpgate.ledger.charge.v1";

void AppendLength(std::string* out, uint32_t n) {
  out->push_back(static_cast<char>((n >> 24) & 0xff));
  out->push_back(static_cast<char>((n >> 16) & 0xff));
  out->push_back(static_cast<char>((n >> 8) & 0xff));
  out->push_back(static_cast<char>(n & 0xff));
}

void AppendField(std::string* out, const std::string& bytes) {
  AppendLength(out, static_cast<uint32_t>(bytes.size()));
  out->append(bytes);
}

void AppendNull(std::string* out) {
  AppendLength(out, 0xffffffffu);
}

}  // namespace

Hash GenesisHash() {
  return Hash{};
}

std::string CanonicalDouble(double value) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  return buf;
}

std::string CanonicalEncoding(const ChargeRecord& row) {
  std::string out;
  out.reserve(256 + row.original_sql.size() + row.rewritten_sql.size());
  AppendField(&out, kEncodingTag);
  AppendField(&out, std::to_string(row.id));
  AppendField(&out, std::to_string(row.at_us));
  AppendField(&out, row.analyst);
  AppendField(&out, row.dataset);
  AppendField(&out, CanonicalDouble(row.epsilon));
  AppendField(&out, CanonicalDouble(row.delta));
  if (row.rho) {
    AppendField(&out, CanonicalDouble(*row.rho));
  } else {
    AppendNull(&out);
  }
  AppendField(&out, row.fingerprint);
  AppendField(&out, row.original_sql);
  AppendField(&out, row.rewritten_sql);
  AppendField(&out, row.outcome);
  AppendField(&out, row.detail);
  AppendField(&out, std::to_string(row.period_start_us));
  AppendField(&out, std::to_string(row.dataset_period_start_us));
  AppendField(
      &out, std::string(reinterpret_cast<const char*>(row.prev_hash.data()), row.prev_hash.size()));
  return out;
}

Hash ChainHash(const ChargeRecord& row) {
  const std::string bytes = CanonicalEncoding(row);
  Hash h{};
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), h.data());
  return h;
}

std::string ToHex(const Hash& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : hash) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

bool FromHex(const std::string& hex, Hash* out) {
  if (hex.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace dpgate::accountant
