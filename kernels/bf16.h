// bfloat16 storage for `--precision bf16`: a 2-byte value with the bit layout of CUDA's __nv_bfloat16
// (cuda_bf16.h: `unsigned short __x`, the upper 16 bits of an IEEE float32: 1 sign, 8 exponent, 7
// stored significand bits), so cuDNN can read and write arrays of it as CUDNN_DATA_BFLOAT16. Kernels
// keep bf16 only in memory and compute in float: load with to_float, store with from_float<T>.
//
// The conversion is written in plain integer arithmetic, identical under nvcc (device and host) and the
// host compiler (kernels/emu, engine, tests), so the emulated kernels round bit for bit as the GPU ones:
//   float → bf16: round to nearest, ties to even, overflow to ±Inf, every NaN to the canonical NaN
//     0x7FFF — exactly cuda_bf16.hpp's __float2bfloat16_rn (its __internal_float2bfloat16 returns
//     0x7fff for NaN, then adds one when the dropped half is > 0x8000 or == 0x8000 with an odd result),
//     which is what the unit test checks over every upper half with the interesting lower halves.
//   bf16 → float: exact (append 16 zero bits).
// Relative rounding error of one stored value: at most 2^-8 for normal values (p = 8 significand bits,
// 7 stored: half an ulp is 2^(e−8) for |x| in [2^e, 2^(e+1))); subnormals (|x| < 2^-126) have an absolute
// error ≤ 2^-134 instead.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#define DS_BF16_HD __host__ __device__ __forceinline__
#else
#define DS_BF16_HD inline
#endif

namespace ds {

struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2 && alignof(bf16) == 2, "bf16 must be laid out as __nv_bfloat16");
static_assert(std::is_trivially_copyable_v<bf16>, "bf16 arrays are copied as bytes");

constexpr uint16_t kBf16CanonicalNaN = 0x7FFF;  // what __float2bfloat16_rn returns for every NaN

DS_BF16_HD uint32_t bf16_float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

DS_BF16_HD bf16 float_to_bf16(float f) {
  const uint32_t u = bf16_float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return bf16{kBf16CanonicalNaN};
  uint32_t upper = u >> 16;
  const uint32_t dropped = u & 0xFFFFu;
  // Ties to even; a carry out of the significand bumps the exponent (and 0x7F7F + 1 = 0x7F80 = Inf).
  if (dropped > 0x8000u || (dropped == 0x8000u && (upper & 1u))) ++upper;
  return bf16{static_cast<uint16_t>(upper)};
}

DS_BF16_HD float bf16_to_float(bf16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// Storage-generic access for kernels templated on T = float or bf16.
DS_BF16_HD float to_float(float v) { return v; }
DS_BF16_HD float to_float(bf16 v) { return bf16_to_float(v); }
template <class T>
DS_BF16_HD T from_float(float v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return float_to_bf16(v);
  } else {
    static_assert(std::is_same_v<T, float>, "kernel storage is float or bf16");
    return v;
  }
}

}  // namespace ds
