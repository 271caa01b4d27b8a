// Launchers of griffin_lim.cu (the custom kernels of fast Griffin-Lim on the GPU, audio/griffin_lim_gpu.h),
// declared for both builds: ds::kcuda (GPU) and ds::kemu (emulated on the CPU). Same meaning as
// audio/griffin_lim.h; cuFFT does the transforms.
// Shapes: a spectrum (angles, tprev, rebuilt) is frames × n_freqs complex, the magnitude beside it
// frames × n_freqs (index i = t·n_freqs + k); magnitude_in of transpose_magnitude n_freqs × frames
// (audio/griffin_lim.h's input layout); frames of overlap_add n_frames × n_fft (a batched C2R's output);
// out and window_sum_square of overlap_add `length` samples.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>
#include <vector_types.h>  // float2: cufftComplex is a typedef of it (cuComplex.h)

#define DS_GRIFFIN_LIM_LAUNCHERS(NS)                                                                            \
  namespace ds::NS {                                                                                            \
  /* audio/griffin_lim.h's griffin_lim_phase_update on float2 (re = x, im = y), the same float expressions in  \
     the same order: angles = magnitude · a/(|a| + FLT_MIN), a = rebuilt − momentum/(1 + momentum) · tprev;   \
     tprev = rebuilt. magnitude may be null (unit phasors). tprev may not alias rebuilt.                     */ \
  void griffin_lim_phase_update(float2* angles, float2* tprev, const float2* rebuilt, const float* magnitude,   \
                                int64_t n, float momentum, cudaStream_t stream);                                \
  /* istft's overlap-add after an unnormalised batched C2R: for every output sample i < length, with          \
     j = start + i (start = n_fft/2 when centred, else 0) and full = n_fft + hop·(n_frames − 1):              \
       y = Σ_t frames[t, j − t·hop] · (window[j − t·hop] · (1/n_fft)), t ascending over the frames covering j; \
       out[i] = window_sum_square[i] > FLT_MIN ? y / window_sum_square[i] : y   (0 where j >= full).           \
     A gather (each sample sums its own frames in a fixed order): deterministic, no atomics.                 \
     window_sum_square: the overlap-added window² at j, precomputed per output sample (istft_window_sum_square \
     in audio/griffin_lim_gpu.h).                                                                           */ \
  void overlap_add(float* out, const float* frames, const float* window, const float* window_sum_square,        \
                   int64_t n_frames, int n_fft, int hop, int64_t start, int64_t length, cudaStream_t stream);   \
  /* overlap_add of n_signals signals at once: signal s reads frames + s·n_frames·n_fft and writes             \
     out + s·length, all with the same window_sum_square (same frames and length); n_signals = 1 is           \
     overlap_add.                                                                                             */ \
  void overlap_add_batched(float* out, const float* frames, const float* window, const float* window_sum_square, \
                           int64_t n_signals, int64_t n_frames, int n_fft, int hop, int64_t start, int64_t length, \
                           cudaStream_t stream);                                                               \
  /* angles[i] = magnitude[i] · (cos θ, sin θ), θ = (float)2π · u_i, u_i the [0, 1) uniform of component i % 4 \
     of Philox tuple i / 4 of (seed, stream 0): ds::Philox(seed, 0).fill_uniform's layout, as griffin_lim.   */ \
  void random_phase_init(float2* angles, const float* magnitude, uint64_t seed, int64_t n, cudaStream_t stream); \
  /* angles[i] = (magnitude[i], 0): griffin_lim's random_init = false (librosa init=None).                   */ \
  void zero_phase_init(float2* angles, const float* magnitude, int64_t n, cudaStream_t stream);                 \
  /* spectrum[t, 0].y = spectrum[t, n_freqs − 1].y = 0 for every frame t (n_freqs = n_fft/2 + 1): the DC and    \
     Nyquist bins made Hermitian before a C2R, whose input cuFFT defines only for Hermitian data. kissfft and \
     numpy's irfft read only the real parts of those bins, so this changes nothing they compute.            */ \
  void clear_edge_imaginary(float2* spectrum, int64_t frames, int n_freqs, cudaStream_t stream);               \
  /* magnitude[t·n_freqs + k] = magnitude_in[k·frames + t].                                                   */ \
  void transpose_magnitude(float* magnitude, const float* magnitude_in, int n_freqs, int64_t frames,            \
                           cudaStream_t stream);                                                                \
  }
DS_GRIFFIN_LIM_LAUNCHERS(kcuda)
DS_GRIFFIN_LIM_LAUNCHERS(kemu)
#undef DS_GRIFFIN_LIM_LAUNCHERS
