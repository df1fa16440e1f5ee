// The ledger's hash chain (docs/LEDGER.md "Canonical encoding" and "Hash
// chain"). Every row of `charges` carries prev_hash (the previous row's hash,
// 32 zero bytes for row 1) and hash = SHA-256(CanonicalEncoding(row)), where
// the encoding ends with prev_hash. Pure code: no database.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace dpgate::accountant {

using Hash = std::array<uint8_t, 32>;

// The all-zero hash that row 1 links to.
Hash GenesisHash();

// One row of the `charges` table, exactly the fields the hash covers.
// Timestamps are microseconds since the Unix epoch (UTC), which is the
// precision PostgreSQL keeps, so a row read back hashes the same.
struct ChargeRecord {
  int64_t id = 0;
  int64_t at_us = 0;
  std::string analyst;
  std::string dataset;
  double epsilon = 0;
  double delta = 0;
  std::optional<double> rho;  // zCDP, for Gaussian releases accounted that way
  std::string fingerprint;
  std::string original_sql;
  std::string rewritten_sql;
  std::string outcome;                  // "charged" | "refused"
  std::string detail;                   // why it was refused; empty when charged
  int64_t period_start_us = 0;          // the analyst budget's period
  int64_t dataset_period_start_us = 0;  // the dataset's global budget's period
  Hash prev_hash{};
};

// The exact text a double is hashed as: printf "%.17g", which round-trips
// every finite double. (PostgreSQL's float8 output is the shortest text that
// round-trips, so a value read back parses to the same double and formats to
// the same text here.)
std::string CanonicalDouble(double value);

// Version tag, then each field in the order declared above as a 4-byte
// big-endian length followed by that many bytes (NULL: length 0xFFFFFFFF and no
// bytes); integers and doubles as ASCII decimal text; prev_hash as 32 raw bytes.
std::string CanonicalEncoding(const ChargeRecord& row);

Hash ChainHash(const ChargeRecord& row);

std::string ToHex(const Hash& hash);
bool FromHex(const std::string& hex, Hash* out);

}  // namespace dpgate::accountant
