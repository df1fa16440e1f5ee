#include "dpgate/proxy/scram.h"

#include "dpgate/common/base64.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <charconv>
#include <vector>

namespace dpgate::proxy {
namespace {

constexpr std::string_view kPrefix = "SCRAM-SHA-256$";

Error AuthError(std::string message) {
  return MakeError("28P01", std::move(message));
}
Error ProtocolError(std::string message) {
  return MakeError("08P01", std::move(message));
}

Sha256Digest Hmac(const Sha256Digest& key, std::string_view data) {
  Sha256Digest out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  return out;
}

Sha256Digest Sha256(const Sha256Digest& data) {
  Sha256Digest out{};
  SHA256(data.data(), data.size(), out.data());
  return out;
}

std::string_view AsView(const Sha256Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

bool IsPrintableAscii(std::string_view s) {
  for (unsigned char ch : s) {
    if (ch < 0x20 || ch > 0x7e) return false;
  }
  return true;
}

Result<Sha256Digest> DecodeKey(std::string_view b64, const char* what) {
  auto raw = Base64Decode(b64);
  if (!raw.ok() || raw->size() != 32) {
    return MakeError("config",
                     std::string("SCRAM verifier: ") + what + " is not 32 bytes of base64");
  }
  Sha256Digest d{};
  std::copy(raw->begin(), raw->end(), d.begin());
  return d;
}

// Splits "a=...,b=...,..." into attributes, in order. SCRAM attribute values
// never contain ',' (RFC 5802 §5.1: ',' in names is escaped as =2C).
std::vector<std::string_view> SplitAttributes(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string_view::npos ? s.npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string RandomPrintableNonce() {
  unsigned char raw[18];
  if (RAND_bytes(raw, sizeof raw) != 1) return {};
  return Base64Encode(std::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
}

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  return dpgate::Base64Encode(bytes);
}

Result<std::string> Base64Decode(std::string_view text) {
  auto decoded = dpgate::Base64Decode(text);
  if (!decoded) return MakeError("base64", "malformed base64");
  return std::move(*decoded);
}

Result<ScramVerifier> ScramVerifier::Parse(std::string_view text) {
  const auto bad = [](const std::string& why) {
    return MakeError("config", "SCRAM verifier: " + why +
                                   "; expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:"
                                   "<ServerKey> as printed by `dpgate passwd NAME`");
  };
  if (text.substr(0, kPrefix.size()) != kPrefix) return bad("does not start with SCRAM-SHA-256$");
  text.remove_prefix(kPrefix.size());
  const size_t colon1 = text.find(':');
  const size_t dollar = text.find('$');
  if (colon1 == text.npos || dollar == text.npos || dollar < colon1) return bad("malformed");
  const size_t colon2 = text.find(':', dollar);
  if (colon2 == text.npos) return bad("malformed");
  ScramVerifier v;
  const std::string_view iter = text.substr(0, colon1);
  auto [ptr, ec] = std::from_chars(iter.data(), iter.data() + iter.size(), v.iterations);
  if (ec != std::errc() || ptr != iter.data() + iter.size() || v.iterations < 1) {
    return bad("iteration count is not a positive integer");
  }
  auto salt = Base64Decode(text.substr(colon1 + 1, dollar - colon1 - 1));
  if (!salt.ok() || salt->empty()) return bad("salt is not base64");
  v.salt = std::move(*salt);
  auto stored = DecodeKey(text.substr(dollar + 1, colon2 - dollar - 1), "StoredKey");
  if (!stored.ok()) return stored.error();
  auto server = DecodeKey(text.substr(colon2 + 1), "ServerKey");
  if (!server.ok()) return server.error();
  v.stored_key = *stored;
  v.server_key = *server;
  return v;
}

std::string ScramVerifier::ToString() const {
  return std::string(kPrefix) + std::to_string(iterations) + ":" + Base64Encode(salt) + "$" +
         Base64Encode(AsView(stored_key)) + ":" + Base64Encode(AsView(server_key));
}

Result<ScramVerifier> MakeScramVerifierWithSalt(std::string_view password, std::string_view salt,
                                                uint32_t iterations) {
  if (!IsPrintableAscii(password)) {
    return MakeError("passwd",
                     "the password must be printable ASCII (SASLprep of other characters is not "
                     "supported); choose a password of letters, digits and punctuation");
  }
  if (password.empty()) return MakeError("passwd", "the password is empty");
  if (iterations < 4096) {
    return MakeError("passwd", "at least 4096 iterations are required (RFC 7677 §4)");
  }
  // SaltedPassword = Hi(password, salt, i) = PBKDF2-HMAC-SHA-256 (RFC 5802 §2.2).
  Sha256Digest salted{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(salted.size()), salted.data()) != 1) {
    return MakeError("passwd", "PBKDF2 failed");
  }
  ScramVerifier v;
  v.iterations = iterations;
  v.salt = std::string(salt);
  v.stored_key = Sha256(Hmac(salted, "Client Key"));
  v.server_key = Hmac(salted, "Server Key");
  OPENSSL_cleanse(salted.data(), salted.size());
  return v;
}

Result<ScramVerifier> MakeScramVerifier(std::string_view password, uint32_t iterations) {
  unsigned char salt[16];
  if (RAND_bytes(salt, sizeof salt) != 1) return MakeError("passwd", "no randomness for the salt");
  return MakeScramVerifierWithSalt(
      password, std::string_view(reinterpret_cast<char*>(salt), sizeof salt), iterations);
}

ScramServerExchange::ScramServerExchange(std::optional<ScramVerifier> verifier,
                                         std::string_view user, std::string_view mock_secret)
    : verifier_(std::move(verifier)) {
  if (verifier_.has_value()) {
    effective_ = *verifier_;
  } else {
    // Unknown user: a stable fake salt (HMAC of the name under a secret), the
    // default iteration count, and random keys that no proof can match.
    Sha256Digest key{};
    SHA256(reinterpret_cast<const unsigned char*>(mock_secret.data()), mock_secret.size(),
           key.data());
    const Sha256Digest salt = Hmac(key, user);
    effective_.iterations = 4096;
    effective_.salt = std::string(AsView(salt).substr(0, 16));
    RAND_bytes(effective_.stored_key.data(), static_cast<int>(effective_.stored_key.size()));
    RAND_bytes(effective_.server_key.data(), static_cast<int>(effective_.server_key.size()));
  }
  server_nonce_ = RandomPrintableNonce();
}

Result<std::string> ScramServerExchange::HandleClientFirst(std::string_view msg) {
  if (step_ != Step::kClientFirst) return ProtocolError("SCRAM: unexpected client-first-message");
  step_ = Step::kDone;  // any failure below ends the exchange
  // gs2-header = gs2-cbind-flag "," [authzid] ","
  if (msg.size() < 3) return ProtocolError("SCRAM: malformed client-first-message");
  if (msg[0] == 'p') {
    return ProtocolError(
        "SCRAM: channel binding was requested but dpgate does not offer SCRAM-SHA-256-PLUS");
  }
  if ((msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',') {
    return ProtocolError("SCRAM: malformed gs2 header");
  }
  const size_t second_comma = msg.find(',', 2);
  if (second_comma == msg.npos) return ProtocolError("SCRAM: malformed gs2 header");
  if (second_comma != 2) return ProtocolError("SCRAM: authorization identities are not supported");
  gs2_header_ = std::string(msg.substr(0, 3));
  client_first_bare_ = std::string(msg.substr(3));
  const auto attrs = SplitAttributes(client_first_bare_);
  // PostgreSQL ignores the SCRAM user name (n=) and uses the startup user.
  if (attrs.size() < 2 || attrs[0].substr(0, 2) != "n=" || attrs[1].substr(0, 2) != "r=") {
    return ProtocolError("SCRAM: malformed client-first-message");
  }
  if (attrs[0].size() > 2 && attrs[0][2] == 'm') {
    return ProtocolError("SCRAM: mandatory extensions are not supported");
  }
  const std::string_view client_nonce = attrs[1].substr(2);
  if (client_nonce.empty() || !IsPrintableAscii(client_nonce) ||
      client_nonce.find(',') != client_nonce.npos) {
    return ProtocolError("SCRAM: invalid client nonce");
  }
  if (server_nonce_.empty()) return MakeError("XX000", "SCRAM: no randomness for the nonce");
  combined_nonce_ = std::string(client_nonce) + server_nonce_;
  server_first_ = "r=" + combined_nonce_ + ",s=" + Base64Encode(effective_.salt) +
                  ",i=" + std::to_string(effective_.iterations);
  step_ = Step::kClientFinal;
  return server_first_;
}

Result<std::string> ScramServerExchange::HandleClientFinal(std::string_view msg) {
  if (step_ != Step::kClientFinal) return ProtocolError("SCRAM: unexpected client-final-message");
  step_ = Step::kDone;
  const size_t proof_at = msg.rfind(",p=");
  if (proof_at == msg.npos) return ProtocolError("SCRAM: client-final-message has no proof");
  const std::string_view without_proof = msg.substr(0, proof_at);
  const auto attrs = SplitAttributes(without_proof);
  if (attrs.size() < 2 || attrs[0].substr(0, 2) != "c=" || attrs[1].substr(0, 2) != "r=") {
    return ProtocolError("SCRAM: malformed client-final-message");
  }
  // c= must carry exactly the gs2 header we saw (no channel binding data).
  auto cbind = Base64Decode(attrs[0].substr(2));
  if (!cbind.ok() || *cbind != gs2_header_) {
    return ProtocolError("SCRAM: channel binding data does not match the gs2 header");
  }
  if (attrs[1].substr(2) != combined_nonce_) return ProtocolError("SCRAM: nonce mismatch");
  auto proof_raw = Base64Decode(msg.substr(proof_at + 3));
  if (!proof_raw.ok() || proof_raw->size() != 32) {
    return ProtocolError("SCRAM: malformed client proof");
  }
  const std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  const Sha256Digest client_signature = Hmac(effective_.stored_key, auth_message);
  Sha256Digest client_key{};
  for (size_t i = 0; i < client_key.size(); ++i) {
    client_key[i] = static_cast<uint8_t>((*proof_raw)[i]) ^ client_signature[i];
  }
  const Sha256Digest derived_stored = Sha256(client_key);
  // Constant-time comparison, and the same work for unknown users.
  const bool match = CRYPTO_memcmp(derived_stored.data(), effective_.stored_key.data(),
                                   derived_stored.size()) == 0;
  if (!match || !verifier_.has_value()) {
    return AuthError("password authentication failed");
  }
  const Sha256Digest server_signature = Hmac(effective_.server_key, auth_message);
  return "v=" + Base64Encode(AsView(server_signature));
}

}  // namespace dpgate::proxy
