// Loss kernels: mean BCE-with-logits (forward, mean probability and backward in one launch) and the
// finite check. Same meaning and element expressions as engine/nn/cpu/loss.h. Logits and dlogits are
// float or bf16 storage (T); the arithmetic is float/double either way, one rounding when dlogits is stored.
//
// BCE runs as ONE block: n is D's batch (tens to hundreds of logits), far too little to fill a GPU, and
// a single block gives a fixed summation order (deterministic run to run, no float atomics) and needs no
// second pass or host round trip. Per-thread partial sums are doubles as in the reference, so the
// kernel and the reference agree to about a float ulp; the cost is nothing at these sizes.
#include "kernels/loss.h"

#include "kernels/bf16_kernels.h"

#include <stdexcept>

#include "kernels/bf16.h"
#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kLossThreads = 256;  // a multiple of 32: every warp is full for the shuffles
constexpr int kLossWarps = kLossThreads / 32;

__device__ inline double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// grid: 1 block of kLossThreads. Every thread reaches the shuffles (no early return), as the full mask
// requires.
template <class T>
__global__ void bce_with_logits_kernel(float* loss, float* mean_probability, T* dlogits, const T* logits,
                                       float target, float dloss, int64_t n) {
  DS_SHARED(double, warp_loss, kLossWarps);
  DS_SHARED(double, warp_probability, kLossWarps);
  const float count = static_cast<float>(n);
  double loss_sum = 0, probability_sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float x = to_float(logits[i]);
    const float e = expf(-fabsf(x));
    const float sigmoid = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    loss_sum += static_cast<double>(fmaxf(x, 0.0f) - x * target + log1pf(e));
    probability_sum += static_cast<double>(sigmoid);
    if (dlogits) dlogits[i] = from_float<T>((sigmoid - target) * dloss / count);
  }
  loss_sum = warp_sum(loss_sum);
  probability_sum = warp_sum(probability_sum);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    warp_loss[warp] = loss_sum;
    warp_probability[warp] = probability_sum;
  }
  __syncthreads();
  if (warp == 0) {
    loss_sum = warp_sum(lane < kLossWarps ? warp_loss[lane] : 0.0);
    probability_sum = warp_sum(lane < kLossWarps ? warp_probability[lane] : 0.0);
    if (lane == 0) {
      *loss = static_cast<float>(loss_sum / static_cast<double>(n));
      *mean_probability = static_cast<float>(probability_sum / static_cast<double>(n));
    }
  }
}

// NaN and ±Inf are exactly the floats whose exponent bits are all ones; testing the bits is immune to
// fast-math flags that may fold isfinite() to true.
template <class T>
__global__ void check_finite_kernel(int* flag, const T* x, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  // bf16 → float keeps the exponent bits, so one test serves both storage types.
  if (i < n && (__float_as_uint(to_float(x[i])) & 0x7f800000u) == 0x7f800000u) atomicAnd(flag, 0);
}

template <class T>
void bce_with_logits_t(float* loss, float* mean_probability, T* dlogits, const T* logits, float target,
                     float dloss, int64_t n, cudaStream_t stream) {
  if (n <= 0) throw std::invalid_argument("bce_with_logits: expected at least one logit");
  DS_LAUNCH(bce_with_logits_kernel<T>, 1, kLossThreads, 0, stream, loss, mean_probability, dlogits, logits, target,
            dloss, n);
}

template <class T>
void check_finite_t(int* flag, const T* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int threads = 256;
  DS_LAUNCH(check_finite_kernel<T>, blocks_for(n, threads), threads, 0, stream, flag, x, n);
}

}  // namespace

#define DS_LOSS_DEFINITIONS(T)                                                                                   \
  void bce_with_logits(float* loss, float* mean_probability, T* dlogits, const T* logits, float target,          \
                       float dloss, int64_t n, cudaStream_t stream) {                                            \
    bce_with_logits_t(loss, mean_probability, dlogits, logits, target, dloss, n, stream);                        \
  }                                                                                                              \
  void check_finite(int* flag, const T* x, int64_t n, cudaStream_t stream) { check_finite_t(flag, x, n, stream); }
DS_LOSS_DEFINITIONS(float)
DS_LOSS_DEFINITIONS(bf16)
#undef DS_LOSS_DEFINITIONS

}  // namespace ds::DS_KNS
