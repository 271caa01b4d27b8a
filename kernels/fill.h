// Launchers of fill.cu, declared for both builds: ds::kcuda (GPU) and ds::kemu (emulated on the CPU).
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#define DS_FILL_LAUNCHERS(NS)                                             \
  namespace ds::NS {                                                      \
  /* out[i] = value for i < n */                                          \
  void fill(float* out, float value, int64_t n, cudaStream_t stream);     \
  }
DS_FILL_LAUNCHERS(kcuda)
DS_FILL_LAUNCHERS(kemu)
#undef DS_FILL_LAUNCHERS

namespace ds::kcuda {
// Whether this library holds a kernel image the current device can run: cudaFuncGetAttributes on the
// fill kernel (the first kernel any CUDA run launches), which fails when no SASS for the device's
// architecture and no PTX it can JIT were compiled in. Returns cudaSuccess or that call's error.
cudaError_t check_kernel_image();
// The architectures this library was compiled for, nvcc's __CUDA_ARCH_LIST__ (e.g. "750,800,860").
const char* compiled_architectures();
}  // namespace ds::kcuda
