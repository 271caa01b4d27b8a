// Adam kernels: one launch updates a whole network's parameters (one contiguous buffer), with the step
// number read from device memory. Same formula, order of operations and roundings as
// engine/nn/cpu/adam.h (PyTorch's _single_tensor_adam), so the emulated kernel equals the reference bit
// for bit; on a GPU nvcc may fuse a multiply-add, a float ulp.
//
// The bias corrections 1 − β^step need pow in double (as Python computes them); thread 0 of each block
// computes them once into shared memory, and the grid is capped so a block does many elements: the
// double pow costs nothing next to the loads, even on GPUs with slow FP64.
#include "kernels/adam.h"

#include <algorithm>

#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kAdamThreads = 256;
constexpr unsigned int kAdamMaxBlocks = 2048;  // enough to fill any current GPU; grid-stride beyond

__global__ void advance_step_kernel(int* step) { *step += 1; }

// grid: min(blocks_for(n), kAdamMaxBlocks) blocks of kAdamThreads, grid-stride over n.
__global__ void adam_step_kernel(float* params, float* m, float* v, const float* grads, const int* step, int64_t n,
                                 double lr, double beta1, double beta2, double eps) {
  DS_SHARED(float, step_scalars, 2);  // −lr / (1 − β1^t), sqrt(1 − β2^t)
  if (threadIdx.x == 0) {
    const double t = static_cast<double>(*step);
    step_scalars[0] = static_cast<float>(-(lr / (1.0 - pow(beta1, t))));
    step_scalars[1] = static_cast<float>(sqrt(1.0 - pow(beta2, t)));
  }
  __syncthreads();
  const float neg_step_size = step_scalars[0], bias_correction2_sqrt = step_scalars[1];
  const float beta1_f = static_cast<float>(beta1), one_minus_beta1 = static_cast<float>(1.0 - beta1);
  const float beta2_f = static_cast<float>(beta2), one_minus_beta2 = static_cast<float>(1.0 - beta2);
  const float eps_f = static_cast<float>(eps);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = grads[i];
    const float m_i = m[i] * beta1_f + one_minus_beta1 * g;
    const float v_i = v[i] * beta2_f + one_minus_beta2 * g * g;
    m[i] = m_i;
    v[i] = v_i;
    const float denom = sqrtf(v_i) / bias_correction2_sqrt + eps_f;
    params[i] = params[i] + neg_step_size * m_i / denom;
  }
}

}  // namespace

void advance_step(int* step, cudaStream_t stream) { DS_LAUNCH(advance_step_kernel, 1, 1, 0, stream, step); }

void adam_step(float* params, float* m, float* v, const float* grads, const int* step, int64_t n, double lr,
               double beta1, double beta2, double eps, cudaStream_t stream) {
  if (n <= 0) return;
  const unsigned int blocks = std::min(blocks_for(n, kAdamThreads), kAdamMaxBlocks);
  DS_LAUNCH(adam_step_kernel, blocks, kAdamThreads, 0, stream, params, m, v, grads, step, n, lr, beta1, beta2, eps);
}

}  // namespace ds::DS_KNS
