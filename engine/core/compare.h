// Result-against-reference comparisons shared by `darkstar doctor` (apps/doctor.cpp) and the test
// suites (tests/gpu, tests/*), so that a tolerance means the same thing in both.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/nn/ops.h"

namespace ds {

// max|got − want| / max(floor, max|want|). A NaN or Inf in `got` (e.g. a NaN-poisoned output the op
// left unwritten) or a size mismatch gives +inf, so such a result fails every tolerance.
// floor = 1 judges small outputs absolutely; floor = 0 normalises by the reference's own scale.
double max_normalised_error(const std::vector<float>& got, const std::vector<float>& want, double floor);

// Weights after one Adam step taken from the same state by two implementations (e.g. CUDA and CPU),
// with the gradients each of them fed to Adam. Adam's update is lr·m̂/(√v̂ + eps): at step 1 that is
// lr·sign(g) whatever |g|, so an element whose gradient the two implementations round to opposite signs
// moves by up to 2·lr apart without any bug. Each element is therefore judged by what its own measured
// gradient difference δ = |g_got − g_want| explains:
//   allowed = 0.05·lr + 2.5·lr·min(1, δ / |g_want|)
// For t ≤ 3 steps from a shared state, |∂update/∂g| ≤ lr/|g| (from √v̂ ≥ |g|·√((1−β2)/(1−β2^t)) and
// the bias corrections; ≈ 0.99 lr/|g| at t = 3), so a relative gradient difference r moves the weight by
// ≤ lr·r, and |update| ≤ 1.13·lr (Cauchy-Schwarz over the moments' weights at t = 3), so even a sign flip
// (r ≥ 1) moves it by ≤ 2.27·lr; 2.5·lr and the 0.05·lr floor (rounding of the update itself, far below
// it) leave margin. Everything else, a wrong update, exceeds `allowed` wherever the gradients agree.
struct AdamWeightComparison {
  int64_t compared = 0;
  int64_t sign_flips = 0;      // elements with δ ≥ |g_want| (the gradient's sign is not determined)
  double worst_excess_in_lr = -1;  // max over elements of (|Δw| − allowed) / lr: ≤ 0 passes
  int64_t worst_index = -1;
  bool ok() const { return worst_excess_in_lr <= 0; }
};
AdamWeightComparison compare_weights_after_adam(const std::vector<float>& weights_got,
                                                const std::vector<float>& weights_want,
                                                const std::vector<float>& grads_got,
                                                const std::vector<float>& grads_want, double lr);

}  // namespace ds
