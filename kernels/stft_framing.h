// The STFT's framing arithmetic, one copy for every place that computes it: element j of frame row
// `row` of the batched R2C's input is window[j] · x_s[t·hop + j − n_fft/2] (row = s·n_frames + t, x_s
// padded at its own edges, center=True). Used by kcuda/kemu::frame_window (kernels/spectral.cu, which
// writes the rows), by the cuFFT LTO load callback that hands the same values straight to the FFT
// (kernels/lto/stft_framing_callback.cu, issue 9) and by the CPU emulation of that callback
// (tests/mel_gpu_emulated.h), so the three compute the same float operations in the same order.
// Likewise the power |X|² of one bin: kcuda/kemu::power_spectrum and the LTO store callback that
// writes it straight from the FFT's output (so the complex spectrum is never stored) share stft_power.
#pragma once
#include <vector_types.h>  // float2, which cufftComplex is (cuComplex.h: cuFloatComplex = float2)

#include <cstdint>

#if defined(__CUDACC__)
#define DS_FRAMING_HD __host__ __device__ __forceinline__
#else
#define DS_FRAMING_HD inline
#endif

namespace ds {

// What the framing reads. In device memory it is the callback's callerInfo (MelGpu keeps one,
// updated on the stream before each transform). No padding bytes (2 pointers, 2 int64, 4 int), so a
// launch log that records it by value compares equal for equal fields.
struct StftFraming {
  const float* audio = nullptr;   // signal s starts at audio + s·signal_stride
  const float* window = nullptr;  // n_fft values
  int64_t L = 0;                  // samples per signal
  int64_t signal_stride = 0;
  int n_fft = 0, hop = 0, n_frames = 0;
  int pad_mode = 0;  // 0: zeros (librosa >= 0.9), 1: numpy 'reflect' (mirror without repeating the edge)
};

// Index into a signal of length L padded by numpy's 'reflect', applied as often as needed: the
// reflection is periodic with period 2(L − 1).
DS_FRAMING_HD int64_t stft_reflect_index(int64_t i, int64_t L) {
  if (L == 1) return 0;
  const int64_t period = 2 * (L - 1);
  i %= period;
  if (i < 0) i += period;
  return i < L ? i : period - i;
}

// Row `row` (signal s = row / n_frames, frame t): returns x_s and sets *start to the padded-signal
// index of column 0, relative to x_s[0].
DS_FRAMING_HD const float* stft_frame_row(const StftFraming& f, int64_t row, int64_t* start) {
  const int64_t signal = row / f.n_frames, t = row - signal * f.n_frames;
  *start = t * f.hop - f.n_fft / 2;
  return f.audio + signal * f.signal_stride;
}

// Column j of a row found by stft_frame_row: window[j] · (sample, or its padding). One float multiply.
DS_FRAMING_HD float stft_frame_element(const StftFraming& f, const float* x, int64_t start, int j) {
  const int64_t i = start + j;
  float v = 0.0f;
  if (i >= 0 && i < f.L) {
    v = x[i];
  } else if (f.pad_mode == 1) {
    v = x[stft_reflect_index(i, f.L)];
  }
  return f.window[j] * v;
}

// Element `offset` of the R2C's input as MelGpu lays it out (stft_fft_layout: istride 1, idist n_fft,
// so offset = row·n_fft + j).
DS_FRAMING_HD float stft_framed_input(const StftFraming& f, unsigned long long offset) {
  const int64_t row = static_cast<int64_t>(offset / static_cast<unsigned long long>(f.n_fft));
  const int j = static_cast<int>(static_cast<int64_t>(offset) - row * f.n_fft);
  int64_t start = 0;
  const float* x = stft_frame_row(f, row, &start);
  return stft_frame_element(f, x, start, j);
}

// The load callback's body, with cuFFT's LTO load-callback signature for real input
// (cufftJITCallbackLoadR in cufftXt.h, CUDA 13.0: "typedef cufftReal (*cufftJITCallbackLoadR)(void
// *dataIn, unsigned long long offset, void *callerInfo, void *sharedPointer)"; the comment above those
// typedefs: "LTO callbacks (notice the different offset type vs. legacy callbacks)"). dataIn is the
// idata of cufftExecR2C, not read: the samples come from the StftFraming that callerInfo points to.
// sharedPointer is unused (no shared memory is requested with cufftXtSetCallbackSharedSize).
DS_FRAMING_HD float stft_framing_load(void* dataIn, unsigned long long offset, void* callerInfo,
                                      void* sharedPointer) {
  (void)dataIn;
  (void)sharedPointer;
  return stft_framed_input(*static_cast<const StftFraming*>(callerInfo), offset);
}

// |X|² of one bin: re·re + im·im, in this order (the kernel and the store callback both call it).
DS_FRAMING_HD float stft_power(float2 z) { return z.x * z.x + z.y * z.y; }

// The store callback's body, with cuFFT's LTO store-callback signature for complex output
// (cufftJITCallbackStoreC in cufftXt.h, CUDA 13.0: "typedef void (*cufftJITCallbackStoreC)(void *dataOut,
// unsigned long long offset, cufftComplex element, void *callerInfo, void *sharedPointer)"). callerInfo
// is the power buffer itself (MelGpu hands power_ as the callback's caller_info), so bin `offset` of
// the R2C's output goes to power[offset]; dataOut, the odata of cufftExecR2C, is not written.
// What `offset` is for this plan: the element's index from the start of odata, counted in complex
// values, b·odist + x·ostride for bin x of transform b under the advanced layout ("offset: offset of the
// output element ... in elements", NVIDIA's LTO store-callback sample writes `out[offset]` into dataOut,
// cuFFT/lto_callback_window_1d/src/r2c_c2r_padding_lto_store_callback_device.cu; audio/mel_gpu.cpp
// cites the rest). With stft_fft_layout's ostride 1 and odist n_freqs it is row·n_freqs + x: exactly
// the index power_spectrum writes, so the GEMM reads the same buffer either way.
DS_FRAMING_HD void stft_power_store(void* dataOut, unsigned long long offset, float2 element, void* callerInfo,
                                    void* sharedPointer) {
  (void)dataOut;
  (void)sharedPointer;
  static_cast<float*>(callerInfo)[offset] = stft_power(element);
}

}  // namespace ds
