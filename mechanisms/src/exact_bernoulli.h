// Exact Bernoulli(exp(-γ)) for rational γ (Canonne, Kamath, Steinke, "The
// Discrete Gaussian for Differential Privacy", NeurIPS 2020, Algorithm 1;
// docs/PRIVACY.md §1.3). Private to the library.
#pragma once

#include <cstdint>

#include "dpgate/mechanisms/random_source.h"

namespace dpgate::mechanisms::internal {

using u128 = unsigned __int128;

// A 256-bit unsigned integer, just enough for the discrete Gaussian's
// acceptance test (γ's numerator is a square of a 128-bit value).
struct U256 {
  u128 hi = 0;
  u128 lo = 0;

  static U256 Mul(u128 a, u128 b);
  static U256 From(u128 v) { return U256{0, v}; }
  friend bool operator<(const U256& a, const U256& b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
  }
  friend bool operator==(const U256& a, const U256& b) { return a.hi == b.hi && a.lo == b.lo; }
  U256 Sub(const U256& b) const;  // requires b <= *this
  U256 Shl1() const { return U256{(hi << 1) | (lo >> 127), lo << 1}; }
};

// Uniform on [0, n), n > 0.
U256 UniformBelow256(RandomSource& rng, const U256& n);

// Bernoulli(exp(-1)), exactly (CKS Algorithm 1 with γ = 1).
bool BernoulliExpMinusOne(RandomSource& rng);

// Bernoulli(exp(-num/den)) for 0 <= num, 0 < den: floor(γ) rounds of
// Bernoulli(exp(-1)), then CKS Algorithm 1 on the remainder γ' in [0, 1],
// where Bernoulli(γ'/K) = Bernoulli(1/K) AND Bernoulli(γ') (independent).
bool BernoulliExpNeg(RandomSource& rng, uint64_t num, uint64_t den);
bool BernoulliExpNeg(RandomSource& rng, U256 num, const U256& den);

// Two-sided geometric: P(z) ∝ exp(-|z|·s/t), i.e. scale t/s, for integers
// t, s >= 1 (CKS Algorithm 2). `t` < 2^63, `s` < 2^63; results saturate at
// ±(2^63 - 1), which for the scales Build() allows has probability < 2^-1000.
int64_t SampleDiscreteLaplace(RandomSource& rng, uint64_t t, uint64_t s);

}  // namespace dpgate::mechanisms::internal
