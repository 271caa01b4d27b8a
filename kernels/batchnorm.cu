// BatchNorm2d kernels (NCHW float32), optionally fused with the ReLU/LeakyReLU after it: training forward
// with running-statistics update, eval forward, training-mode backward. Same meaning as
// engine/nn/cpu/batchnorm.h followed by engine/nn/cpu/activations.h.
//
// The training reduction is split over `splits` blocks per channel (batchnorm_splits in the header
// says how many), each owning one contiguous chunk of the channel's M = N·HW values (flat index
// j = n·HW + i). Pass 1 writes one partial per (channel, chunk) to the workspace; pass 2, with the same
// grid, has thread 0 of every block combine its channel's partials in chunk order 0, 1, 2, ... (every
// block of a channel computes the identical combination, so no block waits for another, no float
// atomics exist and the result does not depend on scheduling: bit for bit the same run to run), then
// normalises (+ activates) its own chunk. Within a block: warp shuffles, then one shared slot per warp.
//
// Numerics. Forward: per chunk, one read of x accumulating double sums of x − K (K = the chunk's first
// value) and of its square, turned into the chunk's mean and M2 = Σ(x − mean)² (the shift keeps the
// subtraction S2 − S1²/n sound; see batchnorm_stats_kernel), then the chunks merged with Chan, Golub &
// LeVeque's pairwise update (M2 += M2_b + δ²·n_a·n_b/n). No E[x²]−E[x]² cancellation when
// |mean| ≫ std (activations after a ReLU often are), and the double arithmetic keeps the kernel an
// order of magnitude closer to the reference's double two-pass sums than float rounding of the outputs,
// so reference and kernel agree to a few float ulp for any split. Backward: Σdz and Σdz·x̂ are plain
// double partial sums (no cancellation problem: they are what the formula needs, not a difference of
// large moments). Passes over memory: forward reads x twice and writes y once (statistics, then
// normalise + activate; the unfused chain read x three times, wrote y, then re-read and re-wrote it
// for the activation); backward reads dy, y
// and x twice and writes dx once (the unfused chain also wrote and re-read the activation's gradient).
#include "kernels/batchnorm.h"

#include "kernels/bf16_kernels.h"

#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/bf16.h"
#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kBatchNormThreads = 256;  // a multiple of 32: every warp is full for the shuffles
constexpr int kBatchNormWarps = kBatchNormThreads / 32;

// The values of one chunk [start, end) of a channel that belong to this thread: flat index
// j = start + threadIdx.x, + blockDim.x, ... below end, without a division per element.
struct ChunkElements {
  int64_t j, end;          // current flat index, end of the chunk
  int64_t n, i;            // current image and position in it
  int64_t step_n, step_i;  // blockDim.x as whole images plus a remainder
  __device__ ChunkElements(int64_t start, int64_t end_, int64_t HW)
      : j(start + threadIdx.x), end(end_), n(j / HW), i(j % HW), step_n(blockDim.x / HW), step_i(blockDim.x % HW) {}
  __device__ bool more() const { return j < end; }
  __device__ void advance(int64_t HW) {
    j += blockDim.x;
    n += step_n;
    i += step_i;
    if (i >= HW) {
      i -= HW;
      ++n;
    }
  }
  __device__ int64_t offset(int64_t c, int64_t C, int64_t HW) const { return (n * C + c) * HW + i; }
};

// Which channel and chunk a block owns (grid: C·splits blocks, channel-major).
struct BlockChunk {
  int64_t c, b, start, end;
  __device__ BlockChunk(int splits, int64_t chunk, int64_t M)
      : c(blockIdx.x / splits), b(blockIdx.x % splits), start(b * chunk), end(start + chunk < M ? start + chunk : M) {}
};

// Sum of v over the block, returned to every thread. warp_partials holds kBatchNormWarps doubles, total
// one. Calling it again right away is safe: the second barrier keeps any thread from overwriting
// warp_partials or total before every thread has read the previous result.
__device__ double block_sum(double v, double* warp_partials, double* total) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_partials[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kBatchNormWarps ? warp_partials[lane] : 0.0;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) *total = v;
  }
  __syncthreads();
  return *total;
}

__device__ inline float activate(float v, BnActivation act, float slope) {
  if (act == BnActivation::ReLU) return v < 0.0f ? 0.0f : v;
  if (act == BnActivation::LeakyReLU) return v < 0.0f ? v * slope : v;
  return v;
}
// d/d(activation input) from dy and the forward output y (sign(y) = sign(input) for slope > 0).
__device__ inline float activation_backward(float dy, float y, BnActivation act, float slope) {
  if (act == BnActivation::ReLU) return y > 0.0f ? dy : 0.0f;
  if (act == BnActivation::LeakyReLU) return y > 0.0f ? dy : dy * slope;
  return dy;
}

