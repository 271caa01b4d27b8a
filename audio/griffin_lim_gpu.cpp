// Fast Griffin-Lim on the GPU (see griffin_lim_gpu.h): two cuFFT plans in a few thin, cited lines;
// every other step is a kernel of kernels/spectral.cu or kernels/griffin_lim.cu, emulated on the CPU in
// tests/test_emu_griffin_lim.cpp.
#include "audio/griffin_lim_gpu.h"

#include <climits>
#include <stdexcept>
#include <string>

#include "audio/cufft_check.h"
#include "audio/griffin_lim.h"
#include "engine/core/cuda_context.h"
#include "kernels/griffin_lim.h"
#include "kernels/spectral.h"

namespace ds {
namespace {

void check_fft_sizes(const MelParams& p, int64_t frames) {
  if (frames <= 0) throw std::invalid_argument("Griffin-Lim on the GPU: no frames");
  if (frames > INT_MAX || frames * p.n_fft > INT_MAX)
    throw std::invalid_argument("Griffin-Lim on the GPU: " + std::to_string(frames) +
                                " frames exceed cuFFT's 32-bit plan sizes");
}

// cufftPlanMany (cuFFT API reference, "Advanced Data Layout"): for rank 1, transform b reads
// input[b·idist + x·istride] and writes output[b·odist + x·ostride]; the embed arrays are passed so the
// strides are honoured (a null inembed selects the basic layout); distances count the element type of
// each side (cufftReal or cufftComplex). The plan is bound to the context's stream (cufftSetStream), so
// its executions are ordered with the kernels around them.
cufftHandle make_plan(int n, int istride, int idist, int inembed_size, int ostride, int odist, int onembed_size,
                      cufftType type, int batch) {
  int dims[1] = {n};
  int inembed[1] = {inembed_size};
  int onembed[1] = {onembed_size};
  cufftHandle plan = 0;
  DS_CUFFT_CHECK(cufftPlanMany(&plan, 1, dims, inembed, istride, idist, onembed, ostride, odist, type, batch));
  const cufftResult set = cufftSetStream(plan, CudaContext::get().stream());
  if (set != CUFFT_SUCCESS) {
    cufftDestroy(plan);
    check_cufft(set, "cufftSetStream(plan, stream)", __FILE__, __LINE__);
  }
  return plan;
}

}  // namespace

StftFftLayout griffin_lim_r2c_layout(const MelParams& p, int64_t frames) {
  check_fft_sizes(p, frames);
  StftFftLayout l;
  l.n = p.n_fft;
  l.istride = 1;
  l.idist = p.n_fft;  // frame_window writes the rows back to back
  l.ostride = 1;
  l.odist = p.n_freqs();  // one frame's bins contiguous: the frames × n_freqs spectrum layout
  l.batch = static_cast<int>(frames);
  return l;
}

IstftFftLayout griffin_lim_c2r_layout(const MelParams& p, int64_t frames) {
  check_fft_sizes(p, frames);
  IstftFftLayout l;
  l.n = p.n_fft;
  l.istride = 1;
  l.idist = p.n_freqs();
  l.ostride = 1;
  l.odist = p.n_fft;  // overlap_add reads frame t at frames + t·n_fft
  l.batch = static_cast<int>(frames);
  return l;
}

std::vector<float> istft_window_sum_square(const MelParams& p, int64_t frames, int64_t length) {
  if (!p.center) throw std::invalid_argument("istft_window_sum_square: only center=True is implemented");
  const std::vector<float> window = stft_window(p);
  const int64_t full = p.n_fft + static_cast<int64_t>(p.hop) * (frames - 1);
  std::vector<float> sum(static_cast<size_t>(full), 0.0f);
  for (int64_t t = 0; t < frames; ++t)  // istft's loop: frame after frame, float accumulation
    for (int n = 0; n < p.n_fft; ++n) sum[t * p.hop + n] += window[n] * window[n];
  const int64_t start = p.n_fft / 2;
  std::vector<float> out(static_cast<size_t>(length), 0.0f);
  for (int64_t i = 0; i < length && start + i < full; ++i) out[i] = sum[start + i];
  return out;
}

int64_t griffin_lim_length(const MelParams& p, int64_t frames, int64_t length) {
  if (length < 0) length = p.center ? p.hop * (frames - 1) : p.n_fft + p.hop * (frames - 1);
  if (p.stft_frames(length) != frames)
    throw std::invalid_argument("griffin_lim: " + std::to_string(length) + " samples give " +
                                std::to_string(p.stft_frames(length)) + " STFT frames, the magnitude has " +
                                std::to_string(frames));
  return length;
}

GriffinLimGpu::GriffinLimGpu(const MelParams& p, int64_t frames, int64_t slices)
    : p_(p), frames_(frames), slices_(slices) {
  if (!p.center) throw std::invalid_argument("Griffin-Lim on the GPU: only center=True is implemented");
  if (slices < 1) throw std::invalid_argument("Griffin-Lim on the GPU: " + std::to_string(slices) + " slices");
  const std::vector<float> window = stft_window(p);  // validates n_fft, hop, win, pad_mode
  check_fft_sizes(p, frames * slices);               // one batched transform of every slice's frames
  max_length_ = static_cast<int64_t>(p.hop) * frames - 1;  // 1 + L / hop == frames for L < hop·frames
  const size_t n = static_cast<size_t>(frames * p.n_freqs());
  const size_t all = n * static_cast<size_t>(slices);
  window_ = DeviceBuffer<float>::from_host(window);
  window_sum_square_ = DeviceBuffer<float>(static_cast<size_t>(max_length_));
  magnitude_in_ = DeviceBuffer<float>(n);
  magnitude_ = DeviceBuffer<float>(n);
  angles_ = DeviceBuffer<float2>(all);
  tprev_ = DeviceBuffer<float2>(all);
  rebuilt_ = DeviceBuffer<float2>(all);
  frame_rows_ = DeviceBuffer<float>(static_cast<size_t>(slices * frames * p.n_fft));
  signal_ = DeviceBuffer<float>(static_cast<size_t>(slices * max_length_));
  full_ = make_plans(slices);
}

size_t GriffinLimGpu::device_bytes(const MelParams& p, int64_t frames, int64_t slices) {
  const size_t n = static_cast<size_t>(frames) * static_cast<size_t>(p.n_freqs());
  const size_t rows = static_cast<size_t>(frames) * static_cast<size_t>(p.n_fft);
  const size_t length = static_cast<size_t>(p.hop) * static_cast<size_t>(frames);
  // Spectra (angles, tprev, rebuilt), the frame rows, the signal, and the R2C's and C2R's work areas taken
  // as one complex copy of the frame rows each (an estimate: cuFFT sizes its work area per plan).
  const size_t per_slice = 3 * n * sizeof(float2) + rows * sizeof(float) + length * sizeof(float) +
                           2 * rows * sizeof(float2);
  return static_cast<size_t>(slices) * per_slice + 2 * n * sizeof(float) + 2 * length * sizeof(float);
}

GriffinLimGpu::Plans GriffinLimGpu::make_plans(int64_t slices) const {
  Plans plans;
  plans.slices = slices;
  const StftFftLayout r2c = griffin_lim_r2c_layout(p_, slices * frames_);
  const IstftFftLayout c2r = griffin_lim_c2r_layout(p_, slices * frames_);
  plans.r2c = make_plan(r2c.n, r2c.istride, r2c.idist, r2c.n, r2c.ostride, r2c.odist, r2c.n / 2 + 1, CUFFT_R2C,
                        r2c.batch);
  try {
    plans.c2r = make_plan(c2r.n, c2r.istride, c2r.idist, c2r.n / 2 + 1, c2r.ostride, c2r.odist, c2r.n, CUFFT_C2R,
                          c2r.batch);
  } catch (...) {
    cufftDestroy(plans.r2c);
    throw;
  }
  return plans;
}

void GriffinLimGpu::destroy(Plans& plans) {
  if (plans.c2r) cufftDestroy(plans.c2r);  // never throws from a destructor
  if (plans.r2c) cufftDestroy(plans.r2c);
  plans = Plans{};
}

const GriffinLimGpu::Plans& GriffinLimGpu::plans_for(int64_t n_slices) {
  if (n_slices == slices_) return full_;
  if (tail_.slices != n_slices) {
    // The old tail plans may still be in use by work enqueued on the stream; cufftDestroy of a plan with
    // pending work is not documented as safe, so wait first (once per change of count).
    CudaContext::get().synchronize();
    destroy(tail_);
    tail_ = make_plans(n_slices);
  }
  return tail_;
}

GriffinLimGpu::~GriffinLimGpu() {
  destroy(tail_);
  destroy(full_);
}

void GriffinLimGpu::inverse_stft(const Plans& plans, int64_t n_slices, int64_t length) {
  const cudaStream_t stream = CudaContext::get().stream();
  // angles_ is the C2R's input and nothing reads it afterwards: the phase update only writes it (from
  // rebuilt_, tprev_ and the magnitude), and the momentum term lives in tprev_, which no transform
  // touches. So the C2R may consume angles_ in place of a copy. cuFFT API reference, "Data Layout":
  // "Out-of-place complex-to-real FFT will overwrite input buffer" (quoted in cupy/cupy#3770; FFTW's
  // c2r destroys its input by default in the same way). tests/test_emu_griffin_lim.cpp's C2R stand-in
  // scribbles over its input so that any later read of angles_ shows.
  kcuda::clear_edge_imaginary(angles_.get(), n_slices * frames_, p_.n_freqs(), stream);
  // cufftExecC2R(plan, idata, odata): inverse (sign +1), implicitly inverse and unnormalised ("cuFFT
  // performs un-normalized FFTs", cuFFT API reference, cufftExecC2R / "Fourier Transform Types");
  // overlap_add applies istft's 1/n_fft.
  DS_CUFFT_CHECK(cufftExecC2R(plans.c2r, reinterpret_cast<cufftComplex*>(angles_.get()), frame_rows_.get()));
  kcuda::overlap_add_batched(signal_.get(), frame_rows_.get(), window_.get(), window_sum_square_.get(), n_slices,
                             frames_, p_.n_fft, p_.hop, p_.n_fft / 2, length, stream);
}

std::vector<float> GriffinLimGpu::run(const float* magnitude_host, int iters, float momentum, uint64_t seed,
                                      int64_t length, bool random_init) {
  const cudaStream_t stream = CudaContext::get().stream();
  const int64_t n = frames_ * p_.n_freqs();
  DS_CUDA_CHECK(cudaMemcpyAsync(magnitude_in_.get(), magnitude_host, static_cast<size_t>(n) * sizeof(float),
                                cudaMemcpyHostToDevice, stream));
  kcuda::transpose_magnitude(magnitude_.get(), magnitude_in_.get(), p_.n_freqs(), frames_, stream);
  return iterate(magnitude_.get(), 1, iters, momentum, &seed, length, random_init);
}

std::vector<float> GriffinLimGpu::run_batch(const float* magnitude_device, int64_t n_slices, int iters,
                                            float momentum, const uint64_t* seeds, int64_t length,
                                            bool random_init) {
  if (n_slices < 1 || n_slices > slices_)
    throw std::invalid_argument("Griffin-Lim on the GPU: " + std::to_string(n_slices) + " slices asked of a batch of " +
                                std::to_string(slices_));
  return iterate(magnitude_device, n_slices, iters, momentum, seeds, length, random_init);
}

std::vector<float> GriffinLimGpu::iterate(const float* magnitude, int64_t n_slices, int iters, float momentum,
                                          const uint64_t* seeds, int64_t length, bool random_init) {
  if (iters < 0) throw std::invalid_argument("--gl-iters " + std::to_string(iters) + ": expected >= 0");
  length = griffin_lim_length(p_, frames_, length);
  if (p_.pad_mode == "reflect" && length <= p_.n_fft / 2)  // as stft refuses it
    throw std::invalid_argument("stft: reflect padding needs more than n_fft/2 = " + std::to_string(p_.n_fft / 2) +
                                " samples, got " + std::to_string(length));
  const Plans& plans = plans_for(n_slices);
  CudaContext& ctx = CudaContext::get();
  const cudaStream_t stream = ctx.stream();
  const int n_freqs = p_.n_freqs();
  const int64_t n = frames_ * n_freqs;  // one slice's spectrum
  const int64_t all = n_slices * n;

  if (length != wss_length_) {
    ctx.synchronize();  // an earlier upload may still read wss_host_
    wss_host_ = istft_window_sum_square(p_, frames_, length);
    DS_CUDA_CHECK(cudaMemcpyAsync(window_sum_square_.get(), wss_host_.data(), wss_host_.size() * sizeof(float),
                                  cudaMemcpyHostToDevice, stream));
    wss_length_ = length;
  }
  for (int64_t s = 0; s < n_slices; ++s) {  // each slice's phases from its own Philox(seed, 0), from 0
    if (random_init)
      kcuda::random_phase_init(angles_.get() + s * n, magnitude + s * n, seeds[s], n, stream);
    else
      kcuda::zero_phase_init(angles_.get() + s * n, magnitude + s * n, n, stream);
  }
  DS_CUDA_CHECK(cudaMemsetAsync(tprev_.get(), 0, static_cast<size_t>(all) * sizeof(float2), stream));  // librosa's tprev = None

  for (int it = 0; it < iters; ++it) {
    inverse_stft(plans, n_slices, length);
    // Slice s's signal at signal_ + s·length, its frames at rows s·frames_ .. (frame_window's batch layout).
    kcuda::frame_window(frame_rows_.get(), signal_.get(), window_.get(), n_slices, length, length, p_.n_fft, p_.hop,
                        static_cast<int>(frames_), p_.pad_mode == "reflect" ? 1 : 0, stream);
    // cufftExecR2C(plan, idata, odata): forward (sign −1), unnormalised, as numpy.fft.rfft (cuFFT API
    // reference, cufftExecR2C). Out of place into rebuilt_, so tprev_ still holds the previous spectrum.
    DS_CUFFT_CHECK(cufftExecR2C(plans.r2c, frame_rows_.get(), reinterpret_cast<cufftComplex*>(rebuilt_.get())));
    kcuda::griffin_lim_phase_update(angles_.get(), tprev_.get(), rebuilt_.get(), magnitude, all, momentum, stream);
  }
  inverse_stft(plans, n_slices, length);

  std::vector<float> out(static_cast<size_t>(n_slices * length));
  DS_CUDA_CHECK(cudaMemcpyAsync(out.data(), signal_.get(), out.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                stream));
  ctx.synchronize();  // the one wait: the samples are on the host
  return out;
}

}  // namespace ds
