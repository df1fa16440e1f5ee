// Shared fixtures for the config unit tests: a minimal valid config whose
// line numbers the error tests rely on, and helpers to mutate it.
#pragma once

#include <catch2/catch.hpp>
#include <string>

#include "dpgate/config/config.h"

namespace dpgate::config::testing {

// A verifier with the right shape: 16-byte salt, 32-byte keys (not a real
// password's verifier; the config only checks the format).
inline const std::string kVerifier =
    "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs=:"
    "PiPoFgA5WUoziU9lZOGxNIu9egCI1CxKy3PurtWcAJ0=";

// Line numbers matter: the error tests name them.
inline const std::string kMinimal =
    R"(upstream: { dsn: "host=127.0.0.1 dbname=w user=reader" }
ledger: { dsn: "host=127.0.0.1 dbname=w user=ledger" }
auth: trust
analysts:
  - name: alice
    budget: { epsilon: 10, delta: 1.0e-6, period: month }
datasets:
  - name: hr
    budget: { epsilon: 50, delta: 1.0e-5 }
    tables:
      - name: employees
        privacy_unit: employee_id
        columns:
          salary: { lower: 0, upper: 500000 }
)";

// kMinimal with `from` (which must occur exactly once) replaced by `to`.
inline std::string Mutate(const std::string& from, const std::string& to,
                          const std::string& base = kMinimal) {
  const size_t at = base.find(from);
  REQUIRE(at != std::string::npos);
  REQUIRE(base.find(from, at + 1) == std::string::npos);
  std::string out = base;
  out.replace(at, from.size(), to);
  return out;
}

// The error message of a config that must be refused.
inline std::string ErrorOf(const std::string& yaml) {
  auto result = ParseConfig(yaml, "dpgate.yaml");
  if (result.ok()) FAIL("config was accepted but should be refused:\n" << yaml);
  CHECK(result.error().code == "config");
  return result.error().message;
}

inline Config Accept(const std::string& yaml, const std::string& source = "dpgate.yaml") {
  auto result = ParseConfig(yaml, source);
  if (!result.ok()) FAIL("config was refused: " << result.error().message);
  return std::move(result).value();
}

}  // namespace dpgate::config::testing