// Pass 1 of the forward: ONE read of x. partials[(c·splits + b)·2] = the chunk's mean, [+1] = its
// M2 = Σ(x − mean)², from double sums of the values shifted by the chunk's first value K:
// S1 = Σ(x−K), S2 = Σ(x−K)², mean = K + S1/n, M2 = S2 − S1²/n. The shift is what makes one pass sound:
// the subtraction loses ~(1 + (mean−K)²/var) double ulps relative to M2, and K is a value of the chunk,
// so that factor is its squared z-score: even a value 1000 standard deviations out leaves ~1e-10
// relative error, far below float resolution (unshifted, |mean| ≫ std would cancel catastrophically).
template <class T>
__global__ void batchnorm_stats_kernel(double* partials, const T* x, int64_t N, int64_t C, int64_t HW, int splits,
                                       int64_t chunk) {
  DS_SHARED(double, warp_partials, kBatchNormWarps);
  DS_SHARED(double, total, 1);
  const BlockChunk bc(splits, chunk, N * HW);
  const double count = static_cast<double>(bc.end - bc.start);
  const double shift = static_cast<double>(to_float(x[((bc.start / HW) * C + bc.c) * HW + bc.start % HW]));

  double s1 = 0, s2 = 0;
  for (ChunkElements e(bc.start, bc.end, HW); e.more(); e.advance(HW)) {
    const double d = static_cast<double>(to_float(x[e.offset(bc.c, C, HW)])) - shift;
    s1 += d;
    s2 += d * d;
  }
  s1 = block_sum(s1, warp_partials, total);
  s2 = block_sum(s2, warp_partials, total);
  if (threadIdx.x == 0) {
    double* p = partials + (bc.c * splits + bc.b) * 2;
    p[0] = shift + s1 / count;
    p[1] = fmax(s2 - s1 * (s1 / count), 0.0);  // ≥ 0 mathematically; rounding must not make it negative
  }
}

// Pass 2 of the forward: combine the channel's partials in chunk order, then y = act(γ·x̂ + β) on this
// block's chunk (in every block of a channel: no block waits for another). The block of chunk 0 stores the statistics and updates the running estimates.
template <class T>
__global__ void batchnorm_normalise_kernel(T* y, float* saved_mean, float* saved_invstd, float* running_mean,
                                           float* running_var, const double* partials, const T* x,
                                           const float* gamma, const float* beta, int64_t N, int64_t C, int64_t HW,
                                           int splits, int64_t chunk, double momentum, double eps, BnActivation act,
                                           float slope) {
  DS_SHARED(float, channel_stats, 2);  // mean, invstd as floats (what the reference normalises with)
  const int64_t M = N * HW;
  const BlockChunk bc(splits, chunk, M);
  if (threadIdx.x == 0) {
    // Chan et al.: merging (n_a, mean_a, M2_a) with (n_b, mean_b, M2_b).
    const double* p = partials + bc.c * splits * 2;
    double n_a = 0, mean = 0, m2 = 0;
    for (int b = 0; b < splits; ++b) {
      const int64_t b_start = b * chunk, b_end = b_start + chunk < M ? b_start + chunk : M;
      const double n_b = static_cast<double>(b_end - b_start), n = n_a + n_b;
      const double delta = p[2 * b] - mean;
      mean += delta * (n_b / n);
      m2 += p[2 * b + 1] + delta * delta * (n_a * n_b / n);
      n_a = n;
    }
    const float mean_f = static_cast<float>(mean);
    const float invstd_f = static_cast<float>(1.0 / sqrt(m2 / static_cast<double>(M) + eps));
    channel_stats[0] = mean_f;
    channel_stats[1] = invstd_f;
    if (bc.b == 0) {  // one block per channel owns the per-channel outputs
      saved_mean[bc.c] = mean_f;
      saved_invstd[bc.c] = invstd_f;
      // PyTorch: running_var follows the UNBIASED variance (Normalization.cpp, batch_norm_cpu_update_stats_template).
      running_mean[bc.c] =
          static_cast<float>((1.0 - momentum) * static_cast<double>(running_mean[bc.c]) + momentum * mean);
      running_var[bc.c] = static_cast<float>((1.0 - momentum) * static_cast<double>(running_var[bc.c]) +
                                             momentum * (m2 / static_cast<double>(M - 1)));
    }
  }
  __syncthreads();
  const float mean_f = channel_stats[0], invstd_f = channel_stats[1];
  const float g = gamma[bc.c], bt = beta[bc.c];
  for (ChunkElements e(bc.start, bc.end, HW); e.more(); e.advance(HW)) {
    const int64_t k = e.offset(bc.c, C, HW);
    y[k] = from_float<T>(activate((to_float(x[k]) - mean_f) * invstd_f * g + bt, act, slope));
  }
}

