// Spectral kernels of the GPU mel path (audio/mel_gpu.cpp): fused center padding + framing + window
// into the rows a batched R2C cuFFT transforms, |X|², power_to_db with a per-slice reference, the
// dB→[−1, 1] map and the antialiased resize of the `seed` layout. The float expressions are those of
// audio/mel_cpu.h, in the same order, so the emulated kernels equal the reference bit for bit.
#include "kernels/spectral.h"

#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kSpectralThreads = 256;
constexpr int kReduceThreads = 256;  // power_to_db: one block per slice; a power of two for the tree

// Index into a signal of length L padded by numpy's 'reflect' (mirror without repeating the edge),
// applied as often as needed: the reflection is periodic with period 2(L − 1).
__device__ __forceinline__ int64_t reflect_index(int64_t i, int64_t L) {
  if (L == 1) return 0;
  const int64_t period = 2 * (L - 1);
  i %= period;
  if (i < 0) i += period;
  return i < L ? i : period - i;
}

__global__ void frame_window_kernel(float* frames, const float* audio, const float* window, int64_t n_signals,
                                    int64_t L, int64_t signal_stride, int n_fft, int hop, int n_frames,
                                    int pad_mode) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_signals * n_frames * n_fft) return;
  const int64_t row = k / n_fft;
  const int j = static_cast<int>(k - row * n_fft);
  const int64_t signal = row / n_frames, t = row - signal * n_frames;
  int64_t i = t * hop + j - n_fft / 2;
  float x = 0.0f;
  if (i >= 0 && i < L) {
    x = audio[signal * signal_stride + i];
  } else if (pad_mode == 1) {
    x = audio[signal * signal_stride + reflect_index(i, L)];
  }
  frames[k] = window[j] * x;
}

__global__ void power_spectrum_kernel(float* power, const float2* spectrum, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const float2 z = spectrum[i];
  power[i] = z.x * z.x + z.y * z.y;
}

// Block s owns slice s: a strided max per thread, a shared-memory tree (fixed shape, so the same
// result on every run), then every element is written from the block-wide values.
__global__ void power_to_db_kernel(float* out, float* slice_ref_out, const float* mel_power, int64_t per_slice,
                                   float amin, float top_db, float fixed_ref) {
  DS_SHARED(float, partial_max, kReduceThreads);
  const int64_t slice = blockIdx.x;
  const float* in = mel_power + slice * per_slice;
  float* o = out + slice * per_slice;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < per_slice; i += blockDim.x) m = fmaxf(m, in[i]);
  partial_max[threadIdx.x] = m;
  __syncthreads();
  for (int width = kReduceThreads / 2; width > 0; width /= 2) {
    if (static_cast<int>(threadIdx.x) < width)
      partial_max[threadIdx.x] = fmaxf(partial_max[threadIdx.x], partial_max[threadIdx.x + width]);
    __syncthreads();
  }
  const float slice_max = partial_max[0];
  const float ref = fixed_ref >= 0.0f ? fixed_ref : slice_max;
  const float ref_db = 10.0f * log10f(fmaxf(ref, amin));
  // log10 is monotone, so the largest dB value of the slice is that of its largest power.
  const float floor_db = (10.0f * log10f(fmaxf(slice_max, amin)) - ref_db) - top_db;
  for (int64_t i = threadIdx.x; i < per_slice; i += blockDim.x) {
    const float db = 10.0f * log10f(fmaxf(in[i], amin)) - ref_db;
    o[i] = fmaxf(db, floor_db);
  }
  if (threadIdx.x == 0 && slice_ref_out) slice_ref_out[slice] = ref;
}

__global__ void db_to_unit_kernel(float* out, const float* db, int64_t n, float scale) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = db[i] * scale + 1.0f;
}

}  // namespace

void frame_window(float* frames, const float* audio, const float* window, int64_t n_signals, int64_t L,
                  int64_t signal_stride, int n_fft, int hop, int n_frames, int pad_mode, cudaStream_t stream) {
  const int64_t count = n_signals * n_frames * n_fft;
  if (count <= 0) return;
  DS_LAUNCH(frame_window_kernel, blocks_for(count, kSpectralThreads), kSpectralThreads, 0, stream, frames, audio,
            window, n_signals, L, signal_stride, n_fft, hop, n_frames, pad_mode);
}

void power_spectrum(float* power, const float2* spectrum, int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  DS_LAUNCH(power_spectrum_kernel, blocks_for(count, kSpectralThreads), kSpectralThreads, 0, stream, power,
            spectrum, count);
}

void power_to_db(float* out, float* slice_ref_out, const float* mel_power, int64_t n_slices, int64_t per_slice,
                 double amin, double top_db, double fixed_ref, cudaStream_t stream) {
  if (n_slices <= 0 || per_slice <= 0) return;
  DS_LAUNCH(power_to_db_kernel, static_cast<unsigned int>(n_slices), kReduceThreads, 0, stream, out, slice_ref_out,
            mel_power, per_slice, static_cast<float>(amin), static_cast<float>(top_db),
            static_cast<float>(fixed_ref));
}

void db_to_unit(float* out, const float* db, int64_t n, double top_db, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(db_to_unit_kernel, blocks_for(n, kSpectralThreads), kSpectralThreads, 0, stream, out, db, n,
            static_cast<float>(2.0 / top_db));
}

}  // namespace ds::DS_KNS
