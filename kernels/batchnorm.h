// Launchers of batchnorm.cu (BatchNorm2d, NCHW float32, optionally fused with the ReLU/LeakyReLU that
// follows it), declared for both builds: ds::kcuda (GPU) and ds::kemu (emulated on the CPU). Same meaning
// as the CPU reference in engine/nn/cpu/batchnorm.h followed by engine/nn/cpu/activations.h.
// Shapes: x, y, dy, dx N×C×HW (HW = H·W); gamma, beta, running_*, saved_*, dgamma, dbeta C.
// `workspace`: device memory (host memory in the emulator) of batchnorm_workspace_bytes(C) bytes for the
// per-block partial sums of the split reduction; its contents are scratch and nothing is kept there
// between calls. `splits`: blocks per channel; 0 chooses batchnorm_splits(C, N·HW). The result is bit
// for bit the same run to run for one (N, C, HW, splits); different splits agree to the tolerance the
// emu tests state.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace ds {

// The activation fused after batch norm (DCGAN: ReLU in G, LeakyReLU in D). Expressions as
// engine/nn/cpu/activations.h: forward `v < 0 ? 0 : v` / `v < 0 ? v·slope : v`, backward from the
// forward OUTPUT y: `y > 0 ? dy : 0` / `y > 0 ? dy : dy·slope` (slope > 0).
enum class BnActivation : int32_t { None = 0, ReLU = 1, LeakyReLU = 2 };

constexpr int kBatchNormMaxSplits = 64;
// Enough blocks to fill a 132-SM GPU several times over (8 resident 256-thread blocks per SM = 1056).
constexpr int64_t kBatchNormTargetBlocks = 1024;
// Below this many values per block a further split costs more (a second pass over partials, one more
// block's launch and reduction) than it gains.
constexpr int64_t kBatchNormMinValuesPerBlock = 4096;

// Blocks per channel for C channels of M = N·HW values each: enough channels × splits to reach
// kBatchNormTargetBlocks, but never fewer than kBatchNormMinValuesPerBlock values per block, at most
// kBatchNormMaxSplits. Depends only on (C, M), never on the device, so a run is reproducible on any GPU.
// G's last BN at 128×512, batch 64: C = 64, M = 64·64·256 = 1,048,576 → 16 splits, 1024 blocks.
inline int batchnorm_splits(int64_t C, int64_t M) {
  if (C <= 0 || M <= 0) return 1;
  const int64_t wanted = (kBatchNormTargetBlocks + C - 1) / C;
  const int64_t most = std::max<int64_t>(1, M / kBatchNormMinValuesPerBlock);
  return static_cast<int>(std::clamp<int64_t>(std::min(wanted, most), 1, kBatchNormMaxSplits));
}
// Two doubles per (channel, split).
inline size_t batchnorm_workspace_bytes(int64_t C) {
  return static_cast<size_t>(std::max<int64_t>(C, 1)) * kBatchNormMaxSplits * 2 * sizeof(double);
}

}  // namespace ds

#define DS_BATCHNORM_LAUNCHERS(NS)                                                                              \
  namespace ds::NS {                                                                                            \
  /* Training forward: y = act(BN(x)); writes y, saved_mean, saved_invstd; updates running_mean/var          */ \
  /* (unbiased var). Two launches: per-block statistics, then combine + normalise + activate (y written     */ \
  /* once). Throws std::invalid_argument when N*HW < 2 (one value per channel), as PyTorch refuses it.      */ \
  void batchnorm_act_forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean,     \
                                   float* running_var, double* workspace, const float* x, const float* gamma, \
                                   const float* beta, int64_t N, int64_t C, int64_t HW, double momentum,      \
                                   double eps, BnActivation act, float slope, int splits,                     \
                                   cudaStream_t stream);                                                      \
  /* Training-mode backward of y = act(BN(x)) from dy = dL/dy and the forward output y: dx WRITTEN (may    */ \
  /* alias dy), dgamma and dbeta ACCUMULATE (+=). Two launches: per-block Σdz, Σdz·x̂ with dz the          */ \
  /* activation's backward of dy, then combine + dx.                                                       */ \
  void batchnorm_act_backward(float* dx, float* dgamma, float* dbeta, double* workspace, const float* dy,     \
                              const float* y, const float* x, const float* gamma, const float* saved_mean,    \
                              const float* saved_invstd, int64_t N, int64_t C, int64_t HW, BnActivation act,  \
                              float slope, int splits, cudaStream_t stream);                                  \
  /* Eval forward: y = act(BN(x)) with running_mean/running_var, updates nothing.                           */ \
  void batchnorm_act_forward_eval(float* y, const float* x, const float* gamma, const float* beta,            \
                                  const float* running_mean, const float* running_var, int64_t N, int64_t C,  \
                                  int64_t HW, double eps, BnActivation act, float slope, cudaStream_t stream); \
  /* The plain batch norm (act = None, splits chosen automatically).                                       */ \
  void batchnorm_forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean,         \
                               float* running_var, double* workspace, const float* x, const float* gamma,     \
                               const float* beta, int64_t N, int64_t C, int64_t HW, double momentum,          \
                               double eps, cudaStream_t stream);                                              \
  void batchnorm_forward_eval(float* y, const float* x, const float* gamma, const float* beta,                \
                              const float* running_mean, const float* running_var, int64_t N, int64_t C,      \
                              int64_t HW, double eps, cudaStream_t stream);                                   \
  /* dx WRITTEN, dgamma and dbeta ACCUMULATE (+=).                                                         */ \
  void batchnorm_backward(float* dx, float* dgamma, float* dbeta, double* workspace, const float* dy,         \
                          const float* x, const float* gamma, const float* saved_mean,                        \
                          const float* saved_invstd, int64_t N, int64_t C, int64_t HW, cudaStream_t stream);  \
  }
DS_BATCHNORM_LAUNCHERS(kcuda)
DS_BATCHNORM_LAUNCHERS(kemu)
#undef DS_BATCHNORM_LAUNCHERS