// grid: one block per (n, c) plane (N·C blocks), block: up to 256 threads striding over the plane's HW
// values. Thread 0 turns the channel's running variance into 1/sqrt(var + eps) once per block, in double
// as the reference does, and the block reads it from shared memory: no double math and no sqrt per
// element.
template <class T>
__global__ void batchnorm_forward_eval_kernel(T* y, const T* x, const float* gamma, const float* beta,
                                              const float* running_mean, const float* running_var, int64_t N,
                                              int64_t C, int64_t HW, double eps, BnActivation act, float slope) {
  DS_SHARED(float, channel_invstd, 1);
  const int64_t plane = blockIdx.x;
  const int64_t c = plane % C;
  if (threadIdx.x == 0) channel_invstd[0] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[c]) + eps));
  __syncthreads();
  const float invstd_f = channel_invstd[0], mean_f = running_mean[c], gamma_f = gamma[c], beta_f = beta[c];
  const T* xp = x + plane * HW;
  T* yp = y + plane * HW;
  for (int64_t i = threadIdx.x; i < HW; i += blockDim.x)
    yp[i] = from_float<T>(activate((to_float(xp[i]) - mean_f) * invstd_f * gamma_f + beta_f, act, slope));
}

// Pass 1 of the backward: per chunk Σdz and Σdz·x̂ (dz = the activation's backward of dy) in double.
template <class T>
__global__ void batchnorm_backward_sums_kernel(double* partials, const T* dy, const T* y, const T* x,
                                               const float* saved_mean, const float* saved_invstd, int64_t N, int64_t C,
                                               int64_t HW, int splits, int64_t chunk, BnActivation act, float slope) {
  DS_SHARED(double, warp_partials, kBatchNormWarps);
  DS_SHARED(double, total, 1);
  const BlockChunk bc(splits, chunk, N * HW);
  const double mean = saved_mean[bc.c], invstd = saved_invstd[bc.c];
  double sum_dz = 0, sum_dz_xhat = 0;
  for (ChunkElements e(bc.start, bc.end, HW); e.more(); e.advance(HW)) {
    const int64_t k = e.offset(bc.c, C, HW);
    const double dz = static_cast<double>(activation_backward(to_float(dy[k]), to_float(y[k]), act, slope));
    sum_dz += dz;
    sum_dz_xhat += dz * ((static_cast<double>(to_float(x[k])) - mean) * invstd);
  }
  sum_dz = block_sum(sum_dz, warp_partials, total);
  sum_dz_xhat = block_sum(sum_dz_xhat, warp_partials, total);
  if (threadIdx.x == 0) {
    double* p = partials + (bc.c * splits + bc.b) * 2;
    p[0] = sum_dz;
    p[1] = sum_dz_xhat;
  }
}

// Pass 2: dx = γ·s·(dz − mean(dz) − x̂·mean(dz·x̂)); the derivation is in engine/nn/cpu/batchnorm.h.
template <class T>
__global__ void batchnorm_backward_dx_kernel(T* dx, float* dgamma, float* dbeta, const double* partials,
                                             const T* dy, const T* y, const T* x, const float* gamma,
                                             const float* saved_mean, const float* saved_invstd, int64_t N, int64_t C,
                                             int64_t HW, int splits, int64_t chunk, BnActivation act, float slope) {
  DS_SHARED(float, channel_means, 2);  // mean(dz), mean(dz·x̂)
  const int64_t M = N * HW;
  const BlockChunk bc(splits, chunk, M);
  if (threadIdx.x == 0) {
    const double* p = partials + bc.c * splits * 2;
    double sum_dz = 0, sum_dz_xhat = 0;
    for (int b = 0; b < splits; ++b) {  // chunk order: the same sums in every block of the channel
      sum_dz += p[2 * b];
      sum_dz_xhat += p[2 * b + 1];
    }
    channel_means[0] = static_cast<float>(sum_dz / static_cast<double>(M));
    channel_means[1] = static_cast<float>(sum_dz_xhat / static_cast<double>(M));
    if (bc.b == 0) {  // one block per channel: a plain += is race-free and deterministic
      dbeta[bc.c] += static_cast<float>(sum_dz);
      dgamma[bc.c] += static_cast<float>(sum_dz_xhat);
    }
  }
  __syncthreads();
  const float mean_dz = channel_means[0], mean_dz_xhat = channel_means[1];
  const float mean_f = saved_mean[bc.c], invstd_f = saved_invstd[bc.c];
  const float scale = gamma[bc.c] * invstd_f;
  for (ChunkElements e(bc.start, bc.end, HW); e.more(); e.advance(HW)) {
    const int64_t k = e.offset(bc.c, C, HW);
    const float dz = activation_backward(to_float(dy[k]), to_float(y[k]), act, slope);
    const float xhat = (to_float(x[k]) - mean_f) * invstd_f;
    dx[k] = from_float<T>(scale * (dz - mean_dz - xhat * mean_dz_xhat));
  }
}

