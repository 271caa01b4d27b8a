// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; Random123)
// and the float conversions built on it, as inline functions shared by host code, g++ (emulated
// kernels) and nvcc (device kernels), so every side draws the same numbers from the same counters.
//
// Stream layout (the one used everywhere in darkstar):
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (tuple & 0xffffffff, tuple >> 32, stream, 0)
// A (seed, stream) pair is one independent sequence of 4×uint32 tuples, indexed by `tuple` (the
// "offset"). RNG counters in checkpoints are therefore just tuple counts: a stream that has handed out
// k tuples continues at offset k. Bulk draws (host fill_*, device *_fill) give element i the
// component i % 4 of tuple offset + i / 4, so n elements consume ceil(n / 4) tuples and always start
// at a tuple boundary: offsets are counted in tuples, never in elements, so there is no alignment
// to get wrong.
//
// Floats: uniform_open_closed is in (0, 1] (feeds logf: never 0), uniform_closed_open in [0, 1);
// both take the top 24 bits, so every value is exact in float and identical on host and device.
// Normals: Box-Muller on the pairs (bits[0], bits[1]) and (bits[2], bits[3]); the only operations
// whose rounding may differ between device and glibc are logf, sinf and cosf (sqrtf and the products
// are IEEE-exact on both, and there is no a*b+c that nvcc could contract into an FMA).
#pragma once
#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define DS_HD __host__ __device__
#else
#define DS_HD
#endif

namespace ds {

// Four 32-bit words: a Philox counter or its output.
struct PhiloxWords {
  uint32_t w[4];
};
// The two-word Philox4x32 key.
struct PhiloxKey {
  uint32_t w[2];
};

// Constants from Random123's philox.h (multipliers and the Weyl key increments: golden ratio and
// sqrt(3) - 1 in 0.32 fixed point).
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

// One Philox4x32 round: two 32×32→64 multiplies; the high halves are xored with the other words and
// the key, the low halves carried over, and the words permuted.
DS_HD inline PhiloxWords philox4x32_round(PhiloxWords x, PhiloxKey key) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * x.w[0];
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * x.w[2];
  PhiloxWords y;
  y.w[0] = static_cast<uint32_t>(p1 >> 32) ^ x.w[1] ^ key.w[0];
  y.w[1] = static_cast<uint32_t>(p1);
  y.w[2] = static_cast<uint32_t>(p0 >> 32) ^ x.w[3] ^ key.w[1];
  y.w[3] = static_cast<uint32_t>(p0);
  return y;
}

// Philox4x32 with `Rounds` rounds; the key is bumped between rounds (Random123's schedule).
template <int Rounds>
DS_HD inline PhiloxWords philox4x32(PhiloxWords counter, PhiloxKey key) {
  counter = philox4x32_round(counter, key);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 1; r < Rounds; ++r) {
    key.w[0] += kPhiloxW0;
    key.w[1] += kPhiloxW1;
    counter = philox4x32_round(counter, key);
  }
  return counter;
}

DS_HD inline PhiloxWords philox4x32_10(PhiloxWords counter, PhiloxKey key) { return philox4x32<10>(counter, key); }

DS_HD inline PhiloxKey philox_key(uint64_t seed) {
  return PhiloxKey{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
}
DS_HD inline PhiloxWords philox_counter(uint32_t stream, uint64_t tuple) {
  return PhiloxWords{{static_cast<uint32_t>(tuple), static_cast<uint32_t>(tuple >> 32), stream, 0u}};
}
// Tuple number `tuple` of stream (seed, stream).
DS_HD inline PhiloxWords philox_tuple(uint64_t seed, uint32_t stream, uint64_t tuple) {
  return philox4x32_10(philox_counter(stream, tuple), philox_key(seed));
}

// (0, 1], multiples of 2^-24: safe for logf.
DS_HD inline float uniform_open_closed(uint32_t bits) {
  return static_cast<float>((bits >> 8) + 1u) * 5.9604644775390625e-8f;  // 2^-24
}
// [0, 1), multiples of 2^-24.
DS_HD inline float uniform_closed_open(uint32_t bits) {
  return static_cast<float>(bits >> 8) * 5.9604644775390625e-8f;
}

// Two independent standard normals from two words (Box-Muller): radius from a (0, 1] uniform,
// angle from a [0, 1) one. |z| <= sqrt(-2 ln 2^-24) ≈ 5.77.
DS_HD inline void box_muller(float& z0, float& z1, uint32_t bits_radius, uint32_t bits_angle) {
  const float kTwoPi = 6.28318530717958647692f;
  const float radius = sqrtf(-2.0f * logf(uniform_open_closed(bits_radius)));
  const float angle = kTwoPi * uniform_closed_open(bits_angle);
  z0 = radius * cosf(angle);
  z1 = radius * sinf(angle);
}

// Four floats drawn from one tuple, in component order.
struct PhiloxFloats {
  float v[4];
};

// The four standard normals of one tuple: components 0, 1 from words (0, 1), components 2, 3 from
// words (2, 3).
DS_HD inline PhiloxFloats normals_from_words(PhiloxWords bits) {
  PhiloxFloats z;
  box_muller(z.v[0], z.v[1], bits.w[0], bits.w[1]);
  box_muller(z.v[2], z.v[3], bits.w[2], bits.w[3]);
  return z;
}

// mean + stddev * z with one rounding everywhere (an explicit fma, so nvcc's contraction cannot make
// the device differ from the host).
DS_HD inline float scale_normal(float z, float mean, float stddev) { return fmaf(stddev, z, mean); }

}  // namespace ds
