// The fast CPU batch norm + activation forward (see batchnorm_cpu_fast.h).
#include "engine/nn/batchnorm_cpu_fast.h"

#include <cmath>

#include "engine/nn/cpu/batchnorm.h"
#include "engine/nn/cpu/parallel.h"
#include "engine/nn/activation_select.h"  // last: it also sets no-trapping-math for this file

namespace ds::cpu_fast {
namespace {

using ds::cpu::kParallelElements;

// The activations, the selects elementwise_cpu_fast.cpp uses (bit-identical to the reference's).
inline float activate(float v, BnActivation act, float slope) {
  if (act == BnActivation::ReLU) return select::relu(v);
  if (act == BnActivation::LeakyReLU) return select::leaky_relu(v, slope);
  return v;
}
// Four partial double sums: element i of a plane goes to partial i % 4; combined as (s0 + s1) + (s2 + s3).
struct Sum4 {
  double s[4] = {0, 0, 0, 0};
  double total() const { return (s[0] + s[1]) + (s[2] + s[3]); }
};

void sum_plane(Sum4& acc, const float* x, int64_t HW) {
  int64_t i = 0;
  for (; i + 4 <= HW; i += 4)
    for (int k = 0; k < 4; ++k) acc.s[k] += static_cast<double>(x[i + k]);
  for (int k = 0; i < HW; ++i, ++k) acc.s[k] += static_cast<double>(x[i]);
}
void squared_deviations_plane(Sum4& acc, const float* x, int64_t HW, double mean) {
  int64_t i = 0;
  for (; i + 4 <= HW; i += 4)
    for (int k = 0; k < 4; ++k) {
      const double d = static_cast<double>(x[i + k]) - mean;
      acc.s[k] += d * d;
    }
  for (int k = 0; i < HW; ++i, ++k) {
    const double d = static_cast<double>(x[i]) - mean;
    acc.s[k] += d * d;
  }
}

template <BnActivation kAct>
void normalise_plane(float* y, const float* x, int64_t HW, float mean, float invstd, float gamma, float beta,
                     float slope) {
  // The reference's expression, then the activation on the float result (what the unfused path computed).
  for (int64_t i = 0; i < HW; ++i) y[i] = activate((x[i] - mean) * invstd * gamma + beta, kAct, slope);
}

template <BnActivation kAct>
void forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean, float* running_var,
                   const float* x, const float* gamma, const float* beta, int64_t N, int64_t C, int64_t HW,
                   double momentum, double eps, float slope) {
  ds::cpu::batchnorm_check_train_size(N, HW);
  const int64_t M = N * HW;
  // Channels are independent (each sums in the same order whatever the thread count): parallel.
DS_PARALLEL_FOR_IF(N * C * HW > kParallelElements)
  for (int64_t c = 0; c < C; ++c) {
    Sum4 sum;
    for (int64_t n = 0; n < N; ++n) sum_plane(sum, x + (n * C + c) * HW, HW);
    const double mean = sum.total() / static_cast<double>(M);
    Sum4 squared;
    for (int64_t n = 0; n < N; ++n) squared_deviations_plane(squared, x + (n * C + c) * HW, HW, mean);
    const double squared_deviations = squared.total();
    const double var_biased = squared_deviations / static_cast<double>(M);
    const double var_unbiased = squared_deviations / static_cast<double>(M - 1);
    const float mean_t = static_cast<float>(mean);
    const float invstd_t = static_cast<float>(1.0 / std::sqrt(var_biased + eps));
    saved_mean[c] = mean_t;
    saved_invstd[c] = invstd_t;
    running_mean[c] = static_cast<float>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean);
    running_var[c] =
        static_cast<float>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * var_unbiased);
    for (int64_t n = 0; n < N; ++n)
      normalise_plane<kAct>(y + (n * C + c) * HW, x + (n * C + c) * HW, HW, mean_t, invstd_t, gamma[c], beta[c],
                            slope);
  }
}

}  // namespace

void batchnorm_activation_forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean,
                                        float* running_var, const float* x, const float* gamma, const float* beta,
                                        int64_t N, int64_t C, int64_t HW, double momentum, double eps,
                                        BnActivation act, float slope) {
  switch (act) {
    case BnActivation::ReLU:
      return forward_train<BnActivation::ReLU>(y, saved_mean, saved_invstd, running_mean, running_var, x, gamma, beta,
                                               N, C, HW, momentum, eps, slope);
    case BnActivation::LeakyReLU:
      return forward_train<BnActivation::LeakyReLU>(y, saved_mean, saved_invstd, running_mean, running_var, x, gamma,
                                                    beta, N, C, HW, momentum, eps, slope);
    case BnActivation::None: break;
  }
  forward_train<BnActivation::None>(y, saved_mean, saved_invstd, running_mean, running_var, x, gamma, beta, N, C, HW,
                                    momentum, eps, slope);
}

}  // namespace ds::cpu_fast
