// The bf16-storage overloads of the element-wise launchers (`--precision bf16`), declared for both builds:
// ds::kcuda (GPU) and ds::kemu (emulated on the CPU). Same contracts as their float versions in
// kernels/activations.h, kernels/batchnorm.h and kernels/loss.h; here x, y, dy, dx (and logits,
// dlogits) are bf16 (kernels/bf16.h): every value is loaded into float, the arithmetic is the float
// version's (float expressions, double statistics and sums), and one rounding to bf16 happens when an
// output is stored. Batch norm's gamma, beta, running and saved statistics and dgamma/dbeta stay float32
// (master parameters and their gradients); the loss and mean probability are float32.
// (A separate header so that the float headers, included nearly everywhere, stay as they were.)
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/batchnorm.h"  // BnActivation
#include "kernels/bf16.h"

#define DS_BF16_KERNEL_LAUNCHERS(NS)                                                                            \
  namespace ds::NS {                                                                                            \
  void relu_forward(bf16* y, const bf16* x, int64_t n, cudaStream_t stream);                                   \
  void relu_backward(bf16* dx, const bf16* dy, const bf16* y, int64_t n, cudaStream_t stream);                 \
  void leaky_relu_forward(bf16* y, const bf16* x, float slope, int64_t n, cudaStream_t stream);                 \
  void leaky_relu_backward(bf16* dx, const bf16* dy, const bf16* y, float slope, int64_t n,                    \
                           cudaStream_t stream);                                                                \
  void tanh_forward(bf16* y, const bf16* x, int64_t n, cudaStream_t stream);                                   \
  void tanh_backward(bf16* dx, const bf16* dy, const bf16* y, int64_t n, cudaStream_t stream);                 \
  void batchnorm_act_forward_train(bf16* y, float* saved_mean, float* saved_invstd, float* running_mean,      \
                                   float* running_var, double* workspace, const bf16* x, const float* gamma,  \
                                   const float* beta, int64_t N, int64_t C, int64_t HW, double momentum,      \
                                   double eps, BnActivation act, float slope, int splits,                     \
                                   cudaStream_t stream);                                                      \
  void batchnorm_act_backward(bf16* dx, float* dgamma, float* dbeta, double* workspace, const bf16* dy,       \
                              const bf16* y, const bf16* x, const float* gamma, const float* saved_mean,      \
                              const float* saved_invstd, int64_t N, int64_t C, int64_t HW, BnActivation act,  \
                              float slope, int splits, cudaStream_t stream);                                  \
  void batchnorm_act_forward_eval(bf16* y, const bf16* x, const float* gamma, const float* beta,              \
                                  const float* running_mean, const float* running_var, int64_t N, int64_t C,  \
                                  int64_t HW, double eps, BnActivation act, float slope, cudaStream_t stream); \
  void bce_with_logits(float* loss, float* mean_probability, bf16* dlogits, const bf16* logits, float target,  \
                       float dloss, int64_t n, cudaStream_t stream);                                           \
  void check_finite(int* flag, const bf16* x, int64_t n, cudaStream_t stream);                                 \
  }
DS_BF16_KERNEL_LAUNCHERS(kcuda)
DS_BF16_KERNEL_LAUNCHERS(kemu)
#undef DS_BF16_KERNEL_LAUNCHERS
