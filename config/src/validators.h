// Pure checks on single config values, shared by the YAML walker (parse.cpp).
// Each returns either the parsed value or a short description of what is wrong;
// the walker adds the file, line and field path.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dpgate::config::detail {

// A parsed value, or what is wrong with the input (without file/line/field).
template <typename T>
struct Checked {
  std::optional<T> value;
  std::string problem;  // set iff !value
  static Checked Ok(T v) { return Checked{std::move(v), {}}; }
  static Checked Bad(std::string why) { return Checked{std::nullopt, std::move(why)}; }
};

// Edit distance, to suggest the closest allowed key for a typo.
size_t EditDistance(std::string_view a, std::string_view b);

// The allowed word closest to `word`, if it is close enough to be a typo.
std::optional<std::string> ClosestMatch(std::string_view word,
                                        const std::vector<std::string>& allowed);

// "0", "30s", "15m", "1h", "1d" or plain seconds; at most 365 days.
Checked<std::chrono::seconds> ParseDuration(std::string_view text);

// A SQL identifier as PostgreSQL reads it: unquoted names are folded to lower
// case and must match [A-Za-z_][A-Za-z0-9_$]*; "double-quoted" names keep their
// case ("" inside stands for one "). At most 63 bytes (NAMEDATALEN - 1).
Checked<std::string> ParseSqlIdentifier(std::string_view text);

// "schema.table" or "table" (schema "public"). Returns {schema, table}.
Checked<std::pair<std::string, std::string>> ParseTableName(std::string_view text);

// A name made of [A-Za-z0-9_.@-], starting with a letter or '_', 1..63 bytes:
// analyst and dataset names (analyst names are PostgreSQL user names).
bool IsPlainName(std::string_view text);

// Strict RFC 4648 base64 with padding; nullopt if malformed.
std::optional<std::vector<uint8_t>> DecodeBase64(std::string_view text);

// Checks "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>". The
// problem text never contains the verifier itself.
std::string CheckScramVerifier(std::string_view verifier);  // empty when valid

// 127.0.0.0/8, ::1 or "localhost".
bool IsLoopbackHost(std::string_view host);

// Replaces every ${NAME} with the value `lookup` gives; an unset variable or a
// malformed reference is a problem naming the variable (never its value).
Checked<std::string> SubstituteEnv(
    std::string_view text,
    const std::function<std::optional<std::string>(const std::string&)>& lookup);

// A libpq connection string (key=value or postgresql:// URI) that libpq
// accepts. The problem text never repeats the string (it may hold a password).
std::string CheckConnectionString(const std::string& dsn);  // empty when valid

}  // namespace dpgate::config::detail
