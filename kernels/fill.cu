// Fill kernels: set every element of a float buffer to one value (zeroing, poisoning in tests).
#include "kernels/fill.h"
#include "kernels/kernel_common.h"

namespace ds::DS_KNS {

__global__ void fill_kernel(float* out, float value, int64_t n) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value;
}

void fill(float* out, float value, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int threads = 256;
  DS_LAUNCH(fill_kernel, blocks_for(n, threads), threads, 0, stream, out, value, n);
}

}  // namespace ds::DS_KNS

#if defined(__CUDACC__)
namespace ds::kcuda {

cudaError_t check_kernel_image() {
  cudaFuncAttributes attributes{};
  return cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(&fill_kernel));
}

#define DS_FILL_STRINGIFY_(...) #__VA_ARGS__  // variadic: the list is comma-separated (750,800,...)
#define DS_FILL_STRINGIFY(...) DS_FILL_STRINGIFY_(__VA_ARGS__)
const char* compiled_architectures() {
#if defined(__CUDA_ARCH_LIST__)
  return DS_FILL_STRINGIFY(__CUDA_ARCH_LIST__);
#else
  return "unknown";
#endif
}

}  // namespace ds::kcuda
#endif
