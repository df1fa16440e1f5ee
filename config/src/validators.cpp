#include "validators.h"

#include "dpgate/common/base64.h"

#include <arpa/inet.h>
#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

namespace dpgate::config::detail {

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string> ClosestMatch(std::string_view word,
                                        const std::vector<std::string>& allowed) {
  std::optional<std::string> best;
  size_t best_distance = 0;
  for (const auto& candidate : allowed) {
    const size_t d = EditDistance(word, candidate);
    if (!best || d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  // A typo changes a few characters; beyond a third of the word it is a
  // different word and a suggestion would mislead.
  const size_t limit = std::max<size_t>(1, std::min<size_t>(3, word.size() / 3 + 1));
  if (best && best_distance <= limit) return best;
  // An abbreviation ("gauss" for "gaussian") is also a likely slip.
  if (word.size() >= 3) {
    for (const auto& candidate : allowed) {
      if (candidate.compare(0, word.size(), word) == 0) return candidate;
    }
  }
  return std::nullopt;
}

Checked<std::chrono::seconds> ParseDuration(std::string_view text) {
  using R = Checked<std::chrono::seconds>;
  const std::string expected =
      "expected a duration such as 0, 30s, 15m, 1h, 1d or a whole number of seconds";
  if (text.empty()) return R::Bad("empty duration; " + expected);
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string_view unit = text.substr(digits);
  if (digits == 0 || unit.size() > 1 ||
      (unit.size() == 1 && std::strchr("smhd", unit[0]) == nullptr)) {
    return R::Bad("'" + std::string(text) + "' is not a duration; " + expected);
  }
  if (digits > 9) return R::Bad("'" + std::string(text) + "' is too long; at most 365d");
  const int64_t amount = std::stoll(std::string(text.substr(0, digits)));
  int64_t multiplier = 1;
  if (unit == "m") multiplier = 60;
  if (unit == "h") multiplier = 3600;
  if (unit == "d") multiplier = 86400;
  const int64_t seconds = amount * multiplier;
  if (seconds > 365LL * 86400) {
    return R::Bad("'" + std::string(text) + "' is too long; at most 365d");
  }
  return R::Ok(std::chrono::seconds(seconds));
}

Checked<std::string> ParseSqlIdentifier(std::string_view text) {
  using R = Checked<std::string>;
  constexpr size_t kMaxIdentifierBytes = 63;  // PostgreSQL's NAMEDATALEN - 1
  std::string out;
  if (!text.empty() && text.front() == '"') {
    if (text.size() < 2 || text.back() != '"') {
      return R::Bad("'" + std::string(text) + "' has an unterminated double quote");
    }
    const std::string_view inner = text.substr(1, text.size() - 2);
    for (size_t i = 0; i < inner.size(); ++i) {
      if (inner[i] == '"') {
        if (i + 1 < inner.size() && inner[i + 1] == '"') {
          out.push_back('"');
          ++i;
          continue;
        }
        return R::Bad("'" + std::string(text) + "' has a stray double quote; write \"\" for one");
      }
      out.push_back(inner[i]);
    }
    if (out.empty()) return R::Bad("a quoted identifier may not be empty");
  } else {
    if (text.empty()) return R::Bad("empty identifier");
    const auto first = static_cast<unsigned char>(text[0]);
    if (!(std::isalpha(first) || first == '_')) {
      return R::Bad("'" + std::string(text) +
                    "' is not an SQL identifier; expected a letter or '_' followed by letters, "
                    "digits, '_' or '$' (or a \"double-quoted\" name)");
    }
    for (const char ch : text) {
      const auto c = static_cast<unsigned char>(ch);
      if (!(std::isalnum(c) || c == '_' || c == '$')) {
        return R::Bad("'" + std::string(text) +
                      "' is not an SQL identifier; expected a letter or '_' followed by "
                      "letters, digits, '_' or '$' (or a \"double-quoted\" name)");
      }
      // PostgreSQL folds unquoted identifiers to lower case.
      out.push_back(static_cast<char>(std::tolower(c)));
    }
  }
  if (out.size() > kMaxIdentifierBytes) {
    return R::Bad("'" + std::string(text) + "' is longer than 63 bytes, PostgreSQL's limit");
  }
  return R::Ok(out);
}

Checked<std::pair<std::string, std::string>> ParseTableName(std::string_view text) {
  using R = Checked<std::pair<std::string, std::string>>;
  // Split on dots outside double quotes.
  std::vector<std::string_view> parts;
  bool quoted = false;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '"') quoted = !quoted;
    if (text[i] == '.' && !quoted) {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(text.substr(start));
  if (parts.size() > 2) {
    return R::Bad("'" + std::string(text) +
                  "' has more than two parts; expected table or schema.table (a config names "
                  "tables of the upstream database, without a database name)");
  }
  std::vector<std::string> names;
  for (const auto part : parts) {
    auto id = ParseSqlIdentifier(part);
    if (!id.value) return R::Bad(id.problem);
    names.push_back(*id.value);
  }
  if (names.size() == 1) return R::Ok({"public", names[0]});
  return R::Ok({names[0], names[1]});
}

bool IsPlainName(std::string_view text) {
  if (text.empty() || text.size() > 63) return false;
  const auto first = static_cast<unsigned char>(text[0]);
  if (!(std::isalpha(first) || first == '_')) return false;
  return std::all_of(text.begin(), text.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return std::isalnum(c) || c == '_' || c == '.' || c == '@' || c == '-';
  });
}

std::optional<std::vector<uint8_t>> DecodeBase64(std::string_view text) {
  if (text.empty()) return std::nullopt;
  auto raw = dpgate::Base64Decode(text);
  if (!raw) return std::nullopt;
  return std::vector<uint8_t>(raw->begin(), raw->end());
}

std::string CheckScramVerifier(std::string_view verifier) {
  const std::string expected =
      "expected SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>, "
      "as printed by `dpgate passwd NAME`";
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  if (verifier.substr(0, kPrefix.size()) != kPrefix) {
    return "the verifier does not start with SCRAM-SHA-256$; " + expected;
  }
  const std::string_view rest = verifier.substr(kPrefix.size());
  const size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos) return "the verifier has no keys part; " + expected;
  const std::string_view iter_salt = rest.substr(0, dollar);
  const std::string_view keys = rest.substr(dollar + 1);
  const size_t colon1 = iter_salt.find(':');
  const size_t colon2 = keys.find(':');
  if (colon1 == std::string_view::npos || colon2 == std::string_view::npos) {
    return "the verifier is malformed; " + expected;
  }
  const std::string_view iterations = iter_salt.substr(0, colon1);
  if (iterations.empty() || iterations.size() > 9 ||
      !std::all_of(iterations.begin(), iterations.end(),
                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
      std::stol(std::string(iterations)) < 1) {
    return "the verifier's iteration count is not a positive integer; " + expected;
  }
  const auto salt = DecodeBase64(iter_salt.substr(colon1 + 1));
  if (!salt || salt->empty()) return "the verifier's salt is not valid base64; " + expected;
  const auto stored_key = DecodeBase64(keys.substr(0, colon2));
  if (!stored_key || stored_key->size() != 32) {
    return "the verifier's StoredKey is not base64 of 32 bytes; " + expected;
  }
  const auto server_key = DecodeBase64(keys.substr(colon2 + 1));
  if (!server_key || server_key->size() != 32) {
    return "the verifier's ServerKey is not base64 of 32 bytes; " + expected;
  }
  return {};
}

bool IsLoopbackHost(std::string_view host) {
  std::string lower(host);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, lower.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, lower.c_str(), &v6) == 1) {
    return std::memcmp(&v6, &in6addr_loopback, sizeof v6) == 0;
  }
  return false;
}

