// The one header every kernels/*.cu includes: it makes the same source a CUDA file under nvcc and a
// plain C++ file executed by kernels/emu under the host compiler.
//
// Rules for kernel files (the emulator supports exactly this):
//   * everything in `namespace ds::DS_KNS { ... }` (ds::kcuda under nvcc, ds::kemu on the host),
//     so both builds can be linked into one test binary;
//   * launch only through DS_LAUNCH(kernel, grid, block, shared_bytes, stream, args...), which
//     checks the launch in CUDA and runs it to completion in the emulator (and records it in the
//     thread's launch log when one is active: kernels/launch_log.h; arguments without side effects);
//   * static shared memory through DS_SHARED(T, name, count) (a 1-D array), dynamic through
//     DS_DYNAMIC_SHARED(T, name); no CUB, no cooperative groups;
//   * __syncthreads, __shfl_{down,xor,up,}_sync, __ballot_sync, atomicAdd/atomicMax/atomicMin/atomicCAS,
//     threadIdx/blockIdx/blockDim/gridDim, warpSize and the usual float math functions.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#include "kernels/check.h"
#include "kernels/launch_log.h"
#define DS_KNS kcuda
#define DS_SHARED(T, name, count) __shared__ T name[count]
#define DS_DYNAMIC_SHARED(T, name) extern __shared__ unsigned char name##_raw_[]; T* name = reinterpret_cast<T*>(name##_raw_)
// With a launch log active (kernels/launch_log.h) the launch is recorded first.
#define DS_LAUNCH(kernel, grid, block, shared_bytes, stream, ...)                                          \
  do {                                                                                                     \
    if (::ds::launch_log::LaunchLog* ds_launch_log_ = ::ds::launch_log::active())                          \
      ::ds::launch_log::record_kernel(*ds_launch_log_, #kernel, dim3(grid), dim3(block), (shared_bytes),   \
                                      (stream), kernel, ##__VA_ARGS__);                                    \
    kernel<<<(grid), (block), (shared_bytes), (stream)>>>(__VA_ARGS__);                                    \
    ::ds::check_launch(#kernel, __FILE__, __LINE__);                                                       \
  } while (0)
#else
#include "kernels/emu/emu.h"
#define DS_KNS kemu
#endif

namespace ds {
// Blocks needed to cover n items with `threads` per block (n > 0).
inline unsigned int blocks_for(int64_t n, int threads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}
}  // namespace ds
