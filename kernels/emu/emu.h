// PLACEHOLDER (being replaced by the fiber-based emulator): runs every thread of every block in turn.
// Correct only for kernels without __syncthreads/shuffles.
#pragma once
#include <cuda_runtime_api.h>
#include <vector_types.h>
#include <vector_functions.h>
#include <cmath>
#include <cstddef>
#include <functional>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

namespace ds::emu {
struct State { uint3 thread, block; dim3 block_dim, grid_dim; };
inline State& state() { static thread_local State s; return s; }
inline void launch(dim3 grid, dim3 block, size_t, const std::function<void()>& body) {
  State& s = state();
  s.grid_dim = grid; s.block_dim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by) for (unsigned bx = 0; bx < grid.x; ++bx)
    for (unsigned tz = 0; tz < block.z; ++tz) for (unsigned ty = 0; ty < block.y; ++ty) for (unsigned tx = 0; tx < block.x; ++tx) {
      s.block = make_uint3(bx, by, bz); s.thread = make_uint3(tx, ty, tz); body();
    }
}
}  // namespace ds::emu

#define threadIdx (::ds::emu::state().thread)
#define blockIdx (::ds::emu::state().block)
#define blockDim (::ds::emu::state().block_dim)
#define gridDim (::ds::emu::state().grid_dim)
#define DS_LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
  ::ds::emu::launch(dim3(grid), dim3(block), (shared_bytes), [&] { kernel(__VA_ARGS__); })
