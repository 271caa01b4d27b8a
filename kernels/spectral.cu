// Spectral kernels of the GPU mel path (audio/mel_gpu.cpp): fused center padding + framing + window
// into the rows a batched R2C cuFFT transforms, |X|², power_to_db with a per-slice reference, the
// dB→[−1, 1] map and the antialiased resize of the `seed` layout. The float expressions are those of
// audio/mel_cpu.h, in the same order, so the emulated kernels equal the reference bit for bit.
#include "kernels/spectral.h"

#include <stdexcept>

#include "kernels/kernel_common.h"
#include "kernels/stft_framing.h"

namespace ds::DS_KNS {
namespace {

constexpr int kSpectralThreads = 256;
constexpr int kReduceThreads = 256;  // power_to_db: one block per slice; a power of two for the tree

// One block per frame row (signal s, frame t), its threads striding over the n_fft columns: the row's
// coordinates are found once per block (stft_frame_row), not per element, the writes of a row are
// contiguous and the reads of its window and samples coalesced. The element itself is
// stft_frame_element (kernels/stft_framing.h), the very function the cuFFT load callback computes, so
// both framings give the same bits; only frames that reach over an edge take its padding branch.
__global__ void frame_window_kernel(float* frames, StftFraming f) {
  const int64_t row = blockIdx.x;  // signal·n_frames + t
  int64_t start = 0;
  const float* x = stft_frame_row(f, row, &start);
  float* out = frames + row * f.n_fft;
  for (int j = threadIdx.x; j < f.n_fft; j += blockDim.x) out[j] = stft_frame_element(f, x, start, j);
}

// One thread: *dst = value, ordered on the stream with the transforms that read *dst.
__global__ void store_stft_framing_kernel(StftFraming* dst, StftFraming value) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *dst = value;
}

__global__ void power_spectrum_kernel(float* power, const float2* spectrum, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  power[i] = stft_power(spectrum[i]);  // kernels/stft_framing.h: the store callback's arithmetic too
}

// Block s owns slice s: a strided max per thread, a shared-memory tree (fixed shape, so the same
// result on every run), then every element is written from the block-wide values. The dB arithmetic is
// in double, as audio/mel_cpu.h's power_to_db, so a float power gives the reference's float dB.
__global__ void power_to_db_kernel(float* out, float* slice_ref_out, const float* mel_power, int64_t per_slice,
                                   double amin, double top_db, double fixed_ref) {
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
  const double slice_max = partial_max[0];
  const double ref = fixed_ref >= 0.0 ? fixed_ref : slice_max;
  const double ref_db = 10.0 * log10(fmax(ref, amin));
  // log10 is monotone, so the largest dB value of the slice is that of its largest power.
  const double floor_db = top_db > 0.0 ? (10.0 * log10(fmax(slice_max, amin)) - ref_db) - top_db : -INFINITY;
  for (int64_t i = threadIdx.x; i < per_slice; i += blockDim.x) {
    const double db = 10.0 * log10(fmax(static_cast<double>(in[i]), amin)) - ref_db;
    o[i] = static_cast<float>(fmax(db, floor_db));
  }
  if (threadIdx.x == 0 && slice_ref_out) slice_ref_out[slice] = static_cast<float>(ref);
}

// Weights of output index i of an antialiased resize from in_size to out_size (PyTorch's
// _compute_indices_weights_aa for bilinear, antialias=True, align_corners=False; PIL's ImagingResample):
// a triangle filter stretched by the scale when shrinking, centred on the half-pixel centre
// (i + 0.5)·scale, normalised to sum 1. Returns the first input index; w[0 .. size) the weights.
constexpr int kMaxResizeTaps = 64;  // support 2·scale + 2: enough for shrinking by up to 31×
__device__ int resize_weights(double* w, int* size, int i, int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double support = scale >= 1.0 ? scale : 1.0;
  const double inv_scale = scale >= 1.0 ? 1.0 / scale : 1.0;
  const double center = scale * (i + 0.5);
  int lo = static_cast<int>(center - support + 0.5);
  if (lo < 0) lo = 0;
  int hi = static_cast<int>(center + support + 0.5);
  if (hi > in_size) hi = in_size;
  int n = hi - lo;
  if (n > kMaxResizeTaps) n = kMaxResizeTaps;
  double total = 0.0;
  for (int j = 0; j < n; ++j) {
    const double x = (j + lo - center + 0.5) * inv_scale;
    const double t = 1.0 - fabs(x);
    w[j] = t > 0.0 ? t : 0.0;
    total += w[j];
  }
  for (int j = 0; j < n; ++j) w[j] = total != 0.0 ? w[j] / total : 0.0;
  *size = n;
  return lo;
}

// One output value of a 1-D resize along a line of `in_size` values `step` apart, accumulated in double.
template <class T>
__device__ double resize_line(const T* line, int64_t step, int i, int in_size, int out_size) {
  double w[kMaxResizeTaps];
  int n = 0;
  const int lo = resize_weights(w, &n, i, in_size, out_size);
  double acc = 0.0;
  for (int j = 0; j < n; ++j) acc += w[j] * static_cast<double>(line[(lo + j) * step]);
  return acc;
}

// Pass 1 (width): tmp[img, y, x'] from in[img, y, :]; pass 2 (height): out[img, y', x'] from tmp[img, :, x'].
__global__ void resize_width_kernel(double* tmp, const float* in, int64_t n_images, int in_h, int in_w, int out_w) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_images * in_h * out_w) return;
  const int64_t row = k / out_w;  // img·in_h + y
  const int x = static_cast<int>(k - row * out_w);
  tmp[k] = resize_line(in + row * in_w, 1, x, in_w, out_w);
}
__global__ void resize_height_kernel(float* out, const double* tmp, int64_t n_images, int in_h, int out_h, int out_w) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_images * out_h * out_w) return;
  const int64_t plane = static_cast<int64_t>(out_h) * out_w;
  const int64_t img = k / plane;
  const int64_t rest = k - img * plane;
  const int y = static_cast<int>(rest / out_w), x = static_cast<int>(rest - static_cast<int64_t>(y) * out_w);
  out[k] = static_cast<float>(resize_line(tmp + img * in_h * out_w + x, out_w, y, in_h, out_h));
}

