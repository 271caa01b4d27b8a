// The GPU mel path: slices of audio already on the device → mel images, as audio/mel_cpu.h's mel_image
// computes them. Framing + window (inside the R2C as cuFFT's LTO load callback, or the frame_window
// kernel of kernels/spectral.cu: MelFraming below) → batched R2C cuFFT → |X|² (inside the R2C as its
// LTO store callback, or the power_spectrum kernel) → mel projection with cuBLAS → power_to_db per slice (→ antialiased dB resize for `seed`) → [−1, 1].
// The argument sets of the two library calls are plain structs built by functions below, so the
// emulated pipeline test (tests/test_emu_spectral.cpp) feeds the very same numbers to its CPU
// stand-ins (kissfft, a column-major GEMM) that MelGpu hands to cuFFT and cuBLAS.
// Shapes: device_audio: slice s at device_audio + s·signal_stride, p.slice_samples() samples each;
// out_image n_slices × image_height × image_width (row 0 = lowest mel band, column 0 = first frame).
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <cublas_v2.h>
#include <cufft.h>

#include "audio/mel_params.h"
#include "engine/core/device_buffer.h"
#include "kernels/stft_framing.h"

namespace ds {

// cufftPlanMany's arguments for the batched STFT, exactly as MelGpu passes them (rank 1, CUFFT_R2C):
// transform b reads its n reals at frames[b·idist + x·istride] and writes its n/2 + 1 bins at
// spectrum[b·odist + x·ostride]. inembed/onembed are passed non-null (see plan_for in mel_gpu.cpp), so
// cuFFT uses these strides and distances (tests/cufft_stand_in.h honours the same rules).
struct StftFftLayout {
  int n = 0;                     // n_fft
  int inembed = 0, onembed = 0;  // storage sizes of one input / output signal (rank 1: only non-null matters)
  int istride = 1, idist = 0;    // in floats
  int ostride = 1, odist = 0;    // in complex values
  int batch = 0;                 // n_slices · frames
};
StftFftLayout stft_fft_layout(const MelParams& p, int64_t n_slices);

// cublasSgemmStridedBatched arguments of the mel projection, one batch entry per slice:
//   mel_s (n_mels × frames, row-major) = filterbank (n_mels × n_freqs, row-major) · power_sᵀ,
//   power_s = the slice's frames × n_freqs rows of |X|² (row-major, as the R2C writes them).
// cuBLAS is column-major: see mel_projection_gemm in mel_gpu.cpp for which operand is which.
struct MelProjectionGemm {
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  int m = 0, n = 0, k = 0;
  int lda = 0, ldb = 0, ldc = 0;
  long long stride_a = 0, stride_b = 0, stride_c = 0;  // elements between consecutive batch entries
  int batch_count = 0;
  // Operand A is the power spectrum, B the filterbank, C the mel power (documented in mel_gpu.cpp).
};
MelProjectionGemm mel_projection_gemm(const MelParams& p, int64_t n_slices);

// How MelGpu feeds the R2C and takes its output (issue 9).
//   LoadCallback (the default): cuFFT reads each frame element through an LTO load callback
//     (kernels/lto/stft_framing_callback.cu) computing window · padded sample from the audio itself, so
//     the frame rows are neither written nor read (nor allocated), and hands each bin to an LTO store
//     callback that writes |X|² straight into the power buffer, so the complex spectrum is not stored
//     and read back by a power kernel. The two come as a pair: where cuFFT cannot take them (no
//     nvJitLink, an old driver, a GPU the IR cannot link for: cufftXtSetJITCallback or the plan fails),
//     MelGpu prints one line and uses Kernel. DARKSTAR_MEL_FRAMING=kernel forces Kernel.
//   Kernel: kcuda::frame_window writes the rows, cuFFT reads them and writes the spectrum,
//     kcuda::power_spectrum reads it (the path before issue 9).
// Both compute each input element and each power with kernels/stft_framing.h, bit for bit the same
// operations.
enum class MelFraming { LoadCallback, Kernel };
const char* mel_framing_name(MelFraming f);  // "load_callback" / "kernel"

class MelGpu {
 public:
  // Builds the window, filterbank, buffers and the cuFFT plan for up to max_slices per call. Throws
  // std::invalid_argument for parameters the GPU path does not implement (center=false).
  // `framing` is what is asked for; framing() says what runs (see MelFraming).
  MelGpu(const MelParams& p, int64_t max_slices, MelFraming framing = MelFraming::LoadCallback);
  ~MelGpu();
  MelGpu(const MelGpu&) = delete;
  MelGpu& operator=(const MelGpu&) = delete;

