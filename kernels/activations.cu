// Activation kernels (ReLU, LeakyReLU, Tanh; float32): one thread per element, the same expressions as
// engine/nn/cpu/activations.h, so emulated results equal the reference bit for bit (tanhf on a GPU may
// differ by an ulp or two from glibc's).
#include "kernels/activations.h"

#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kActivationThreads = 256;

__device__ inline int64_t element_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }

// `x < 0 ? 0 : x` keeps NaN (see the CPU reference).
__global__ void relu_forward_kernel(float* y, const float* x, int64_t n) {
  const int64_t i = element_index();
  if (i < n) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

__global__ void relu_backward_kernel(float* dx, const float* dy, const float* y, int64_t n) {
  const int64_t i = element_index();
  if (i < n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

__global__ void leaky_relu_forward_kernel(float* y, const float* x, float slope, int64_t n) {
  const int64_t i = element_index();
  if (i < n) y[i] = x[i] < 0.0f ? x[i] * slope : x[i];
}

__global__ void leaky_relu_backward_kernel(float* dx, const float* dy, const float* y, float slope, int64_t n) {
  const int64_t i = element_index();
  if (i < n) dx[i] = y[i] > 0.0f ? dy[i] : dy[i] * slope;
}

__global__ void tanh_forward_kernel(float* y, const float* x, int64_t n) {
  const int64_t i = element_index();
  if (i < n) y[i] = tanhf(x[i]);
}

__global__ void tanh_backward_kernel(float* dx, const float* dy, const float* y, int64_t n) {
  const int64_t i = element_index();
  if (i < n) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

}  // namespace

void relu_forward(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(relu_forward_kernel, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, y, x, n);
}

void relu_backward(float* dx, const float* dy, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(relu_backward_kernel, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, dx, dy, y, n);
}

void leaky_relu_forward(float* y, const float* x, float slope, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(leaky_relu_forward_kernel, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, y, x, slope,
            n);
}

void leaky_relu_backward(float* dx, const float* dy, const float* y, float slope, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(leaky_relu_backward_kernel, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, dx, dy, y,
            slope, n);
}

void tanh_forward(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(tanh_forward_kernel, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, y, x, n);
}

void tanh_backward(float* dx, const float* dy, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(tanh_backward_kernel, blocks_for(n, kActivationThreads), kActivationThreads, 0, stream, dx, dy, y, n);
}

}  // namespace ds::DS_KNS