// In double, as audio/mel_params.h's db_to_unit, then rounded once to float.
__global__ void db_to_unit_kernel(float* out, const float* db, int64_t n, double top_db) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = static_cast<float>(static_cast<double>(db[i]) / top_db * 2.0 + 1.0);
}

}  // namespace

void frame_window(float* frames, const float* audio, const float* window, int64_t n_signals, int64_t L,
                  int64_t signal_stride, int n_fft, int hop, int n_frames, int pad_mode, cudaStream_t stream) {
  const int64_t rows = n_signals * n_frames;
  if (rows <= 0 || n_fft <= 0) return;
  // One block per row: CUDA allows 2^31 − 1 blocks in x; an hour of 10 s slices is 184,320 rows.
  if (rows > 0x7fffffff) throw std::invalid_argument("frame_window: more than 2^31 - 1 frame rows");
  StftFraming f;
  f.audio = audio;
  f.window = window;
  f.L = L;
  f.signal_stride = signal_stride;
  f.n_fft = n_fft;
  f.hop = hop;
  f.n_frames = n_frames;
  f.pad_mode = pad_mode;
  DS_LAUNCH(frame_window_kernel, static_cast<unsigned int>(rows), kSpectralThreads, 0, stream, frames, f);
}

void store_stft_framing(StftFraming* dst, const StftFraming& value, cudaStream_t stream) {
  DS_LAUNCH(store_stft_framing_kernel, 1, 1, 0, stream, dst, value);
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
            mel_power, per_slice, amin, top_db, fixed_ref);
}

void db_to_unit(float* out, const float* db, int64_t n, double top_db, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(db_to_unit_kernel, blocks_for(n, kSpectralThreads), kSpectralThreads, 0, stream, out, db, n, top_db);
}

void resize_antialiased(float* out, double* tmp, const float* in, int64_t n_images, int in_h, int in_w, int out_h,
                        int out_w, cudaStream_t stream) {
  if (n_images <= 0 || out_h <= 0 || out_w <= 0) return;
  // Taps per output: at most 2·support + 2 with support = max(in/out, 1); the kernels keep them in a
  // fixed array, so refuse shrink factors it cannot hold rather than drop taps.
  for (double ratio : {static_cast<double>(in_w) / out_w, static_cast<double>(in_h) / out_h})
    if (2.0 * (ratio > 1.0 ? ratio : 1.0) + 2.0 > kMaxResizeTaps)
      throw std::invalid_argument("resize_antialiased: shrinking by more than 31x is not supported");
  const int64_t tmp_count = n_images * in_h * out_w, out_count = n_images * out_h * out_w;
  DS_LAUNCH(resize_width_kernel, blocks_for(tmp_count, kSpectralThreads), kSpectralThreads, 0, stream, tmp, in,
            n_images, in_h, in_w, out_w);
  DS_LAUNCH(resize_height_kernel, blocks_for(out_count, kSpectralThreads), kSpectralThreads, 0, stream, out, tmp,
            n_images, in_h, out_h, out_w);
}

}  // namespace ds::DS_KNS
