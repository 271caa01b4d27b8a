// BatchNorm2d kernels (NCHW float32): training forward with running-statistics update, eval forward,
// training-mode backward. Same meaning and the same double-precision sums as engine/nn/cpu/batchnorm.h.
//
// One block per channel reduces that channel's N·HW values (warp shuffles, then one shared slot per
// warp), so every sum has a fixed order: results are deterministic run to run, and no float atomics
// cross blocks. dgamma/dbeta are then plain += by thread 0 of the channel's block.
// Per-thread partial sums are doubles (as the CPU reference, and PyTorch's CPU batch norm): the loads
// dominate, so the extra cost is small even where FP64 is slow, and it lets the reference and the
// kernel agree to a few float ulp. The variance is two-pass (mean first, then Σ(x−μ)²): E[x²]−E[x]²
// cancels catastrophically when |mean| ≫ std, which activations after a ReLU often are.
#include "kernels/batchnorm.h"

#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kBatchNormThreads = 256;  // a multiple of 32: every warp is full for the shuffles
constexpr int kBatchNormWarps = kBatchNormThreads / 32;

// Walks the elements of one channel that belong to this thread: flat index j = n·HW + i takes the values
// threadIdx.x, threadIdx.x + blockDim.x, ... below N·HW, without a division per element.
struct ChannelElements {
  int64_t n, i;            // current image and position in it
  int64_t step_n, step_i;  // blockDim.x as whole images plus a remainder
  __device__ explicit ChannelElements(int64_t HW)
      : n(threadIdx.x / HW), i(threadIdx.x % HW), step_n(blockDim.x / HW), step_i(blockDim.x % HW) {}
  __device__ void advance(int64_t HW) {
    n += step_n;
    i += step_i;
    if (i >= HW) {
      i -= HW;
      ++n;
    }
  }
  __device__ int64_t offset(int64_t c, int64_t C, int64_t HW) const { return (n * C + c) * HW + i; }
};

// Sum of v over the block, returned to every thread. warp_partials holds kBatchNormWarps doubles, total
// one. Calling it again right away is safe: the second barrier keeps any thread from overwriting
// warp_partials or total before every thread has read the previous result.
__device__ double block_sum(double v, double* warp_partials, double* total) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_partials[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kBatchNormWarps ? warp_partials[lane] : 0.0;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) *total = v;
  }
  __syncthreads();
  return *total;
}

// grid: C blocks (one per channel), block: kBatchNormThreads.
__global__ void batchnorm_forward_train_kernel(float* y, float* saved_mean, float* saved_invstd, float* running_mean,
                                               float* running_var, const float* x, const float* gamma,
                                               const float* beta, int64_t N, int64_t C, int64_t HW, double momentum,
                                               double eps) {
  DS_SHARED(double, warp_partials, kBatchNormWarps);
  DS_SHARED(double, total, 1);
  const int64_t c = blockIdx.x;
  const double M = static_cast<double>(N * HW);

  double sum = 0;
  for (ChannelElements e(HW); e.n < N; e.advance(HW)) sum += static_cast<double>(x[e.offset(c, C, HW)]);
  const double mean = block_sum(sum, warp_partials, total) / M;

  double squared_deviations = 0;
  for (ChannelElements e(HW); e.n < N; e.advance(HW)) {
    const double d = static_cast<double>(x[e.offset(c, C, HW)]) - mean;
    squared_deviations += d * d;
  }
  squared_deviations = block_sum(squared_deviations, warp_partials, total);

  const float mean_f = static_cast<float>(mean);
  const float invstd_f = static_cast<float>(1.0 / sqrt(squared_deviations / M + eps));
  if (threadIdx.x == 0) {
    saved_mean[c] = mean_f;
    saved_invstd[c] = invstd_f;
    // PyTorch: running_var follows the UNBIASED variance (Normalization.cpp, batch_norm_cpu_update_stats_template).
    running_mean[c] = static_cast<float>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean);
    running_var[c] = static_cast<float>((1.0 - momentum) * static_cast<double>(running_var[c]) +
                                        momentum * (squared_deviations / (M - 1.0)));
  }
  const float g = gamma[c], b = beta[c];
  for (ChannelElements e(HW); e.n < N; e.advance(HW)) {
    const int64_t k = e.offset(c, C, HW);
    y[k] = (x[k] - mean_f) * invstd_f * g + b;
  }
}

