// Adam CPU reference: one torch.optim.Adam step (weight_decay 0, amsgrad off, maximize off) over a
// contiguous buffer of parameters with their first/second moment buffers.
//
// Shapes: params, m, v, grads are n contiguous values (a whole network's parameters in one buffer).
//
// The formula and its order of operations are PyTorch's _single_tensor_adam, non-capturable branch
// (torch/optim/adam.py, the same in Debian's 1.13.1 and upstream):
//   step_t += 1
//   exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)                      m = m·β1 + (1−β1)·g
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)         v = v·β2 + (1−β2)·g·g
//   bias_correction1 = 1 - beta1 ** step; bias_correction2 = 1 - beta2 ** step   (Python floats)
//   step_size = lr / bias_correction1; bias_correction2_sqrt = math.sqrt(bias_correction2)
//   denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//   param.addcdiv_(exp_avg, denom, value=-step_size)                     p = p + (−step_size·m) / denom
// addcdiv's element order is ATen's addcdiv_cpu_kernel: self + value * t1 / t2, i.e. (value·t1)/t2.
// The per-step scalars are Python floats, i.e. doubles, rounded to T once where a tensor op uses them;
// the element-wise work is in T, as PyTorch does it in the tensor's dtype.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/nn/cpu/parallel.h"

namespace ds::cpu {

// The per-step constants of one Adam update, computed in double as Python does, then rounded to T.
template <class T>
struct AdamStepScalars {
  T beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
  T neg_step_size;          // −lr / (1 − β1^step)
  T bias_correction2_sqrt;  // sqrt(1 − β2^step)

  AdamStepScalars(double lr, double b1, double b2, double e, int64_t step)
      : beta1(static_cast<T>(b1)),
        one_minus_beta1(static_cast<T>(1.0 - b1)),
        beta2(static_cast<T>(b2)),
        one_minus_beta2(static_cast<T>(1.0 - b2)),
        eps(static_cast<T>(e)),
        neg_step_size(static_cast<T>(-(lr / (1.0 - std::pow(b1, static_cast<double>(step)))))),
        bias_correction2_sqrt(static_cast<T>(std::sqrt(1.0 - std::pow(b2, static_cast<double>(step))))) {}
};

// One update. `step` is the 1-based number of this update (PyTorch's state['step'] after its += 1).
// params, m, v are updated in place; grads is read.
template <class T>
void adam_step(T* params, T* m, T* v, const T* grads, int64_t n, double lr, double beta1, double beta2, double eps,
               int64_t step) {
  const AdamStepScalars<T> s(lr, beta1, beta2, eps, step);
  // Element-wise, so parallel without changing a bit (the trainer's CPU step runs this loop).
DS_PARALLEL_FOR_IF(n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grads[i];
    m[i] = m[i] * s.beta1 + s.one_minus_beta1 * g;
    v[i] = v[i] * s.beta2 + s.one_minus_beta2 * g * g;
    const T denom = std::sqrt(v[i]) / s.bias_correction2_sqrt + s.eps;
    params[i] = params[i] + s.neg_step_size * m[i] / denom;
  }
}

}  // namespace ds::cpu