// The split actually used and its chunk length: no empty chunk (splits ≤ M, and ceil(M/chunk) chunks).
struct Split {
  int splits;
  int64_t chunk;
};
Split choose_split(int64_t C, int64_t M, int requested, const char* who) {
  if (requested < 0 || requested > kBatchNormMaxSplits)
    throw std::invalid_argument(std::string(who) + ": splits " + std::to_string(requested) + ", expected 0 (auto) to " +
                                std::to_string(kBatchNormMaxSplits));
  int64_t s = requested == 0 ? batchnorm_splits(C, M) : requested;
  if (s > M) s = M;
  const int64_t chunk = (M + s - 1) / s;
  s = (M + chunk - 1) / chunk;
  if (C * s > INT_MAX) throw std::invalid_argument(std::string(who) + ": more channels than a grid holds");
  return {static_cast<int>(s), chunk};
}

void check_activation(BnActivation act, float slope, const char* who) {
  if (act != BnActivation::None && act != BnActivation::ReLU && act != BnActivation::LeakyReLU)
    throw std::invalid_argument(std::string(who) + ": unknown activation");
  if (act == BnActivation::LeakyReLU && !(slope > 0.0f))
    throw std::invalid_argument(std::string(who) + ": LeakyReLU slope must be > 0 (the backward reads sign(y))");
}

template <class T>
void batchnorm_act_forward_train_t(T* y, float* saved_mean, float* saved_invstd, float* running_mean,
                                 float* running_var, double* workspace, const T* x, const float* gamma,
                                 const float* beta, int64_t N, int64_t C, int64_t HW, double momentum, double eps,
                                 BnActivation act, float slope, int splits, cudaStream_t stream) {
  // PyTorch refuses this too (torch/nn/functional.py _verify_batch_size): the unbiased variance is 0/0.
  if (N * HW < 2)
    throw std::invalid_argument("batchnorm: expected more than 1 value per channel when training, got N=" +
                                std::to_string(N) + ", H*W=" + std::to_string(HW));
  check_activation(act, slope, "batchnorm_act_forward_train");
  if (C <= 0) return;
  const Split s = choose_split(C, N * HW, splits, "batchnorm_act_forward_train");
  const unsigned int blocks = static_cast<unsigned int>(C * s.splits);
  DS_LAUNCH(batchnorm_stats_kernel<T>, blocks, kBatchNormThreads, 0, stream, workspace, x, N, C, HW, s.splits, s.chunk);
  DS_LAUNCH(batchnorm_normalise_kernel<T>, blocks, kBatchNormThreads, 0, stream, y, saved_mean, saved_invstd,
            running_mean, running_var, workspace, x, gamma, beta, N, C, HW, s.splits, s.chunk, momentum, eps, act,
            slope);
}

template <class T>
void batchnorm_act_backward_t(T* dx, float* dgamma, float* dbeta, double* workspace, const T* dy, const T* y,
                            const T* x, const float* gamma, const float* saved_mean, const float* saved_invstd,
                            int64_t N, int64_t C, int64_t HW, BnActivation act, float slope, int splits,
                            cudaStream_t stream) {
  check_activation(act, slope, "batchnorm_act_backward");
  if (C <= 0 || N * HW <= 0) return;  // no values: dgamma/dbeta would get += 0, no dx to write
  const Split s = choose_split(C, N * HW, splits, "batchnorm_act_backward");
  const unsigned int blocks = static_cast<unsigned int>(C * s.splits);
  DS_LAUNCH(batchnorm_backward_sums_kernel<T>, blocks, kBatchNormThreads, 0, stream, workspace, dy, y, x, saved_mean,
            saved_invstd, N, C, HW, s.splits, s.chunk, act, slope);
  DS_LAUNCH(batchnorm_backward_dx_kernel<T>, blocks, kBatchNormThreads, 0, stream, dx, dgamma, dbeta, workspace, dy, y, x,
            gamma, saved_mean, saved_invstd, N, C, HW, s.splits, s.chunk, act, slope);
}