Checked<std::string> SubstituteEnv(
    std::string_view text,
    const std::function<std::optional<std::string>(const std::string&)>& lookup) {
  using R = Checked<std::string>;
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '$' || i + 1 >= text.size() || text[i + 1] != '{') {
      out.push_back(text[i++]);
      continue;
    }
    const size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      return R::Bad("'${' without a closing '}'; expected ${NAME}");
    }
    const std::string name(text.substr(i + 2, close - i - 2));
    const bool valid_name = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                            std::all_of(name.begin(), name.end(), [](char ch) {
                              const auto c = static_cast<unsigned char>(ch);
                              return std::isalnum(c) || c == '_';
                            });
    if (!valid_name) {
      return R::Bad("'${" + name +
                    "}' is not a valid environment variable reference; expected ${NAME} with "
                    "NAME made of letters, digits and '_'");
    }
    const auto value = lookup(name);
    if (!value) {
      std::string message = "environment variable ";
      message += name;
      message += " (referenced as ${";
      message += name;
      message += "}) is not set; set it in dpgate's environment";
      return R::Bad(message);
    }
    out += *value;
    i = close + 1;
  }
  return R::Ok(out);
}

std::string CheckConnectionString(const std::string& dsn) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
  if (options != nullptr) {
    PQconninfoFree(options);
    return {};
  }
  std::string problem =
      "not a valid libpq connection string; expected key=value pairs separated by spaces "
      "(host=... port=... dbname=... user=...) or a postgresql:// URI";
  if (error != nullptr) {
    // Only this libpq message is safe to repeat: it names a keyword, never a
    // value (other messages may quote part of a password).
    constexpr std::string_view kInvalidOption = "invalid connection option \"";
    const std::string_view message(error);
    if (message.substr(0, kInvalidOption.size()) == kInvalidOption) {
      const size_t end = message.find('"', kInvalidOption.size());
      if (end != std::string_view::npos) {
        problem = "unknown connection option '" +
                  std::string(message.substr(kInvalidOption.size(), end - kInvalidOption.size())) +
                  "'; expected libpq keywords such as host, port, dbname, user, password, "
                  "sslmode, connect_timeout";
      }
    }
    PQfreemem(error);
  }
  return problem;
}

}  // namespace dpgate::config::detail
