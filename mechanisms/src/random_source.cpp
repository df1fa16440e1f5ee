#include "dpgate/mechanisms/random_source.h"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace dpgate::mechanisms {

uint64_t RandomSource::UniformBelow(uint64_t n) {
  // Lemire 2019, "Fast random integer generation in an interval": m = x * n;
  // the high word is uniform on [0, n) once the low words below 2^64 mod n are
  // rejected.
  unsigned __int128 m = static_cast<unsigned __int128>(NextUint64()) * n;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    while (low < threshold) {
      m = static_cast<unsigned __int128>(NextUint64()) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

unsigned __int128 RandomSource::UniformBelow128(unsigned __int128 n) {
  if ((n >> 64) == 0) return UniformBelow(static_cast<uint64_t>(n));
  // Mask to the bit length of n - 1 and reject: each try succeeds with
  // probability > 1/2.
  const unsigned __int128 top = n - 1;
  const int bits = 128 - __builtin_clzll(static_cast<uint64_t>(top >> 64));
  const uint64_t high_mask = bits - 64 >= 64 ? ~uint64_t{0} : ((uint64_t{1} << (bits - 64)) - 1);
  for (;;) {
    const unsigned __int128 x =
        (static_cast<unsigned __int128>(NextUint64() & high_mask) << 64) | NextUint64();
    if (x < n) return x;
  }
}

bool RandomSource::Bernoulli(double p) {
  if (!(p > 0)) return false;  // also NaN
  if (p >= 1) return true;
  // U < p, decided on 64-bit blocks of the binary expansions. p * 2^64 is
  // exact (scaling by a power of two), its integer part is the next 64 bits of
  // p and its fractional part (also exact) the rest. Each block is equal with
  // probability 2^-64, so the loop ends almost at once.
  double rest = p;
  for (;;) {
    const double scaled = std::ldexp(rest, 64);
    const double block = std::floor(scaled);
    const uint64_t p_bits = static_cast<uint64_t>(block);
    const uint64_t u_bits = NextUint64();
    if (u_bits < p_bits) return true;
    if (u_bits > p_bits) return false;
    rest = scaled - block;
    if (rest == 0) return false;  // p's expansion ended and U's continues >= 0
  }
}

void OpenSslRandomSource::Refill(void* out, size_t bytes) {
  if (RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(bytes)) != 1) {
    const unsigned long err = ERR_get_error();
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    std::fprintf(stderr, "dpgate: OpenSSL RAND_bytes failed (%s); refusing to continue\n", buf);
    std::abort();
  }
}

RandomSource& SecureRandom() {
  thread_local OpenSslRandomSource source;
  return source;
}

namespace {
uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t Rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}
}  // namespace

DeterministicRandomSource::DeterministicRandomSource(uint64_t seed) {
  for (auto& s : s_) s = SplitMix64(seed);
}

void DeterministicRandomSource::Refill(void* out, size_t bytes) {
  auto* words = static_cast<uint64_t*>(out);
  for (size_t i = 0; i < bytes / sizeof(uint64_t); ++i) {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    words[i] = result;
  }
}

}  // namespace dpgate::mechanisms
