// Launchers of adam.cu (torch.optim.Adam over one contiguous float buffer), declared for both builds:
// ds::kcuda (GPU) and ds::kemu (emulated on the CPU). Same meaning as engine/nn/cpu/adam.h.
// Shapes: params, m, v, grads n floats; step one int in device memory.
//
// The step number lives in device memory so a captured CUDA graph replays correctly: advance_step
// increments it on the stream and adam_step reads it there (a host int would be frozen into the graph
// at capture). Use: *step starts at 0 (with m = v = 0); each update is advance_step then adam_step,
// so adam_step sees PyTorch's 1-based state['step'].
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#define DS_ADAM_LAUNCHERS(NS)                                                                                 \
  namespace ds::NS {                                                                                          \
  /* *step += 1 (one thread).                                                                              */ \
  void advance_step(int* step, cudaStream_t stream);                                                          \
  /* One Adam update with the 1-based step number *step (device); params, m, v updated in place.           */ \
  void adam_step(float* params, float* m, float* v, const float* grads, const int* step, int64_t n, double lr,  \
                 double beta1, double beta2, double eps, cudaStream_t stream);                               \
  }
DS_ADAM_LAUNCHERS(kcuda)
DS_ADAM_LAUNCHERS(kemu)
#undef DS_ADAM_LAUNCHERS