// grid: blocks_for(N·C·HW), one thread per element. Sampling only, so the per-element double
// 1/sqrt is not worth a per-channel precomputation pass.
// grid: one block per (n, c) plane (N·C blocks), block: up to 256 threads striding over the plane's HW
// values. Thread 0 turns the channel's running variance into 1/sqrt(var + eps) once, in double as the
// reference does, and the block reads it from shared memory: no double math per element.
__global__ void batchnorm_forward_eval_kernel(float* y, const float* x, const float* gamma, const float* beta,
                                              const float* running_mean, const float* running_var, int64_t N,
                                              int64_t C, int64_t HW, double eps) {
  DS_SHARED(float, channel_invstd, 1);
  const int64_t plane = blockIdx.x;
  const int64_t c = plane % C;
  if (threadIdx.x == 0) channel_invstd[0] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[c]) + eps));
  __syncthreads();
  const float invstd_f = channel_invstd[0], mean_f = running_mean[c], gamma_f = gamma[c], beta_f = beta[c];
  const float* xp = x + plane * HW;
  float* yp = y + plane * HW;
  for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) yp[i] = (xp[i] - mean_f) * invstd_f * gamma_f + beta_f;
}

// grid: C blocks (one per channel), block: kBatchNormThreads.
// dx = γ·s·(dy − mean(dy) − x̂·mean(dy·x̂)); the derivation is in engine/nn/cpu/batchnorm.h.
__global__ void batchnorm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                                          const float* gamma, const float* saved_mean, const float* saved_invstd,
                                          int64_t N, int64_t C, int64_t HW) {
  DS_SHARED(double, warp_partials, kBatchNormWarps);
  DS_SHARED(double, total, 1);
  const int64_t c = blockIdx.x;
  const double M = static_cast<double>(N * HW);
  const float mean_f = saved_mean[c], invstd_f = saved_invstd[c];

  double sum_dy = 0, sum_dy_xhat = 0;
  for (ChannelElements e(HW); e.n < N; e.advance(HW)) {
    const int64_t k = e.offset(c, C, HW);
    const double xhat = (static_cast<double>(x[k]) - static_cast<double>(mean_f)) * static_cast<double>(invstd_f);
    sum_dy += static_cast<double>(dy[k]);
    sum_dy_xhat += static_cast<double>(dy[k]) * xhat;
  }
  sum_dy = block_sum(sum_dy, warp_partials, total);
  sum_dy_xhat = block_sum(sum_dy_xhat, warp_partials, total);

  if (threadIdx.x == 0) {  // one block owns channel c: a plain += is race-free and deterministic
    dbeta[c] += static_cast<float>(sum_dy);
    dgamma[c] += static_cast<float>(sum_dy_xhat);
  }
  const float mean_dy = static_cast<float>(sum_dy / M);
  const float mean_dy_xhat = static_cast<float>(sum_dy_xhat / M);
  const float scale = gamma[c] * invstd_f;
  for (ChannelElements e(HW); e.n < N; e.advance(HW)) {
    const int64_t k = e.offset(c, C, HW);
    const float xhat = (x[k] - mean_f) * invstd_f;
    dx[k] = scale * (dy[k] - mean_dy - xhat * mean_dy_xhat);
  }
}

void check_channels(int64_t C, const char* who) {
  if (C > INT_MAX) throw std::invalid_argument(std::string(who) + ": more channels than a grid holds");
}

}  // namespace

void batchnorm_forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean,
                             float* running_var, const float* x, const float* gamma, const float* beta, int64_t N,
                             int64_t C, int64_t HW, double momentum, double eps, cudaStream_t stream) {
  // PyTorch refuses this too (torch/nn/functional.py _verify_batch_size): the unbiased variance is 0/0.
  if (N * HW < 2)
    throw std::invalid_argument("batchnorm: expected more than 1 value per channel when training, got N=" +
                                std::to_string(N) + ", H*W=" + std::to_string(HW));
  check_channels(C, "batchnorm_forward_train");
  if (C <= 0) return;
  DS_LAUNCH(batchnorm_forward_train_kernel, static_cast<unsigned int>(C), kBatchNormThreads, 0, stream, y,
            saved_mean, saved_invstd, running_mean, running_var, x, gamma, beta, N, C, HW, momentum, eps);
}

void batchnorm_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, int64_t N, int64_t C, int64_t HW,
                            double eps, cudaStream_t stream) {
  if (N * C * HW <= 0) return;
  check_channels(N * C, "batchnorm_forward_eval (N*C planes)");
  // Small planes (4×4 maps) get one or two warps rather than 256 mostly idle threads.
  const int threads = HW >= 256 ? 256 : static_cast<int>((HW + 31) / 32 * 32);
  DS_LAUNCH(batchnorm_forward_eval_kernel, static_cast<unsigned int>(N * C), threads, 0, stream, y, x, gamma, beta,
            running_mean, running_var, N, C, HW, eps);
}

void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* gamma,
                        const float* saved_mean, const float* saved_invstd, int64_t N, int64_t C, int64_t HW,
                        cudaStream_t stream) {
  check_channels(C, "batchnorm_backward");
  if (C <= 0 || N * HW <= 0) return;  // no values: dgamma/dbeta would get += 0, no dx to write
  DS_LAUNCH(batchnorm_backward_kernel, static_cast<unsigned int>(C), kBatchNormThreads, 0, stream, dx, dgamma,
            dbeta, dy, x, gamma, saved_mean, saved_invstd, N, C, HW);
}

}  // namespace ds::DS_KNS
