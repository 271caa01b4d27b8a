// Launchers of spectral.cu (the custom kernels of the GPU mel path: framing + window, power, dB, the
// dB→[−1, 1] map, the antialiased resize), declared for both builds: ds::kcuda (GPU) and ds::kemu
// (emulated on the CPU). Same meaning as audio/mel_cpu.h; cuFFT and cuBLAS do the rest (audio/mel_gpu.h).
// Shapes: audio: signal s is audio[s·signal_stride + 0 .. L); frames (n_signals·n_frames)×n_fft, row
// s·n_frames + t is frame t of signal s; spectrum/power count values; mel_power, out n_slices×per_slice
// (per_slice = n_mels·frames); slice_ref_out n_slices; resize: in n_images×in_h×in_w, out n_images×out_h×out_w.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>
#include <vector_types.h>  // float2: cufftComplex is a typedef of it (cuComplex.h)

#include "kernels/stft_framing.h"

#define DS_SPECTRAL_LAUNCHERS(NS)                                                                               \
  namespace ds::NS {                                                                                            \
  /* frames[s·n_frames + t, j] = window[j] · x_s[t·hop + j − n_fft/2], x_s padded at its own edges (center=True):\
     pad_mode 0: zeros (librosa >= 0.9), 1: reflect without repeating the edge (numpy 'reflect');          \
     each element is kernels/stft_framing.h's stft_frame_element.                                          */ \
  void frame_window(float* frames, const float* audio, const float* window, int64_t n_signals, int64_t L,     \
                    int64_t signal_stride, int n_fft, int hop, int n_frames, int pad_mode, cudaStream_t stream); \
  /* *dst = value (dst in device memory), on the stream: the cuFFT load callback's callerInfo, set before \
     each transform without a host synchronisation.                                                     */ \
  void store_stft_framing(StftFraming* dst, const StftFraming& value, cudaStream_t stream);               \
  /* power[i] = re² + im² of spectrum[i].                                                                     */ \
  void power_spectrum(float* power, const float2* spectrum, int64_t count, cudaStream_t stream);                \
  /* Per slice (one block each, deterministic), in double: ref = fixed_ref if >= 0, else the slice's max;    \
     out = max(10·log10(max(S, amin)) − 10·log10(max(ref, amin)), slice max of that − top_db) (no clip when   \
     top_db <= 0); slice_ref_out[s] = ref (may be null). out may alias mel_power.                            */ \
  void power_to_db(float* out, float* slice_ref_out, const float* mel_power, int64_t n_slices, int64_t per_slice, \
                   double amin, double top_db, double fixed_ref, cudaStream_t stream);                         \
  /* out = db / top_db · 2 + 1 in double (audio/mel_params.h's map of [−top_db, 0] onto [−1, 1]); may alias. */ \
  void db_to_unit(float* out, const float* db, int64_t n, double top_db, cudaStream_t stream);                 \
  /* Separable antialiased (triangle, PIL/torch antialias=True style, half-pixel centres) resize of each       \
     in_h×in_w image to out_h×out_w: rows (width) first, then columns, in double, as audio/mel_cpu.h's        \
     resize_image_antialiased. tmp holds n_images×in_h×out_w doubles (the width pass, kept in double).        */ \
  void resize_antialiased(float* out, double* tmp, const float* in, int64_t n_images, int in_h, int in_w,       \
                          int out_h, int out_w, cudaStream_t stream);                                          \
  }
DS_SPECTRAL_LAUNCHERS(kcuda)
DS_SPECTRAL_LAUNCHERS(kemu)
#undef DS_SPECTRAL_LAUNCHERS
