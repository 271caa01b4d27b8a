// The fast CPU training-mode batch norm + activation forward for float, as the CPU step runs it (ops.cpp
// batchnorm_activation_forward_train): the reference's formulas and precision (engine/nn/cpu/batchnorm.h:
// per-channel sums in double, element-wise work in float), with (1) each double sum kept in four partial
// sums combined in a fixed order, so the adds are four independent chains instead of one (the reference's
// single accumulator waits on the add latency at every element), and (2) the activation done in the pass
// that normalises, one pass less over the tensor. The partial sums change only the order of
// double-precision additions, so the results agree with the reference to within the float rounding of
// the statistics (tests/test_unit_batchnorm_fast.cpp); the order depends only on the shapes, never on the
// thread count. Measured alone at 64×128×16×16, one thread: 4.3 ms against 9.1 for the reference and its
// activation. The backward pass written the same way was no faster than the reference (its cost is the
// double arithmetic per element, not the add latency), so the CPU backward stays the reference's.
//
// Shapes as the reference: x, y N×C×HW; per-channel arrays C. y may alias x.
#pragma once
#include <cstdint>

#include "kernels/batchnorm.h"  // BnActivation

namespace ds::cpu_fast {

void batchnorm_activation_forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean,
                                        float* running_var, const float* x, const float* gamma, const float* beta,
                                        int64_t N, int64_t C, int64_t HW, double momentum, double eps,
                                        BnActivation act, float slope);

}  // namespace ds::cpu_fast
