// BatchNorm2d CPU reference (PyTorch nn.BatchNorm2d semantics, affine, NCHW): training forward with
// running-statistics update, eval forward, and the training-mode backward through the batch statistics.
//
// Shapes: x, y, dy, dx are N×C×HW (HW = H·W, contiguous NCHW); gamma, beta, running_*, saved_*,
// dgamma, dbeta are C. M = N·HW values per channel.
//
// Precision: every per-channel sum is accumulated in double, also for T = float. That is what PyTorch's
// CPU batch norm does (at::acc_type<float, /*is_cuda=*/false> is double), it keeps the reference an
// order of magnitude better than the kernels it judges even for M in the millions, and the CUDA kernels
// in kernels/batchnorm.cu do the same, so both implementations round the same double values to float
// and agree to a few ulp. Element-wise work (normalising, dx) is done in T.
//
// Source for the semantics: PyTorch aten/src/ATen/native/Normalization.cpp,
// batch_norm_cpu_update_stats_template: save_invstd = 1/sqrt(var_sum/n + eps) (biased variance for
// normalisation), running_mean = momentum*mean + (1-momentum)*running_mean, running_var =
// momentum*(var_sum/(n-1)) + (1-momentum)*running_var (UNBIASED variance for the running estimate).
// PyTorch refuses training with one value per channel (torch/nn/functional.py _verify_batch_size:
// "Expected more than 1 value per channel when training"): var_sum/(n-1) would be 0/0. We throw the
// same way rather than store NaN in running_var.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/nn/cpu/parallel.h"
#include <stdexcept>
#include <string>

namespace ds::cpu {

// Throws std::invalid_argument when a training-mode batch norm would see one value per channel.
inline void batchnorm_check_train_size(int64_t N, int64_t HW) {
  if (N * HW < 2)
    throw std::invalid_argument("batchnorm: expected more than 1 value per channel when training, got N=" +
                                std::to_string(N) + ", H*W=" + std::to_string(HW));
}

// Training forward. Writes y, saved_mean, saved_invstd (kept for the backward pass) and updates
// running_mean/running_var in place. Two passes over x (mean, then the sum of squared deviations):
// the one-pass E[x²]−E[x]² loses every digit when |mean| ≫ std.
template <class T>
void batchnorm_forward_train(T* y, T* saved_mean, T* saved_invstd, T* running_mean, T* running_var,
                             const T* x, const T* gamma, const T* beta, int64_t N, int64_t C, int64_t HW,
                             double momentum, double eps) {
  batchnorm_check_train_size(N, HW);
  const int64_t M = N * HW;
  // Channels are independent (each sums in the same order whatever the thread count): parallel.
DS_PARALLEL_FOR_IF(N * C * HW > kParallelElements)
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) sum += static_cast<double>(x[(n * C + c) * HW + i]);
    const double mean = sum / static_cast<double>(M);
    double squared_deviations = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double d = static_cast<double>(x[(n * C + c) * HW + i]) - mean;
        squared_deviations += d * d;
      }
    const double var_biased = squared_deviations / static_cast<double>(M);
    const double var_unbiased = squared_deviations / static_cast<double>(M - 1);
    const T mean_t = static_cast<T>(mean);
    const T invstd_t = static_cast<T>(1.0 / std::sqrt(var_biased + eps));
    saved_mean[c] = mean_t;
    saved_invstd[c] = invstd_t;
    running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean);
    running_var[c] =
        static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * var_unbiased);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        y[k] = (x[k] - mean_t) * invstd_t * gamma[c] + beta[c];
      }
  }
}

// Eval forward: normalises with the running statistics; nothing is updated.
template <class T>
void batchnorm_forward_eval(T* y, const T* x, const T* gamma, const T* beta, const T* running_mean,
                            const T* running_var, int64_t N, int64_t C, int64_t HW, double eps) {
  // Channels are independent (each sums in the same order whatever the thread count): parallel.
DS_PARALLEL_FOR_IF(N * C * HW > kParallelElements)
  for (int64_t c = 0; c < C; ++c) {
    const T mean_t = running_mean[c];
    const T invstd_t = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        y[k] = (x[k] - mean_t) * invstd_t * gamma[c] + beta[c];
      }
  }
}

// Training-mode backward. dx is WRITTEN; dgamma and dbeta ACCUMULATE (+=).
//
// Why this formula. Per channel, with M values, μ = Σx/M, σ² = Σ(x−μ)²/M (biased), s = 1/sqrt(σ²+eps),
// x̂ = (x−μ)·s and y = γ·x̂ + β:
//   dβ = Σ dy                     and   dγ = Σ dy·x̂            (y is linear in β and γ).
// For dx, let g = γ·dy (the gradient reaching x̂). Every x̂_j depends on x_i directly and through μ and s:
//   ∂μ/∂x_i = 1/M,   ∂s/∂x_i = −s³·(x_i−μ)/M   (the Σ(x−μ) term of ∂σ² vanishes: Σ(x−μ) = 0),
//   ∂x̂_j/∂x_i = s·(δ_ij − 1/M) − (x_j−μ)·s³·(x_i−μ)/M = s·(δ_ij − 1/M − x̂_j·x̂_i/M).
// Summing g_j·∂x̂_j/∂x_i over j:
//   dx_i = s·(g_i − Σg/M − x̂_i·Σ(g·x̂)/M) = γ·s/M · (M·dy_i − Σdy − x̂_i·Σ(dy·x̂)).
// Read as geometry: dx is γ·s times dy with its mean and its component along x̂ projected out, because
// shifting x or scaling (x−μ) leaves x̂ unchanged, so those directions carry no gradient.
// Sums in double (see the top of the file); the per-element expression is computed in T.
template <class T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                        const T* saved_mean, const T* saved_invstd, int64_t N, int64_t C, int64_t HW) {
  const int64_t M = N * HW;
  // Channels are independent (each sums in the same order whatever the thread count): parallel.
DS_PARALLEL_FOR_IF(N * C * HW > kParallelElements)
  for (int64_t c = 0; c < C; ++c) {
    const T mean_t = saved_mean[c];
    const T invstd_t = saved_invstd[c];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        const double xhat = (static_cast<double>(x[k]) - static_cast<double>(mean_t)) * static_cast<double>(invstd_t);
        sum_dy += static_cast<double>(dy[k]);
        sum_dy_xhat += static_cast<double>(dy[k]) * xhat;
      }
    dbeta[c] += static_cast<T>(sum_dy);
    dgamma[c] += static_cast<T>(sum_dy_xhat);
    const T mean_dy = static_cast<T>(sum_dy / static_cast<double>(M));
    const T mean_dy_xhat = static_cast<T>(sum_dy_xhat / static_cast<double>(M));
    const T scale = gamma[c] * invstd_t;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        const T xhat = (x[k] - mean_t) * invstd_t;
        dx[k] = scale * (dy[k] - mean_dy - xhat * mean_dy_xhat);
      }
  }
}

}  // namespace ds::cpu
