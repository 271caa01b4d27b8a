// Launchers of batchnorm.cu (BatchNorm2d, NCHW float32), declared for both builds: ds::kcuda (GPU) and
// ds::kemu (emulated on the CPU). Same meaning as the CPU reference in engine/nn/cpu/batchnorm.h.
// Shapes: x, y, dy, dx N×C×HW (HW = H·W); gamma, beta, running_*, saved_*, dgamma, dbeta C.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#define DS_BATCHNORM_LAUNCHERS(NS)                                                                              \
  namespace ds::NS {                                                                                            \
  /* Training forward: writes y, saved_mean, saved_invstd; updates running_mean/var (unbiased var).        */ \
  /* Throws std::invalid_argument when N*HW < 2 (one value per channel), as PyTorch refuses it.            */ \
  void batchnorm_forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean,         \
                               float* running_var, const float* x, const float* gamma, const float* beta,     \
                               int64_t N, int64_t C, int64_t HW, double momentum, double eps,                 \
                               cudaStream_t stream);                                                          \
  /* Eval forward: normalises with running_mean/running_var, updates nothing.                               */ \
  void batchnorm_forward_eval(float* y, const float* x, const float* gamma, const float* beta,                \
                              const float* running_mean, const float* running_var, int64_t N, int64_t C,      \
                              int64_t HW, double eps, cudaStream_t stream);                                   \
  /* Training-mode backward: dx WRITTEN, dgamma and dbeta ACCUMULATE (+=).                                  */ \
  void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,            \
                          const float* gamma, const float* saved_mean, const float* saved_invstd, int64_t N,  \
                          int64_t C, int64_t HW, cudaStream_t stream);                                        \
  }
DS_BATCHNORM_LAUNCHERS(kcuda)
DS_BATCHNORM_LAUNCHERS(kemu)
#undef DS_BATCHNORM_LAUNCHERS
