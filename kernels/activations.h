// Launchers of activations.cu (ReLU, LeakyReLU, Tanh on float32), declared for both builds: ds::kcuda
// (GPU) and ds::kemu (emulated on the CPU). Same meaning as the CPU reference in engine/nn/cpu/activations.h.
// Shapes: x, y, dy, dx are n contiguous floats. Forward may run in place (y == x); backward reads the
// forward OUTPUT y; dx is WRITTEN and may alias dy.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#define DS_ACTIVATION_LAUNCHERS(NS)                                                                      \
  namespace ds::NS {                                                                                     \
  void relu_forward(float* y, const float* x, int64_t n, cudaStream_t stream);                           \
  void relu_backward(float* dx, const float* dy, const float* y, int64_t n, cudaStream_t stream);        \
  /* slope > 0 (sign(y) = sign(x) lets the backward branch on y) */                                      \
  void leaky_relu_forward(float* y, const float* x, float slope, int64_t n, cudaStream_t stream);        \
  void leaky_relu_backward(float* dx, const float* dy, const float* y, float slope, int64_t n,           \
                           cudaStream_t stream);                                                         \
  void tanh_forward(float* y, const float* x, int64_t n, cudaStream_t stream);                           \
  void tanh_backward(float* dx, const float* dy, const float* y, int64_t n, cudaStream_t stream);        \
  }
DS_ACTIVATION_LAUNCHERS(kcuda)
DS_ACTIVATION_LAUNCHERS(kemu)
#undef DS_ACTIVATION_LAUNCHERS
