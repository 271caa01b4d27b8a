// Launchers of bf16_cast.cu (float32 ↔ bf16 copies for `--precision bf16`), declared for both builds:
// ds::kcuda (GPU) and ds::kemu (emulated on the CPU). Rounding as kernels/bf16.h (nearest, ties to even,
// NaN → canonical NaN), bit for bit the same in both builds. Shapes: n contiguous values; out may not
// alias in (different element sizes).
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/bf16.h"

#define DS_BF16_CAST_LAUNCHERS(NS)                                                                         \
  namespace ds::NS {                                                                                       \
  /* out[i] = bf16(in[i]): activations into bf16, and the float32 master weights into their bf16 copy     */ \
  /* (done once per optimiser step, after Adam updated the masters).                                      */ \
  void cast_float_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t stream);                     \
  /* out[i] = float(in[i]) (exact).                                                                       */ \
  void cast_bf16_to_float(float* out, const bf16* in, int64_t n, cudaStream_t stream);                     \
  /* acc[i] += float(in[i]): a bf16 parameter gradient (cuDNN's backward-filter in bf16 writes bf16)      */ \
  /* accumulated into the float32 master gradient Adam reads.                                             */ \
  void accumulate_bf16_into_float(float* acc, const bf16* in, int64_t n, cudaStream_t stream);             \
  }
DS_BF16_CAST_LAUNCHERS(kcuda)
DS_BF16_CAST_LAUNCHERS(kemu)
#undef DS_BF16_CAST_LAUNCHERS
