// Activation CPU reference (ReLU, LeakyReLU, Tanh): forward and backward, templated on the scalar type.
//
// Shapes: every array is n contiguous elements (any layout; these ops are element-wise).
// The backward passes read the forward OUTPUT y, never x, so a forward may run in place (y == x) and
// the input buffer can be reused; dx is WRITTEN (it is an activation gradient), and may alias dy.
//
// Semantics follow PyTorch: relu'(0) = 0 (threshold_backward: grad where y <= 0 is 0), NaN inputs
// propagate (so the finite check downstream sees them), LeakyReLU's slope is applied to x < 0.
//
// The loops are OpenMP-parallel above kParallelElements (each element is independent, so results do not
// depend on the thread count); the trainer's CPU step runs them as they are.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/nn/cpu/parallel.h"

namespace ds::cpu {

// y = max(x, 0); `x < 0 ? 0 : x` keeps NaN as NaN (a `x > 0 ? x : 0` form would hide it as 0).
template <class T>
void relu_forward(T* y, const T* x, int64_t n) {
DS_PARALLEL_FOR_IF(n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

// dx = dy where y > 0, else 0.
template <class T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n) {
DS_PARALLEL_FOR_IF(n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

// y = x for x >= 0, slope·x for x < 0.
template <class T>
void leaky_relu_forward(T* y, const T* x, T slope, int64_t n) {
DS_PARALLEL_FOR_IF(n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? x[i] * slope : x[i];
}

// slope > 0 is required: then sign(y) = sign(x), so the output decides the branch as x would.
template <class T>
void leaky_relu_backward(T* dx, const T* dy, const T* y, T slope, int64_t n) {
DS_PARALLEL_FOR_IF(n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : dy[i] * slope;
}

template <class T>
void tanh_forward(T* y, const T* x, int64_t n) {
DS_PARALLEL_FOR_IF(n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

// tanh'(x) = 1 − tanh²(x) = 1 − y².
template <class T>
void tanh_backward(T* dx, const T* dy, const T* y, int64_t n) {
DS_PARALLEL_FOR_IF(n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

}  // namespace ds::cpu