  // Enqueues the whole pipeline on the context's stream (no host synchronisation). slice_ref_out:
  // n_slices floats (device) receiving each slice's dB reference (a power), or null.
  void compute(float* out_image, const float* device_audio, int64_t n_slices, int64_t signal_stride,
               float* slice_ref_out = nullptr);

  const MelParams& params() const { return p_; }
  int64_t max_slices() const { return max_slices_; }
  int64_t frames() const { return frames_; }
  // What the plans made so far use: LoadCallback only while every one of them has the callbacks.
  MelFraming framing() const { return load_callback_ ? MelFraming::LoadCallback : MelFraming::Kernel; }
  // Why the callback is not used ("" when it is): forced by the caller or the environment, or the
  // failing call and its cufftResult.
  const std::string& framing_note() const { return framing_note_; }

 private:
  struct Plan {
    cufftHandle handle = 0;
    bool load_callback = false;  // made with the LTO load and store callbacks: compute() runs no framing
                                 // or power kernel
  };
  Plan plan_for(int64_t n_slices);
  bool make_callback_plan(cufftHandle* plan, const StftFftLayout& l);  // false: fell back (one line printed)
  cufftHandle make_kernel_plan(const StftFftLayout& l);  // a plain R2C plan over the frame rows
  void allocate_frame_rows();  // frame_rows_, for the kernel path (once, when its first plan is made)
  StftFraming callback_framing(const float* device_audio, int64_t signal_stride) const;
  // Once per MelGpu with the callbacks: one slice through both paths, powers compared; on a
  // difference the callbacks are dropped (one line) and every plan remade without them.
  void check_load_callback();

  MelParams p_;
  int64_t max_slices_ = 0;
  int64_t frames_ = 0;  // STFT frames per slice
  DeviceBuffer<float> window_;       // n_fft
  DeviceBuffer<float> filterbank_;   // n_mels × n_freqs
  DeviceBuffer<float> frame_rows_;   // max_slices·frames × n_fft; the kernel path only
  DeviceBuffer<float2> spectrum_;    // max_slices·frames × n_freqs; the R2C's odata on both paths (see compute)
  DeviceBuffer<float> power_;        // max_slices·frames × n_freqs
  DeviceBuffer<float> mel_;          // max_slices × n_mels × frames (mel power, then dB, then [−1, 1])
  DeviceBuffer<double> resize_tmp_;  // seed only: max_slices × n_mels × image_width (after the width pass)
  DeviceBuffer<StftFraming> framing_;  // 1: the load callback's callerInfo (audio pointer set per compute)
  bool load_callback_ = false;         // new plans get the callback
  std::string framing_note_;
  // One plan per batch size met (the full batch, and the last, shorter batch of a prepare run): a
  // plan's batch is fixed when it is made.
  std::map<int64_t, Plan> plans_;
};

// Times MelGpu::compute on `audio_seconds` of audio already on the device (random noise, cut into
// p.slice_samples() slices, all in one batch unless slices_per_batch > 0) with CUDA events, `repeats`
// runs after one warm-up, and returns × realtime (audio seconds per second of GPU time). Throws
// ds::CudaError without a GPU.
double bench_mel_gpu(const MelParams& p, double audio_seconds = 3600.0, int repeats = 10,
                     int64_t slices_per_batch = 0);

}  // namespace ds
