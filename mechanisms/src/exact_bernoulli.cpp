#include "exact_bernoulli.h"

#include <limits>

namespace dpgate::mechanisms::internal {

U256 U256::Mul(u128 a, u128 b) {
  const uint64_t a0 = static_cast<uint64_t>(a), a1 = static_cast<uint64_t>(a >> 64);
  const uint64_t b0 = static_cast<uint64_t>(b), b1 = static_cast<uint64_t>(b >> 64);
  const u128 p00 = static_cast<u128>(a0) * b0;
  const u128 p01 = static_cast<u128>(a0) * b1;
  const u128 p10 = static_cast<u128>(a1) * b0;
  const u128 p11 = static_cast<u128>(a1) * b1;
  // Middle column: high half of p00 plus low halves of p01 and p10.
  const u128 mid = (p00 >> 64) + static_cast<uint64_t>(p01) + static_cast<uint64_t>(p10);
  U256 r;
  r.lo = (mid << 64) | static_cast<uint64_t>(p00);
  r.hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
  return r;
}

U256 U256::Sub(const U256& b) const {
  U256 r;
  r.lo = lo - b.lo;
  r.hi = hi - b.hi - (lo < b.lo ? 1 : 0);
  return r;
}

namespace {
int BitLength128(u128 v) {
  const uint64_t h = static_cast<uint64_t>(v >> 64);
  if (h) return 128 - __builtin_clzll(h);
  const uint64_t l = static_cast<uint64_t>(v);
  return l ? 64 - __builtin_clzll(l) : 0;
}
u128 Mask128(int bits) {
  return bits >= 128 ? ~u128{0} : ((u128{1} << bits) - 1);
}
u128 Random128(RandomSource& rng) {
  return (static_cast<u128>(rng.NextUint64()) << 64) | rng.NextUint64();
}
}  // namespace

U256 UniformBelow256(RandomSource& rng, const U256& n) {
  if (n.hi == 0) return U256::From(rng.UniformBelow128(n.lo));
  // Rejection on the bit length of n: each try succeeds with probability > 1/2.
  const u128 mask = Mask128(BitLength128(n.hi));
  for (;;) {
    U256 x{Random128(rng) & mask, Random128(rng)};
    if (x < n) return x;
  }
}

bool BernoulliExpMinusOne(RandomSource& rng) {
  // CKS Algorithm 1, γ = 1: K counts successes of Bernoulli(1/K); P(K odd) =
  // e^-1. The first trial, Bernoulli(1/1), always succeeds, so start at K = 2.
  // K < 2^32 always: reaching K has probability 1/(K−1)!.
  uint32_t k = 2;
  while (rng.UniformBelowSmall(k) == 0) ++k;
  return (k & 1) != 0;
}

bool BernoulliExpNeg(RandomSource& rng, uint64_t num, uint64_t den) {
  // exp(-γ) = exp(-1)^floor(γ) · exp(-(γ - floor γ)), independent factors.
  while (num > den) {
    if (!BernoulliExpMinusOne(rng)) return false;
    num -= den;
  }
  // Trial K succeeds with probability γ'/K: Bernoulli(1/K) (skipped for
  // K = 1) and Bernoulli(num/den).
  if (!rng.BernoulliRational(num, den)) return true;  // K = 1: odd
  uint32_t k = 2;
  while (rng.UniformBelowSmall(k) == 0 && rng.BernoulliRational(num, den)) ++k;
  return (k & 1) != 0;
}

bool BernoulliExpNeg(RandomSource& rng, U256 num, const U256& den) {
  while (den < num) {
    if (!BernoulliExpMinusOne(rng)) return false;
    num = num.Sub(den);
  }
  if (!(UniformBelow256(rng, den) < num)) return true;  // K = 1: odd
  uint32_t k = 2;
  while (rng.UniformBelowSmall(k) == 0 && UniformBelow256(rng, den) < num) ++k;
  return (k & 1) != 0;
}

int64_t SampleDiscreteLaplace(RandomSource& rng, uint64_t t, uint64_t s) {
  constexpr u128 kMax = static_cast<u128>(std::numeric_limits<int64_t>::max());
  for (;;) {
    // CKS Algorithm 2. X = U + t·V is geometric with P(X = x) ∝ exp(-x/t):
    // U uniform on [0, t) accepted with probability exp(-U/t), V geometric
    // with P(V >= v) = exp(-v).
    const uint64_t u = rng.UniformBelow(t);
    if (!BernoulliExpNeg(rng, u, t)) continue;
    uint64_t v = 0;
    while (BernoulliExpMinusOne(rng)) ++v;
    const u128 x = static_cast<u128>(u) + static_cast<u128>(t) * v;
    // Y = floor(X / s) is geometric with P(Y = y) ∝ exp(-y·s/t).
    u128 y = x / s;
    if (y > kMax) y = kMax;
    // Random sign, rejecting "-0" so that 0 is not counted twice.
    const bool negative = rng.NextBit();
    if (negative && y == 0) continue;
    return negative ? -static_cast<int64_t>(y) : static_cast<int64_t>(y);
  }
}

}  // namespace dpgate::mechanisms::internal
