// The fast CPU activations (see elementwise_cpu_fast.h). Each op is one expression per element, the
// reference's expression (so NaN, ±0 and the branch conditions come out identical), applied by a
// loop the compiler vectorises: `omp simd` states what the aliasing rule above guarantees (element i
// is read before it is written and no other element is touched), and the in-place case reads and
// writes through one pointer. Threads take contiguous blocks (static schedule), each element
// independent, so results do not depend on the thread count.
#include "engine/nn/elementwise_cpu_fast.h"

#include "engine/nn/cpu/parallel.h"
#include "engine/nn/activation_select.h"  // last: it also sets no-trapping-math for this file

namespace ds::cpu_fast {
namespace {

using ds::cpu::kParallelElements;
using select::leaky_relu;
using select::leaky_relu_grad;
using select::relu;
using select::relu_grad;

}  // namespace

void relu_forward(float* y, const float* x, int64_t n) {
  if (y == x) {
#pragma omp parallel for simd schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) y[i] = relu(y[i]);
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) y[i] = relu(x[i]);
  }
}

void leaky_relu_forward(float* y, const float* x, float slope, int64_t n) {
  if (y == x) {
#pragma omp parallel for simd schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) y[i] = leaky_relu(y[i], slope);
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) y[i] = leaky_relu(x[i], slope);
  }
}

void relu_backward(float* dx, const float* dy, const float* y, int64_t n) {
  if (dx == dy) {
#pragma omp parallel for simd schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) dx[i] = relu_grad(dx[i], y[i]);
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) dx[i] = relu_grad(dy[i], y[i]);
  }
}

void leaky_relu_backward(float* dx, const float* dy, const float* y, float slope, int64_t n) {
  if (dx == dy) {
#pragma omp parallel for simd schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) dx[i] = leaky_relu_grad(dx[i], y[i], slope);
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) dx[i] = leaky_relu_grad(dy[i], y[i], slope);
  }
}

}  // namespace ds::cpu_fast
