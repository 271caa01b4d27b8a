// Kernels of fast Griffin-Lim on the GPU (audio/griffin_lim_gpu.cpp): the momentum phase update,
// istft's overlap-add with window-sum-square normalisation and centre trimming, the Philox random initial
// phases and the magnitude transpose. The float expressions are audio/griffin_lim.cpp's, in the same
// order, so the emulated kernels equal the CPU reference bit for bit. Products that feed an addition are
// written __fmul_rn, which nvcc never contracts into an FMA (CUDA Math API, "__fmul_rn: ... will never
// be merged into a single multiply-add instruction"), so the device rounds as the host does too; what
// can still differ on a GPU is hypotf, cosf and sinf (libdevice, a few ulp, against glibc).
#include "kernels/griffin_lim.h"

#include <cfloat>

#include "kernels/kernel_common.h"
#include "kernels/philox.h"

namespace ds::DS_KNS {
namespace {

constexpr int kGriffinLimThreads = 256;

__global__ void phase_update_kernel(float2* angles, float2* tprev, const float2* rebuilt, const float* magnitude,
                                    int64_t n, float accel) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float2 r = rebuilt[i];
  const float2 previous = tprev[i];
  float re = r.x - __fmul_rn(accel, previous.x);
  float im = r.y - __fmul_rn(accel, previous.y);
  // std::abs(std::complex<float>) is glibc's cabsf, i.e. hypotf: no overflow for large bins.
  const float scale = 1.0f / (hypotf(re, im) + FLT_MIN);
  re = re * scale;
  im = im * scale;
  if (magnitude) {
    const float m = magnitude[i];
    re = re * m;
    im = im * m;
  }
  angles[i] = make_float2(re, im);
  tprev[i] = r;
}

// Output sample i of the trimmed signal is sample j = start + i of the full overlap-add; the frames
// covering j are t·hop <= j < t·hop + n_fft, summed in ascending t as istft's frame loop adds them.
// Neighbouring threads read neighbouring samples of each frame, so the loads coalesce.
__global__ void overlap_add_kernel(float* out, const float* frames, const float* window,
                                   const float* window_sum_square, int64_t n_signals, int64_t n_frames, int n_fft,
                                   int hop, int64_t start, int64_t length, float inv_n) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= n_signals * length) return;
  // Signal `signal` reads its own n_frames rows and writes its own `length` samples.
  const int64_t signal = index / length, i = index - signal * length;
  frames += signal * n_frames * n_fft;
  const int64_t j = start + i;
  const int64_t full = n_fft + static_cast<int64_t>(hop) * (n_frames - 1);
  if (j >= full) {  // librosa.util.fix_length zero-extends past the last frame
    out[index] = 0.0f;
    return;
  }
  const int64_t first = j - n_fft + 1 <= 0 ? 0 : (j - n_fft + 1 + hop - 1) / hop;
  const int64_t last = j / hop < n_frames - 1 ? j / hop : n_frames - 1;
  float y = 0.0f;
  for (int64_t t = first; t <= last; ++t) {
    const int n = static_cast<int>(j - t * hop);
    y = __fadd_rn(y, __fmul_rn(frames[t * n_fft + n], __fmul_rn(window[n], inv_n)));
  }
  const float wss = window_sum_square[i];
  out[index] = wss > FLT_MIN ? y / wss : y;
}

// One thread per Philox tuple: it gives the uniforms of elements 4q .. 4q + 3.
__global__ void random_phase_init_kernel(float2* angles, const float* magnitude, uint64_t seed, int64_t n) {
  const int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (q * 4 >= n) return;
  const PhiloxWords bits = philox_tuple(seed, 0, static_cast<uint64_t>(q));
  const float two_pi = static_cast<float>(2.0 * 3.14159265358979323846);  // griffin_lim's float(2.0 · M_PI)
  for (int c = 0; c < 4; ++c) {
    const int64_t i = q * 4 + c;
    if (i >= n) break;
    const float theta = two_pi * uniform_closed_open(bits.w[c]);
    const float m = magnitude[i];
    angles[i] = make_float2(m * cosf(theta), m * sinf(theta));  // std::polar(m, θ)
  }
}

