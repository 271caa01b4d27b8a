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
