// SCRAM-SHA-256: RFC 7677 known-answer exchange, verifier round trips, and the
// failure paths an attacker can reach.
#include <catch2/catch.hpp>

#include "dpgate/proxy/scram.h"

using dpgate::proxy::Base64Decode;
using dpgate::proxy::Base64Encode;
using dpgate::proxy::MakeScramVerifier;
using dpgate::proxy::MakeScramVerifierWithSalt;
using dpgate::proxy::ScramServerExchange;
using dpgate::proxy::ScramVerifier;

namespace {
// RFC 7677 §3 example: user "user", password "pencil".
constexpr const char* kSaltB64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr const char* kClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr const char* kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr const char* kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr const char* kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr const char* kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

ScramVerifier PencilVerifier() {
  auto salt = Base64Decode(kSaltB64);
  REQUIRE(salt.ok());
  auto v = MakeScramVerifierWithSalt("pencil", *salt, 4096);
  REQUIRE(v.ok());
  return *v;
}
}  // namespace

TEST_CASE("base64 round-trips every length and rejects malformed text") {
  std::string bytes;
  for (int n = 0; n < 40; ++n) {
    auto decoded = Base64Decode(Base64Encode(bytes));
    REQUIRE(decoded.ok());
    CHECK(*decoded == bytes);
    bytes.push_back(static_cast<char>(n * 37 + 11));
  }
  CHECK(Base64Encode("pencil") == "cGVuY2ls");
  CHECK_FALSE(Base64Decode("abc").ok());
  CHECK_FALSE(Base64Decode("ab=c").ok());
  CHECK_FALSE(Base64Decode("a$cd").ok());
}

TEST_CASE("RFC 7677 example exchange succeeds byte for byte") {
  ScramServerExchange ex(PencilVerifier(), "user", "mock");
  ex.SetServerNonceForTesting(kServerNonce);
  auto first = ex.HandleClientFirst(kClientFirst);
  REQUIRE(first.ok());
  CHECK(*first == kServerFirst);
  auto final_msg = ex.HandleClientFinal(kClientFinal);
  REQUIRE(final_msg.ok());
  CHECK(*final_msg == kServerFinal);
}

TEST_CASE("a wrong password fails with SQLSTATE 28P01") {
  auto salt = Base64Decode(kSaltB64);
  auto other = MakeScramVerifierWithSalt("pencil2", *salt, 4096);
  REQUIRE(other.ok());
  ScramServerExchange ex(*other, "user", "mock");
  ex.SetServerNonceForTesting(kServerNonce);
  REQUIRE(ex.HandleClientFirst(kClientFirst).ok());
  auto final_msg = ex.HandleClientFinal(kClientFinal);
  REQUIRE_FALSE(final_msg.ok());
  CHECK(final_msg.error().code == "28P01");
}

TEST_CASE("an unknown user gets a stable mock salt and always fails") {
  ScramServerExchange a(std::nullopt, "mallory", "secret");
  ScramServerExchange b(std::nullopt, "mallory", "secret");
  ScramServerExchange c(std::nullopt, "eve", "secret");
  auto fa = a.HandleClientFirst(kClientFirst);
  auto fb = b.HandleClientFirst(kClientFirst);
  auto fc = c.HandleClientFirst(kClientFirst);
  REQUIRE((fa.ok() && fb.ok() && fc.ok()));
  auto salt_of = [](const std::string& m) { return m.substr(m.find(",s=")); };
  CHECK(salt_of(*fa) == salt_of(*fb));  // an attacker sees the same salt each time
  CHECK(salt_of(*fa) != salt_of(*fc));
  const std::string nonce = fa->substr(2, fa->find(',') - 2);
  auto fin = a.HandleClientFinal("c=biws,r=" + nonce + ",p=" + Base64Encode(std::string(32, 'x')));
  REQUIRE_FALSE(fin.ok());
  CHECK(fin.error().code == "28P01");
}

TEST_CASE("protocol violations are refused") {
  auto run_first = [](const std::string& msg) {
    ScramServerExchange ex(PencilVerifier(), "user", "mock");
    return ex.HandleClientFirst(msg);
  };
  CHECK_FALSE(run_first("p=tls-server-end-point,,n=,r=abc").ok());  // channel binding demanded
  CHECK_FALSE(run_first("n,a=admin,n=,r=abc").ok());                // authzid
  CHECK_FALSE(run_first("n,,r=abc").ok());                          // no n=
  CHECK_FALSE(run_first("n,,n=,r=").ok());                          // empty nonce
  CHECK_FALSE(run_first("").ok());
  CHECK(run_first("y,,n=,r=abc").ok());  // client supports binding, server does not offer it

  ScramServerExchange ex(PencilVerifier(), "user", "mock");
  ex.SetServerNonceForTesting(kServerNonce);
  REQUIRE(ex.HandleClientFirst(kClientFirst).ok());
  // A tampered nonce is refused even with an otherwise valid proof.
  std::string tampered = kClientFinal;
  tampered.replace(tampered.find("rOpr"), 4, "XOpr");
  CHECK_FALSE(ex.HandleClientFinal(tampered).ok());
  // The exchange is single-use.
  CHECK_FALSE(ex.HandleClientFinal(kClientFinal).ok());
}

TEST_CASE("verifiers round-trip through PostgreSQL's text format") {
  auto v = MakeScramVerifier("correct horse battery staple");
  REQUIRE(v.ok());
  const std::string text = v->ToString();
  CHECK(text.rfind("SCRAM-SHA-256$4096:", 0) == 0);
  auto parsed = ScramVerifier::Parse(text);
  REQUIRE(parsed.ok());
  CHECK(parsed->ToString() == text);
  CHECK(parsed->salt.size() == 16);
  // Two verifiers of the same password differ (fresh salt).
  CHECK(MakeScramVerifier("correct horse battery staple")->ToString() != text);
  CHECK_FALSE(ScramVerifier::Parse("md5abcdef").ok());
  CHECK_FALSE(ScramVerifier::Parse("SCRAM-SHA-256$x:abc$def:ghi").ok());
  CHECK_FALSE(ScramVerifier::Parse("SCRAM-SHA-256$4096:c2FsdA==$c2hvcnQ=:c2hvcnQ=").ok());
}

TEST_CASE("passwords that SASLprep would change are refused, not silently altered") {
  CHECK_FALSE(MakeScramVerifier("pässword").ok());
  CHECK_FALSE(MakeScramVerifier("tab\there").ok());
  CHECK_FALSE(MakeScramVerifier("").ok());
  CHECK_FALSE(MakeScramVerifier("ok-password", 1000).ok());
}
