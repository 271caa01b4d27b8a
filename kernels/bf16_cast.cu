// float32 ↔ bf16 copies: one thread per element, the conversion of kernels/bf16.h (integer arithmetic,
// so the emulator's results equal the GPU's bit for bit).
#include "kernels/bf16_cast.h"

#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kCastThreads = 256;

__device__ inline int64_t element_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }

__global__ void cast_float_to_bf16_kernel(bf16* out, const float* in, int64_t n) {
  const int64_t i = element_index();
  if (i < n) out[i] = float_to_bf16(in[i]);
}

__global__ void cast_bf16_to_float_kernel(float* out, const bf16* in, int64_t n) {
  const int64_t i = element_index();
  if (i < n) out[i] = bf16_to_float(in[i]);
}

__global__ void accumulate_bf16_into_float_kernel(float* acc, const bf16* in, int64_t n) {
  const int64_t i = element_index();
  if (i < n) acc[i] += bf16_to_float(in[i]);
}

}  // namespace

void cast_float_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(cast_float_to_bf16_kernel, blocks_for(n, kCastThreads), kCastThreads, 0, stream, out, in, n);
}

void cast_bf16_to_float(float* out, const bf16* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(cast_bf16_to_float_kernel, blocks_for(n, kCastThreads), kCastThreads, 0, stream, out, in, n);
}

void accumulate_bf16_into_float(float* acc, const bf16* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(accumulate_bf16_into_float_kernel, blocks_for(n, kCastThreads), kCastThreads, 0, stream, acc, in, n);
}

}  // namespace ds::DS_KNS
