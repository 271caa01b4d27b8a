// The fast CPU activations (see elementwise_cpu_fast.h). Each op is one expression per element, the
// reference's expression (so NaN, ±0 and the branch conditions come out identical), applied by a
// loop the compiler vectorises: `omp simd` states what the aliasing rule above guarantees (element i
// is read before it is written and no other element is touched), and the in-place case reads and
// writes through one pointer. Threads take contiguous blocks (static schedule), each element
// independent, so results do not depend on the thread count.
#include "engine/nn/elementwise_cpu_fast.h"

#include "engine/nn/cpu/parallel.h"

// The selects below compare floats; with GCC's default -ftrapping-math an ordered compare may raise
// "invalid" on a NaN, so the compiler keeps a branch per element and no vector loop (-fopt-info-vec:
// "control flow in loop"). Nothing here reads the floating-point exception flags, and no-trapping-math
// changes no value (it is not -ffast-math: no reassociation, NaN and signed zeros kept).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

namespace ds::cpu_fast {
namespace {

using ds::cpu::kParallelElements;

// The products are computed unconditionally and then selected, the selected value being the
// reference's bit for bit.
inline float relu(float x) { return x < 0.0f ? 0.0f : x; }
inline float leaky_relu(float x, float slope) {
  const float scaled = x * slope;
  return x < 0.0f ? scaled : x;
}
inline float relu_grad(float dy, float y) { return y > 0.0f ? dy : 0.0f; }
inline float leaky_relu_grad(float dy, float y, float slope) {
  const float scaled = dy * slope;
  return y > 0.0f ? dy : scaled;
}

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
