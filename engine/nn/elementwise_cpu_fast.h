// The fast CPU activations (ReLU, LeakyReLU forward and backward) for float: the same values as the
// reference in engine/nn/cpu/activations.h bit for bit (tests/test_unit_elementwise_fast.cpp), written
// so the compiler vectorises them. The reference loops are not vectorised when they run in place
// (y == x, as the DCGAN stages run them): the compiler's run-time overlap check fails for identical
// pointers and it falls back to a scalar loop with a data-dependent branch per element, which mispredicts
// on activations of random sign (perf on the dcgan64 step: scalar comiss/jbe per element). Here the in-place case is a loop over
// one pointer, and every element is a branch-free select.
//
// Arrays: n contiguous elements. y/x (and dx/dy) must be either the same array or disjoint ones.
#pragma once
#include <cstdint>

namespace ds::cpu_fast {

void relu_forward(float* y, const float* x, int64_t n);
void relu_backward(float* dx, const float* dy, const float* y, int64_t n);
void leaky_relu_forward(float* y, const float* x, float slope, int64_t n);
void leaky_relu_backward(float* dx, const float* dy, const float* y, float slope, int64_t n);

}  // namespace ds::cpu_fast
