// MelGpu::compute (audio/mel_gpu.cpp) run on the CPU: the emulated kernels of kernels/spectral.cu in the
// same order, kissfft standing in for cuFFT (tests/cufft_stand_in.h) and a column-major float GEMM for
// cuBLAS, each fed the very argument sets MelGpu hands to the libraries (stft_fft_layout,
// mel_projection_gemm), with the framing and |X|² either as kernels or as cuFFT's load and store
// callbacks (issue 9).
// Every intermediate buffer starts as NaN, so an element a step fails to write shows.
#pragma once
#include <doctest/doctest.h>
#include <cublas_v2.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "audio/mel_cpu.h"
#include "audio/mel_gpu.h"
#include "audio/mel_params.h"
#include "kernels/spectral.h"
#include "kernels/stft_framing.h"
#include "tests/cufft_stand_in.h"
#include "tests/test_util.h"

namespace ds::test {

// cublasSgemmStridedBatched's documented meaning, column-major (cuBLAS docs, gemmStridedBatched):
// C_b[i + j·ldc] = α·Σ_l op(A_b)[i, l]·op(B_b)[l, j] + β·C_b[i + j·ldc], op(X)[r, c] = X[r + c·ld] for N,
// X[c + r·ld] for T, here with α = 1, β = 0. Accumulated in float, as a GPU GEMM does.
inline void sgemm_strided_batched_reference(const MelProjectionGemm& g, const float* A, const float* B, float* C) {
  for (int b = 0; b < g.batch_count; ++b) {
    const float* a = A + b * g.stride_a;
    const float* bb = B + b * g.stride_b;
    float* c = C + b * g.stride_c;
    for (int i = 0; i < g.m; ++i)
      for (int j = 0; j < g.n; ++j) {
        float acc = 0.0f;
        for (int l = 0; l < g.k; ++l) {
          const float av = g.transa == CUBLAS_OP_N ? a[i + int64_t(l) * g.lda] : a[l + int64_t(i) * g.lda];
          const float bv = g.transb == CUBLAS_OP_N ? bb[l + int64_t(j) * g.ldb] : bb[j + int64_t(l) * g.ldb];
          acc += av * bv;
        }
        c[i + int64_t(j) * g.ldc] = acc;
      }
  }
}

// The images MelGpu::compute(out, audio, n_slices, stride, refs) would write: n_slices ×
// image_height × image_width; refs_out (if given) receives each slice's dB reference.
// framing: as MelGpu's two paths. Kernel: kemu::frame_window writes the rows the stand-in R2C reads,
// the R2C writes the spectrum and kemu::power_spectrum makes the power of it. LoadCallback:
// kemu::store_stft_framing fills the callerInfo as MelGpu::compute does, the stand-in R2C takes every
// input element from kernels/stft_framing.h's stft_framing_load (the body of the LTO load callback) and
// hands every bin to stft_power_store (the body of the LTO store callback) with the power buffer as its
// callerInfo, as MelGpu sets it; no power kernel runs. frame_rows_out, spectrum_out and power_out (if
// given) receive those buffers either way, so a test sees the rows and the spectrum left NaN (unread,
// unwritten) on the callback path.
inline std::vector<float> mel_gpu_emulated(const MelParams& p, const float* audio, int64_t n_slices, int64_t stride,
                                           std::vector<float>* refs_out = nullptr,
                                           MelFraming framing = MelFraming::Kernel,
                                           std::vector<float>* frame_rows_out = nullptr,
                                           std::vector<float2>* spectrum_out = nullptr,
                                           std::vector<float>* power_out = nullptr) {
  const int64_t L = p.slice_samples();
  const int64_t frames = p.stft_frames(L);
  const int64_t rows = n_slices * frames;
  const std::vector<float> window = hann_window_periodic(p.n_fft);
  const std::vector<float> filterbank = mel_filterbank(p);

  std::vector<float> frame_rows(static_cast<size_t>(rows * p.n_fft), kNaN);
  StftFraming callback_info;  // the callerInfo ("device" memory of the emulation)
  R2cLoadCallback callback;
  if (framing == MelFraming::LoadCallback) {
    StftFraming f;
    f.audio = audio;
    f.window = window.data();
    f.L = L;
    f.signal_stride = stride;
    f.n_fft = p.n_fft;
    f.hop = p.hop;
    f.n_frames = static_cast<int>(frames);
    f.pad_mode = p.pad_mode == "reflect" ? 1 : 0;
    kemu::store_stft_framing(&callback_info, f, nullptr);
    callback.load = &stft_framing_load;
    callback.caller_info = &callback_info;
  } else {
    kemu::frame_window(frame_rows.data(), audio, window.data(), n_slices, L, stride, p.n_fft, p.hop,
                       static_cast<int>(frames), p.pad_mode == "reflect" ? 1 : 0, nullptr);
  }
  const StftFftLayout layout = stft_fft_layout(p, n_slices);
  REQUIRE(layout.batch == rows);
  REQUIRE(layout.inembed >= layout.n);            // non-null embeds: the advanced layout is used
  REQUIRE(layout.onembed >= layout.n / 2 + 1);
  std::vector<float2> spectrum(static_cast<size_t>(rows * p.n_freqs()), float2{kNaN, kNaN});
  std::vector<float> power(static_cast<size_t>(rows * p.n_freqs()), kNaN);
  R2cStoreCallback store;
  if (framing == MelFraming::LoadCallback) {
    store.store = &stft_power_store;
    store.caller_info = power.data();
  }
  r2c_stand_in(layout, frame_rows.data(), int64_t(frame_rows.size()), spectrum.data(), int64_t(spectrum.size()),
               callback, store);
  if (frame_rows_out) *frame_rows_out = frame_rows;
  if (spectrum_out) *spectrum_out = spectrum;
  if (framing != MelFraming::LoadCallback) kemu::power_spectrum(power.data(), spectrum.data(), rows * p.n_freqs(), nullptr);
  if (power_out) *power_out = power;

  const MelProjectionGemm gemm = mel_projection_gemm(p, n_slices);
  std::vector<float> mel(static_cast<size_t>(n_slices * p.n_mels * frames), kNaN);
  sgemm_strided_batched_reference(gemm, power.data(), filterbank.data(), mel.data());
  const int64_t per_slice = p.n_mels * frames;
  std::vector<float> refs(static_cast<size_t>(n_slices), kNaN);
  kemu::power_to_db(mel.data(), refs.data(), mel.data(), n_slices, per_slice, p.amin, p.top_db, p.ref, nullptr);

  const int64_t image_size = int64_t(p.image_height()) * p.image_width();
  std::vector<float> image(static_cast<size_t>(n_slices * image_size), kNaN);
  const float* db = mel.data();
  if (p.resize_w) {
    std::vector<double> tmp(static_cast<size_t>(n_slices * p.n_mels * p.image_width()), std::nan(""));
    kemu::resize_antialiased(image.data(), tmp.data(), mel.data(), n_slices, p.n_mels, static_cast<int>(frames),
                             p.image_height(), p.image_width(), nullptr);
    db = image.data();
  }
  kemu::db_to_unit(image.data(), db, n_slices * image_size, p.top_db, nullptr);
  if (refs_out) *refs_out = refs;
  return image;
}

}  // namespace ds::test