template <class T>
void batchnorm_act_forward_eval_t(T* y, const T* x, const float* gamma, const float* beta,
                                const float* running_mean, const float* running_var, int64_t N, int64_t C, int64_t HW,
                                double eps, BnActivation act, float slope, cudaStream_t stream) {
  check_activation(act, slope, "batchnorm_act_forward_eval");
  if (N * C * HW <= 0) return;
  if (N * C > INT_MAX) throw std::invalid_argument("batchnorm_forward_eval: more N*C planes than a grid holds");
  // Small planes (4×4 maps) get one or two warps rather than 256 mostly idle threads.
  const int threads = HW >= 256 ? 256 : static_cast<int>((HW + 31) / 32 * 32);
  DS_LAUNCH(batchnorm_forward_eval_kernel<T>, static_cast<unsigned int>(N * C), threads, 0, stream, y, x, gamma, beta,
            running_mean, running_var, N, C, HW, eps, act, slope);
}

}  // namespace

#define DS_BATCHNORM_DEFINITIONS(T)                                                                                  \
  void batchnorm_act_forward_train(T* y, float* saved_mean, float* saved_invstd, float* running_mean,             \
                                   float* running_var, double* workspace, const T* x, const float* gamma,         \
                                   const float* beta, int64_t N, int64_t C, int64_t HW, double momentum,          \
                                   double eps, BnActivation act, float slope, int splits, cudaStream_t stream) {  \
    batchnorm_act_forward_train_t(y, saved_mean, saved_invstd, running_mean, running_var, workspace, x, gamma,    \
                                  beta, N, C, HW, momentum, eps, act, slope, splits, stream);                     \
  }                                                                                                               \
  void batchnorm_act_backward(T* dx, float* dgamma, float* dbeta, double* workspace, const T* dy, const T* y,     \
                              const T* x, const float* gamma, const float* saved_mean, const float* saved_invstd, \
                              int64_t N, int64_t C, int64_t HW, BnActivation act, float slope, int splits,        \
                              cudaStream_t stream) {                                                              \
    batchnorm_act_backward_t(dx, dgamma, dbeta, workspace, dy, y, x, gamma, saved_mean, saved_invstd, N, C, HW,   \
                             act, slope, splits, stream);                                                         \
  }                                                                                                               \
  void batchnorm_act_forward_eval(T* y, const T* x, const float* gamma, const float* beta,                        \
                                  const float* running_mean, const float* running_var, int64_t N, int64_t C,      \
                                  int64_t HW, double eps, BnActivation act, float slope, cudaStream_t stream) {   \
    batchnorm_act_forward_eval_t(y, x, gamma, beta, running_mean, running_var, N, C, HW, eps, act, slope, stream); \
  }
DS_BATCHNORM_DEFINITIONS(float)
DS_BATCHNORM_DEFINITIONS(bf16)
#undef DS_BATCHNORM_DEFINITIONS

void batchnorm_forward_train(float* y, float* saved_mean, float* saved_invstd, float* running_mean,
                             float* running_var, double* workspace, const float* x, const float* gamma,
                             const float* beta, int64_t N, int64_t C, int64_t HW, double momentum, double eps,
                             cudaStream_t stream) {
  batchnorm_act_forward_train(y, saved_mean, saved_invstd, running_mean, running_var, workspace, x, gamma, beta, N, C,
                              HW, momentum, eps, BnActivation::None, 0.0f, 0, stream);
}

void batchnorm_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, int64_t N, int64_t C, int64_t HW,
                            double eps, cudaStream_t stream) {
  batchnorm_act_forward_eval(y, x, gamma, beta, running_mean, running_var, N, C, HW, eps, BnActivation::None, 0.0f,
                             stream);
}

void batchnorm_backward(float* dx, float* dgamma, float* dbeta, double* workspace, const float* dy, const float* x,
                        const float* gamma, const float* saved_mean, const float* saved_invstd, int64_t N, int64_t C,
                        int64_t HW, cudaStream_t stream) {
  // y is never read when act = None: dy stands in for it.
  batchnorm_act_backward(dx, dgamma, dbeta, workspace, dy, dy, x, gamma, saved_mean, saved_invstd, N, C, HW,
                         BnActivation::None, 0.0f, 0, stream);
}

}  // namespace ds::DS_KNS
