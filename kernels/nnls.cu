// The mel → linear step of `listen` on the GPU: audio/mel_inverse.cpp's projected FISTA with gradient
// restart, one frame per thread, so every frame runs exactly the reference's sequence of double operations
// (the same sums in the same order, the same restart decisions). Why not a block per frame with tree
// reductions or a cuBLAS GEMM for the start: both reorder sums, and the restart test Σ(y − x_new)(x_new − x)
// decides the trajectory by its sign, so a reordered sum can send a frame down a different (equally valid,
// but different) path; one thread per frame keeps the GPU equal to the CPU. The dense start product
// (n_mels² per frame) is under 1% of the iterations' work (200 × (2·nnz(M) + ~6·n_freqs)), so a GEMM would
// buy little. Products feeding sums are __dmul_rn/__dadd_rn, which nvcc never contracts into an FMA (CUDA
// Math API: "will never be merged into a single multiply-add instruction"); double '/' and sqrt are IEEE
// correctly rounded on the device, as on the host, and so is the final sqrtf under the default
// -prec-sqrt=true. So the emulated kernel matches the reference bit for bit, and the device should too.
#include "kernels/nnls.h"

#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kNnlsThreads = 128;

// std::max(v, 0.0) exactly: (v < 0) ? 0 : v (keeps −0.0 and NaN as std::max does; fmax would not).
__device__ __forceinline__ double clip_at_zero(double v) { return v < 0.0 ? 0.0 : v; }

__global__ void nnls_kernel(float* magnitude, double* scratch, const float* mel_power, const float* filterbank,
                            const double* g_pinv, const int* row_begin, const int* row_end, const int* col_first,
                            const int* col_last, int n_mels, int n_freqs, int64_t n_slices, int64_t frames,
                            double step, int iters) {
  const int64_t F = n_slices * frames;
  const int64_t f = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (f >= F) return;
  const int64_t s = f / frames, t = f - s * frames;
  const float* p = mel_power + s * n_mels * frames + t;  // p[m·frames] is the frame's mel m
  // Frame-interleaved scratch: value v of this frame at base[v·F].
  double* x = scratch + f;
  double* x_new = scratch + static_cast<int64_t>(n_freqs) * F + f;
  double* y = scratch + 2 * static_cast<int64_t>(n_freqs) * F + f;
  double* r = scratch + 3 * static_cast<int64_t>(n_freqs) * F + f;  // z at the start, then M y − p
  auto M = [&](int m, int k) { return static_cast<double>(filterbank[static_cast<int64_t>(m) * n_freqs + k]); };

  // Start: the minimum-norm least-squares solution, clipped at 0.
  for (int a = 0; a < n_mels; ++a) {
    double sum = 0.0;
    for (int b = 0; b < n_mels; ++b)
      sum = __dadd_rn(sum, __dmul_rn(g_pinv[static_cast<int64_t>(a) * n_mels + b], static_cast<double>(p[b * frames])));
    r[a * F] = sum;
  }
  // x = max(Mᵀ z, 0): column k gathers its rows in ascending m, as mel_to_linear's scatter adds them.
  for (int k = 0; k < n_freqs; ++k) {
    double sum = 0.0;
    for (int m = col_first[k]; m < col_last[k]; ++m)
      if (k >= row_begin[m] && k < row_end[m]) sum = __dadd_rn(sum, __dmul_rn(M(m, k), r[m * F]));
    const double v = clip_at_zero(sum);
    x[k * F] = v;
    y[k * F] = v;
  }
  double momentum_t = 1.0;
  for (int it = 0; it < iters; ++it) {
    for (int m = 0; m < n_mels; ++m) {  // r = M y − p
      double sum = 0.0;
      for (int k = row_begin[m]; k < row_end[m]; ++k) sum = __dadd_rn(sum, __dmul_rn(M(m, k), y[k * F]));
      r[m * F] = __dsub_rn(sum, static_cast<double>(p[m * frames]));
    }
    // g = Mᵀ r bin by bin, fused with the projected step (each g_k is complete before it is used, and the
    // restart sum still runs over ascending k).
    double restart_test = 0.0;
    for (int k = 0; k < n_freqs; ++k) {
      double g = 0.0;
      for (int m = col_first[k]; m < col_last[k]; ++m)
        if (k >= row_begin[m] && k < row_end[m]) g = __dadd_rn(g, __dmul_rn(M(m, k), r[m * F]));
      const double yk = y[k * F], xk = x[k * F];
      const double xn = clip_at_zero(__dsub_rn(yk, __dmul_rn(step, g)));
      x_new[k * F] = xn;
      restart_test = __dadd_rn(restart_test, __dmul_rn(__dsub_rn(yk, xn), __dsub_rn(xn, xk)));
    }
    const double next_t =
        __dmul_rn(0.5, __dadd_rn(1.0, sqrt(__dadd_rn(1.0, __dmul_rn(__dmul_rn(4.0, momentum_t), momentum_t)))));
    if (restart_test > 0.0) {  // momentum points uphill: drop it
      momentum_t = 1.0;
      for (int k = 0; k < n_freqs; ++k) y[k * F] = x_new[k * F];
    } else {
      const double beta = (momentum_t - 1.0) / next_t;
      for (int k = 0; k < n_freqs; ++k) {
        const double xn = x_new[k * F];
        y[k * F] = __dadd_rn(xn, __dmul_rn(beta, __dsub_rn(xn, x[k * F])));
      }
      momentum_t = next_t;
    }
    double* swap = x;  // x.swap(x_new)
    x = x_new;
    x_new = swap;
  }
  float* out = magnitude + f * n_freqs;
  for (int k = 0; k < n_freqs; ++k) out[k] = sqrtf(static_cast<float>(x[k * F]));
}

__global__ void zero_kernel(float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 0.0f;
}

}  // namespace

void nnls_mel_to_linear(float* magnitude, double* scratch, const float* mel_power, const float* filterbank,
                        const double* g_pinv, const int* row_begin, const int* row_end, const int* col_first,
                        const int* col_last, int n_mels, int n_freqs, int64_t n_slices, int64_t frames,
                        double step, int iters, bool explains_nothing, cudaStream_t stream) {
  const int64_t F = n_slices * frames;
  if (F <= 0 || n_freqs <= 0) return;
  if (explains_nothing) {
    DS_LAUNCH(zero_kernel, blocks_for(F * n_freqs, 256), 256, 0, stream, magnitude, F * n_freqs);
    return;
  }
  DS_LAUNCH(nnls_kernel, blocks_for(F, kNnlsThreads), kNnlsThreads, 0, stream, magnitude, scratch, mel_power,
            filterbank, g_pinv, row_begin, row_end, col_first, col_last, n_mels, n_freqs, n_slices, frames, step,
            iters);
}

}  // namespace ds::DS_KNS
