// Loss CPU reference: mean binary cross-entropy on logits against one target for the whole batch
// (DCGAN's labels are all 1 or all 0), its backward, and the finite checks that guard training.
//
// Shapes: logits, dlogits are n contiguous values (D's output, one logit per image).
//
// The loss is PyTorch's BCEWithLogitsLoss (reduction 'mean') in its numerically stable form:
//   ℓ(x, t) = max(x, 0) − x·t + log1p(exp(−|x|))
// which equals −[t·log σ(x) + (1−t)·log(1−σ(x))] without overflowing exp or taking log(0) for large |x|.
// The gradient is ∂ℓ/∂x = σ(x) − t, so d(mean ℓ)/dx_i = (σ(x_i) − t)·dloss / n (PyTorch's
// binary_cross_entropy_with_logits_backward: (sigmoid(input) − target)·grad, then / numel for 'mean').
// σ is evaluated from e = exp(−|x|) as 1/(1+e) for x ≥ 0 and e/(1+e) for x < 0, so neither branch
// overflows.
//
// Precision: element values are computed in T, their sums in double (also for T = float), as the CUDA
// kernel in kernels/loss.cu does, so the two agree to a float ulp or so.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace ds::cpu {

// The loss of one logit and e = exp(−|x|), shared by forward and backward so both use the same σ.
template <class T>
T bce_with_logits_element(T x, T target, T* sigmoid) {
  const T e = std::exp(-std::abs(x));
  *sigmoid = x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
  return std::max(x, T(0)) - x * target + std::log1p(e);
}

// Returns the mean loss; *mean_probability = mean σ(x) (D(x) or D(G(z)) in the training log).
// n must be > 0: the mean of nothing is undefined.
template <class T>
T bce_with_logits_forward(T* mean_probability, const T* logits, T target, int64_t n) {
  if (n <= 0) throw std::invalid_argument("bce_with_logits: expected at least one logit");
  double loss_sum = 0, probability_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    T sigmoid;
    loss_sum += static_cast<double>(bce_with_logits_element(logits[i], target, &sigmoid));
    probability_sum += static_cast<double>(sigmoid);
  }
  *mean_probability = static_cast<T>(probability_sum / static_cast<double>(n));
  return static_cast<T>(loss_sum / static_cast<double>(n));
}

// dlogits WRITTEN: dlogits_i = (σ(x_i) − t)·dloss / n. dloss is the gradient arriving at the mean loss
// (1 for a loss that is minimised directly).
template <class T>
void bce_with_logits_backward(T* dlogits, const T* logits, T target, T dloss, int64_t n) {
  const T count = static_cast<T>(n);
  for (int64_t i = 0; i < n; ++i) {
    T sigmoid;
    bce_with_logits_element(logits[i], target, &sigmoid);
    dlogits[i] = (sigmoid - target) * dloss / count;
  }
}

// Number of NaN or ±Inf elements.
template <class T>
int64_t count_nonfinite(const T* x, int64_t n) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) count += std::isfinite(x[i]) ? 0 : 1;
  return count;
}

template <class T>
bool all_finite(const T* x, int64_t n) {
  return count_nonfinite(x, n) == 0;
}

}  // namespace ds::cpu