__global__ void zero_phase_init_kernel(float2* angles, const float* magnitude, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  angles[i] = make_float2(magnitude[i], 0.0f);
}

// Thread 2t + e clears bin 0 (e = 0) or bin n_freqs − 1 (e = 1) of frame t.
__global__ void clear_edge_imaginary_kernel(float2* spectrum, int64_t frames, int n_freqs) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= 2 * frames) return;
  const int64_t t = i / 2;
  spectrum[t * n_freqs + (i % 2 == 0 ? 0 : n_freqs - 1)].y = 0.0f;
}

// Written in output order (coalesced stores); the strided loads happen once per Griffin-Lim run.
__global__ void transpose_magnitude_kernel(float* magnitude, const float* magnitude_in, int n_freqs,
                                           int64_t frames) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= frames * n_freqs) return;
  const int64_t t = i / n_freqs;
  const int64_t k = i - t * n_freqs;
  magnitude[i] = magnitude_in[k * frames + t];
}

}  // namespace

void griffin_lim_phase_update(float2* angles, float2* tprev, const float2* rebuilt, const float* magnitude,
                              int64_t n, float momentum, cudaStream_t stream) {
  if (n <= 0) return;
  const float accel = momentum / (1.0f + momentum);  // on the host, as the CPU reference computes it
  DS_LAUNCH(phase_update_kernel, blocks_for(n, kGriffinLimThreads), kGriffinLimThreads, 0, stream, angles, tprev,
            rebuilt, magnitude, n, accel);
}

void overlap_add(float* out, const float* frames, const float* window, const float* window_sum_square,
                 int64_t n_frames, int n_fft, int hop, int64_t start, int64_t length, cudaStream_t stream) {
  overlap_add_batched(out, frames, window, window_sum_square, 1, n_frames, n_fft, hop, start, length, stream);
}

void overlap_add_batched(float* out, const float* frames, const float* window, const float* window_sum_square,
                         int64_t n_signals, int64_t n_frames, int n_fft, int hop, int64_t start, int64_t length,
                         cudaStream_t stream) {
  if (length <= 0 || n_frames <= 0 || n_signals <= 0) return;
  const float inv_n = 1.0f / n_fft;  // numpy's irfft normalisation, istft's inv_n
  DS_LAUNCH(overlap_add_kernel, blocks_for(n_signals * length, kGriffinLimThreads), kGriffinLimThreads, 0, stream,
            out, frames, window, window_sum_square, n_signals, n_frames, n_fft, hop, start, length, inv_n);
}

void random_phase_init(float2* angles, const float* magnitude, uint64_t seed, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t tuples = (n + 3) / 4;
  DS_LAUNCH(random_phase_init_kernel, blocks_for(tuples, kGriffinLimThreads), kGriffinLimThreads, 0, stream, angles,
            magnitude, seed, n);
}

void zero_phase_init(float2* angles, const float* magnitude, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(zero_phase_init_kernel, blocks_for(n, kGriffinLimThreads), kGriffinLimThreads, 0, stream, angles,
            magnitude, n);
}

void clear_edge_imaginary(float2* spectrum, int64_t frames, int n_freqs, cudaStream_t stream) {
  if (frames <= 0 || n_freqs <= 0) return;
  DS_LAUNCH(clear_edge_imaginary_kernel, blocks_for(2 * frames, kGriffinLimThreads), kGriffinLimThreads, 0, stream,
            spectrum, frames, n_freqs);
}

void transpose_magnitude(float* magnitude, const float* magnitude_in, int n_freqs, int64_t frames,
                         cudaStream_t stream) {
  const int64_t count = frames * n_freqs;
  if (count <= 0) return;
  DS_LAUNCH(transpose_magnitude_kernel, blocks_for(count, kGriffinLimThreads), kGriffinLimThreads, 0, stream,
            magnitude, magnitude_in, n_freqs, frames);
}

}  // namespace ds::DS_KNS
