// Activation kernels (ReLU, LeakyReLU, Tanh): one thread per element, the same expressions as
// engine/nn/cpu/activations.h, so emulated results equal the reference bit for bit (tanhf on a GPU may
// differ by an ulp or two from glibc's). Templated on the storage type T (float, or bf16 for
// `--precision bf16`): values are loaded into float, computed in float and rounded once when stored, so
// the float instantiation is the exact float32 code it always was.
#include "kernels/activations.h"

#include "kernels/bf16_kernels.h"

#include "kernels/bf16.h"
#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kActivationThreads = 256;

__device__ inline int64_t element_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }

// `x < 0 ? 0 : x` keeps NaN (see the CPU reference).
template <class T>
__global__ void relu_forward_kernel(T* y, const T* x, int64_t n) {
  const int64_t i = element_index();
  if (i >= n) return;
  const float v = to_float(x[i]);
  y[i] = from_float<T>(v < 0.0f ? 0.0f : v);
}

template <class T>
__global__ void relu_backward_kernel(T* dx, const T* dy, const T* y, int64_t n) {
  const int64_t i = element_index();
  if (i < n) dx[i] = from_float<T>(to_float(y[i]) > 0.0f ? to_float(dy[i]) : 0.0f);
}

template <class T>
__global__ void leaky_relu_forward_kernel(T* y, const T* x, float slope, int64_t n) {
  const int64_t i = element_index();
  if (i >= n) return;
  const float v = to_float(x[i]);
  y[i] = from_float<T>(v < 0.0f ? v * slope : v);
}

template <class T>
__global__ void leaky_relu_backward_kernel(T* dx, const T* dy, const T* y, float slope, int64_t n) {
  const int64_t i = element_index();
  if (i >= n) return;
  const float g = to_float(dy[i]);
  dx[i] = from_float<T>(to_float(y[i]) > 0.0f ? g : g * slope);
}

template <class T>
__global__ void tanh_forward_kernel(T* y, const T* x, int64_t n) {
  const int64_t i = element_index();
  if (i < n) y[i] = from_float<T>(tanhf(to_float(x[i])));
}

template <class T>
__global__ void tanh_backward_kernel(T* dx, const T* dy, const T* y, int64_t n) {
  const int64_t i = element_index();
  if (i >= n) return;
  const float v = to_float(y[i]);
  dx[i] = from_float<T>(to_float(dy[i]) * (1.0f - v * v));
}

template <class T>
void relu_forward_t(T* y, const T* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(relu_forward_kernel<T>, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, y, x, n);
}
template <class T>
void relu_backward_t(T* dx, const T* dy, const T* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(relu_backward_kernel<T>, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, dx, dy, y, n);
}
template <class T>
void leaky_relu_forward_t(T* y, const T* x, float slope, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(leaky_relu_forward_kernel<T>, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, y, x,
            slope, n);
}
template <class T>
void leaky_relu_backward_t(T* dx, const T* dy, const T* y, float slope, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(leaky_relu_backward_kernel<T>, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, dx, dy,
            y, slope, n);
}
template <class T>
void tanh_forward_t(T* y, const T* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(tanh_forward_kernel<T>, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, y, x, n);
}
template <class T>
void tanh_backward_t(T* dx, const T* dy, const T* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(tanh_backward_kernel<T>, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, dx, dy, y, n);
}

}  // namespace

#define DS_ACTIVATION_DEFINITIONS(T)                                                                                \
  void relu_forward(T* y, const T* x, int64_t n, cudaStream_t stream) { relu_forward_t(y, x, n, stream); }        \
  void relu_backward(T* dx, const T* dy, const T* y, int64_t n, cudaStream_t stream) {                            \
    relu_backward_t(dx, dy, y, n, stream);                                                                        \
  }                                                                                                               \
  void leaky_relu_forward(T* y, const T* x, float slope, int64_t n, cudaStream_t stream) {                        \
    leaky_relu_forward_t(y, x, slope, n, stream);                                                                 \
  }                                                                                                               \
  void leaky_relu_backward(T* dx, const T* dy, const T* y, float slope, int64_t n, cudaStream_t stream) {         \
    leaky_relu_backward_t(dx, dy, y, slope, n, stream);                                                           \
  }                                                                                                               \
  void tanh_forward(T* y, const T* x, int64_t n, cudaStream_t stream) { tanh_forward_t(y, x, n, stream); }        \
  void tanh_backward(T* dx, const T* dy, const T* y, int64_t n, cudaStream_t stream) {                            \
    tanh_backward_t(dx, dy, y, n, stream);                                                                        \
  }
DS_ACTIVATION_DEFINITIONS(float)
DS_ACTIVATION_DEFINITIONS(bf16)
#undef DS_ACTIVATION_DEFINITIONS

}  // namespace ds::DS_KNS
