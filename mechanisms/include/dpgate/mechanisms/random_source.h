// Randomness for noise (docs/PRIVACY.md §1).
//
// Every noise draw in dpgate comes from a `RandomSource`. Production code uses
// `SecureRandom()`, a per-thread buffer refilled from OpenSSL's CSPRNG
// (RAND_bytes). Tests may inject `DeterministicRandomSource` to make a run
// reproducible; it is not cryptographic and must never reach the proxy.
//
// The buffer lives in the base class and the hot path (`NextUint64`) is
// inline and non-virtual: only a refill (every 16 KiB) is a virtual call, so a
// draw costs a few nanoseconds.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dpgate::mechanisms {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  RandomSource(const RandomSource&) = delete;
  RandomSource& operator=(const RandomSource&) = delete;

  // 64 uniformly random bits.
  uint64_t NextUint64() {
    if (pos_ == kBufferWords) {
      Refill(words_.data(), sizeof(words_));
      pos_ = 0;
    }
    return words_[pos_++];
  }

  // One uniformly random bit (cached 64 at a time).
  bool NextBit() {
    if (bits_left_ == 0) {
      bit_cache_ = NextUint64();
      bits_left_ = 64;
    }
    --bits_left_;
    const bool bit = (bit_cache_ & 1u) != 0;
    bit_cache_ >>= 1;
    return bit;
  }

  // 32 uniformly random bits (half of a cached word): small-range draws use
  // these so that a draw costs half as much CSPRNG output.
  uint32_t NextUint32() {
    if (!half_left_) {
      half_cache_ = NextUint64();
      half_left_ = true;
      return static_cast<uint32_t>(half_cache_);
    }
    half_left_ = false;
    return static_cast<uint32_t>(half_cache_ >> 32);
  }

  // Uniform on {0, ..., n-1} for 1 <= n < 2^32, from 32 random bits (Lemire
  // 2019 with rejection; exact).
  uint32_t UniformBelowSmall(uint32_t n) {
    uint64_t m = static_cast<uint64_t>(NextUint32()) * n;
    uint32_t low = static_cast<uint32_t>(m);
    if (low < n) {
      const uint32_t threshold = (0u - n) % n;  // 2^32 mod n
      while (low < threshold) {
        m = static_cast<uint64_t>(NextUint32()) * n;
        low = static_cast<uint32_t>(m);
      }
    }
    return static_cast<uint32_t>(m >> 32);
  }

  // Uniform on [0, 1): k / 2^53 for k uniform in [0, 2^53). Every value is
  // exactly representable, so the distribution is exactly uniform on that grid.
  double UniformDouble() { return static_cast<double>(NextUint64() >> 11) * 0x1.0p-53; }

  // Uniform on {0, ..., n-1}, exactly (no modulo bias); n must be >= 1.
  // Lemire's multiply-and-reject (ACM TOMACS 2019): the rejection step removes
  // the bias of the multiply-shift reduction.
  uint64_t UniformBelow(uint64_t n);

  // Uniform on {0, ..., n-1} for a 128-bit n >= 1 (rejection on masked bits).
  unsigned __int128 UniformBelow128(unsigned __int128 n);

  // Bernoulli(p) for a double p, exactly: compares the infinite binary
  // expansion of a uniform U with that of p, 64 bits at a time, so
  // P(true) = p exactly for every double p in [0, 1] (values outside clamp).
  bool Bernoulli(double p);

  // Bernoulli(num / den) for integers 0 <= num, 0 < den, exactly.
  bool BernoulliRational(uint64_t num, uint64_t den) { return UniformBelow(den) < num; }

 protected:
  RandomSource() = default;
  // Fill `bytes` bytes at `out` with fresh random bytes.
  virtual void Refill(void* out, size_t bytes) = 0;

 private:
  static constexpr size_t kBufferWords = 2048;  // 16 KiB per refill
  std::array<uint64_t, kBufferWords> words_{};
  size_t pos_ = kBufferWords;  // empty: first draw refills
  uint64_t bit_cache_ = 0;
  int bits_left_ = 0;
  uint64_t half_cache_ = 0;
  bool half_left_ = false;
};

// OpenSSL RAND_bytes, buffered. A failure of the CSPRNG is unrecoverable for a
// privacy system (noise we cannot trust must not be released), so Refill
// aborts the process rather than return predictable bytes.
class OpenSslRandomSource final : public RandomSource {
 public:
  OpenSslRandomSource() = default;

 protected:
  void Refill(void* out, size_t bytes) override;
};

// The calling thread's secure source. One per thread (thread_local) so that
// draws need no lock; this is the only per-thread mutable state in the
// library and it holds nothing but CSPRNG output. Not fork-safe: a forked
// child must not draw from a buffer inherited from its parent (dpgate does
// not fork after start-up).
RandomSource& SecureRandom();

// Reproducible, NOT cryptographic (xoshiro256**, seeded by SplitMix64; Blackman
// & Vigna 2018). For tests and reproducibility checks only.
class DeterministicRandomSource final : public RandomSource {
 public:
  explicit DeterministicRandomSource(uint64_t seed);

 protected:
  void Refill(void* out, size_t bytes) override;

 private:
  uint64_t s_[4];
};

}  // namespace dpgate::mechanisms
