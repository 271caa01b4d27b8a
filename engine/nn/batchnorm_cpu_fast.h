// The fast CPU training-mode batch norm + activation for float, as the CPU step runs it (ops.cpp
// batchnorm_activation_*): the reference's formulas and precision (engine/nn/cpu/batchnorm.h: per-channel
// sums in double, element-wise work in float), with (1) each double sum kept in four partial sums
// combined in a fixed order, so the adds are four independent chains instead of one (the reference's
// single accumulator waits on the add latency at every element), and (2) the activation done in the
// pass that normalises (forward) and in the pass that sums (backward), one pass less over the tensor
// each way. The partial sums change only the order of double-precision additions, so the results agree
// with the reference to within the float rounding of the statistics (tests/test_unit_batchnorm_fast.cpp);
// the order depends only on the shapes, never on the thread count.
//
// Shapes as the reference: x, y, dy, dx N×C×HW; per-channel arrays C. y may alias x (forward); dy is
// overwritten with the gradient behind the activation (as the unfused CPU path did); dx must not alias dy.
#pragma once
#include <cstdint>

#include "kernels/batchnorm.h"  // BnActivation

namespace ds::cpu_fast {

void batchnorm_activation_forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean,
                                        float* running_var, const float* x, const float* gamma, const float* beta,
                                        int64_t N, int64_t C, int64_t HW, double momentum, double eps,
                                        BnActivation act, float slope);

// dx WRITTEN; dgamma, dbeta ACCUMULATE (+=); dy overwritten (see above); y is the activation's output.
void batchnorm_activation_backward(float* dx, float* dgamma, float* dbeta, float* dy, const float* y, const float* x,
                                   const float* gamma, const float* saved_mean, const float* saved_invstd, int64_t N,
                                   int64_t C, int64_t HW, BnActivation act, float slope);

}  // namespace ds::cpu_fast
