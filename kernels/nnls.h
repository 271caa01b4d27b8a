// Launcher of nnls.cu (mel power → linear magnitude on the GPU, audio/mel_inverse_gpu.h), declared for
// both builds: ds::kcuda (GPU) and ds::kemu (emulated on the CPU). Same algorithm and arithmetic as
// audio/mel_inverse.cpp's mel_to_linear (one frame per thread, in double, in the reference's order).
// Shapes: mel_power n_slices × n_mels × frames (each slice librosa's layout); magnitude n_slices × frames
// × n_freqs (Griffin-Lim's spectrum layout, audio/griffin_lim.h); filterbank n_mels × n_freqs (float);
// g_pinv n_mels × n_mels; row_begin/row_end n_mels; col_first/col_last n_freqs; scratch
// nnls_scratch_doubles(...) doubles.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace ds {
// Doubles of scratch nnls_mel_to_linear needs for n_frames frames in one launch: x, x_new and y
// (n_freqs each) and the mel residual (n_mels) per frame, frame-interleaved (value v of frame f at
// v·n_frames + f) so neighbouring threads touch neighbouring addresses.
inline int64_t nnls_scratch_doubles(int n_mels, int n_freqs, int64_t n_frames) {
  return n_frames * (3 * static_cast<int64_t>(n_freqs) + n_mels);
}
}  // namespace ds

#define DS_NNLS_LAUNCHERS(NS)                                                                                   \
  namespace ds::NS {                                                                                            \
  /* For every frame f = s·frames + t of the batch (thread f), with p = mel_power[s, :, t] and                  \
     M = filterbank (row m non-zero only in [row_begin[m], row_end[m]); column k's rows are those m in          \
     [col_first[k], col_last[k]) with row_begin[m] <= k < row_end[m]):                                          \
       x = max(Mᵀ (g_pinv p), 0); y = x; then `iters` times the projected FISTA step with gradient restart of   \
       mel_to_linear_power (x_new = max(y − step·Mᵀ(M y − p), 0); restart when Σ(y − x_new)(x_new − x) > 0),   \
     every sum in double from 0 in ascending index order, products never fused into an FMA;                    \
       magnitude[f, k] = sqrtf((float)x[k]).                                                                    \
     explains_nothing (an all-zero filterbank, NnlsPlan): magnitude = 0 and g_pinv may be null.              */ \
  void nnls_mel_to_linear(float* magnitude, double* scratch, const float* mel_power, const float* filterbank,   \
                          const double* g_pinv, const int* row_begin, const int* row_end, const int* col_first, \
                          const int* col_last, int n_mels, int n_freqs, int64_t n_slices, int64_t frames,       \
                          double step, int iters, bool explains_nothing, cudaStream_t stream);                  \
  }
DS_NNLS_LAUNCHERS(kcuda)
DS_NNLS_LAUNCHERS(kemu)
#undef DS_NNLS_LAUNCHERS
