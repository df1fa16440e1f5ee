// SCRAM-SHA-256 server side (RFC 5802, RFC 7677) as PostgreSQL speaks it
// (protocol docs, "SASL Authentication"): verifiers in PostgreSQL's format,
// the server's half of the exchange, and verifier generation for
// `dpgate passwd`. Pure: no I/O but the CSPRNG for nonces and salts.
//
// Channel binding (SCRAM-SHA-256-PLUS) is not offered; a client that demands
// it is refused, one that merely supports it ("y,,") is accepted (RFC 5802 §6).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dpgate/common/result.h"

namespace dpgate::proxy {

using Sha256Digest = std::array<uint8_t, 32>;

// "SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>"
struct ScramVerifier {
  uint32_t iterations = 0;
  std::string salt;  // raw bytes
  Sha256Digest stored_key{};
  Sha256Digest server_key{};

  static Result<ScramVerifier> Parse(std::string_view text);
  std::string ToString() const;
};

// Makes a verifier for `password` with a fresh 16-byte random salt. Passwords
// must be printable ASCII: for those SASLprep (RFC 4013) is the identity, so
// every client computes the same salted password; others are refused rather
// than silently normalised differently from libpq.
Result<ScramVerifier> MakeScramVerifier(std::string_view password, uint32_t iterations = 4096);
// Same with a given salt (tests, and known-answer vectors).
Result<ScramVerifier> MakeScramVerifierWithSalt(std::string_view password, std::string_view salt,
                                                uint32_t iterations);

std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view text);  // strict: padding required

// The server's side of one SCRAM-SHA-256 exchange:
//   1. HandleClientFirst(client-first-message) -> server-first-message
//   2. HandleClientFinal(client-final-message) -> server-final-message ("v=...")
// If the user is unknown, construct with no verifier: the exchange proceeds
// with a salt derived from `mock_secret` and the user name (so an attacker
// cannot tell unknown users from wrong passwords), and fails at step 2.
class ScramServerExchange {
 public:
  ScramServerExchange(std::optional<ScramVerifier> verifier, std::string_view user,
                      std::string_view mock_secret);

  Result<std::string> HandleClientFirst(std::string_view client_first);
  Result<std::string> HandleClientFinal(std::string_view client_final);

  // Deterministic nonce for known-answer tests; production uses the CSPRNG.
  void SetServerNonceForTesting(std::string nonce) { server_nonce_ = std::move(nonce); }

 private:
  enum class Step { kClientFirst, kClientFinal, kDone };
  std::optional<ScramVerifier> verifier_;
  ScramVerifier effective_;  // the real verifier or the mock one
  Step step_ = Step::kClientFirst;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string combined_nonce_;
  std::string server_nonce_;
};

}  // namespace dpgate::proxy
