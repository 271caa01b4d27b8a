// Audio throughput of darkstar-bench on real music: STFT + mel of 10 s slices (the default layout,
// audio/mel_cpu.h on the CPU, audio/mel_gpu.h on CUDA) and fast Griffin-Lim (audio/griffin_lim.h,
// audio/griffin_lim_gpu.h) of a real slice's magnitude, each as × realtime (seconds of audio per second).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "audio/decode.h"
#include "audio/griffin_lim.h"
#include "audio/griffin_lim_gpu.h"
#include "audio/mel_cpu.h"
#include "audio/mel_gpu.h"
#include "audio/mel_inversion_batch.h"
#include "bench/bench.h"
#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"

namespace ds::bench {

nlohmann::json bench_audio(const std::string& song, const AudioOptions& opt) {
  const MelParams p = mel_preset("default");
  const DecodedAudio audio = decode_audio(song);
  const std::vector<float> x = resample(audio.samples, audio.sample_rate, p.sr);
  const int64_t L = p.slice_samples();
  int64_t n = static_cast<int64_t>(x.size()) / L;
  if (opt.max_slices > 0) n = std::min<int64_t>(n, opt.max_slices);
  if (n < 1) throw std::invalid_argument(song + ": shorter than one 10 s slice");
  nlohmann::json out = {{"device", device_name(opt.device)}, {"song", song}, {"slices", n},
                        {"slice_seconds", p.slice_seconds}, {"layout", "default (128 mel x 512 frames, n_fft 2048, hop 431)"}};

  // STFT + mel + dB + [−1, 1] map.
  if (opt.device == Device::CPU) {
    const MelCpu mel(p);  // prepared once, as dataset preparation does
    double ref = 0;
    const Timing t = time_runs(1, opt.mel_reps, [&] {
      for (int64_t i = 0; i < n; ++i) mel.image(x.data() + i * L, L, &ref);
    });
    out["mel"] = {{"ms_per_slice", t.median_ms / double(n)}, {"time_ms", t.to_json()},
                  {"x_realtime", double(n) * p.slice_seconds / (t.median_ms * 1e-3)}};
  } else {
    // The song's slices tiled to an hour on the device, one batch, timed on the stream with events
    // (the audio is already on the device, as the GPU goal states).
    const int64_t tiled = std::max<int64_t>(n, static_cast<int64_t>(3600.0 / p.slice_seconds));
    std::vector<float> host(static_cast<size_t>(tiled * L));
    for (int64_t s = 0; s < tiled; ++s) std::copy(x.begin() + (s % n) * L, x.begin() + (s % n + 1) * L, host.begin() + s * L);
    DeviceBuffer<float> d_audio = DeviceBuffer<float>::from_host(host);
    DeviceBuffer<float> images(static_cast<size_t>(tiled) * p.image_height() * p.image_width());
    DeviceBuffer<float> refs(static_cast<size_t>(tiled));
    CudaContext& ctx = CudaContext::get();
    // Issue 9: the framing as cuFFT's LTO load callback (MelGpu's default; it falls back to the kernel
    // with one line where cuFFT cannot link it) and, for comparison, the framing kernel alone.
    // "mel_gpu_framing" says which ran for "mel"; "mel_framing_kernel" is the kernel path's timing
    // (present when the callback ran, so the two can be compared in one run). One MelGpu at a time:
    // each holds an hour of frames, spectra and power.
    auto time_mel = [&](MelFraming framing, MelFraming* used, std::string* note) {
      MelGpu mel(p, tiled, framing);
      *used = mel.framing();
      *note = mel.framing_note();
      return time_runs(1, std::max(opt.mel_reps, 5),
                       [&] { mel.compute(images.get(), d_audio.get(), tiled, L, refs.get()); },
                       [&] { ctx.synchronize(); });
    };
    MelFraming used = MelFraming::Kernel;
    std::string note;
    const Timing t = time_mel(MelFraming::LoadCallback, &used, &note);
    out["mel"] = {{"slices_on_device", tiled}, {"ms_per_slice", t.median_ms / double(tiled)},
                  {"time_ms", t.to_json()}, {"x_realtime", double(tiled) * p.slice_seconds / (t.median_ms * 1e-3)},
                  {"what", "the song's 10 s slices tiled to an hour, already on the device, one batch"}};
    out["mel_gpu_framing"] = mel_framing_name(used);
    if (!note.empty()) out["mel_gpu_framing_note"] = note;
    if (used == MelFraming::LoadCallback) {
      MelFraming kernel_used = MelFraming::Kernel;
      std::string kernel_note;
      const Timing k = time_mel(MelFraming::Kernel, &kernel_used, &kernel_note);
      out["mel_framing_kernel"] = {{"ms_per_slice", k.median_ms / double(tiled)}, {"time_ms", k.to_json()},
                                   {"x_realtime", double(tiled) * p.slice_seconds / (k.median_ms * 1e-3)},
                                   {"what", "the same, with the framing kernel instead of the load callback"}};
    }
  }

  // Griffin-Lim of the first slice's (or its first griffin_lim_seconds') STFT magnitude.
  const int64_t gl_samples = std::min<int64_t>(L, static_cast<int64_t>(opt.griffin_lim_seconds * p.sr));
  const std::vector<complexf> spectrum = stft(x.data(), gl_samples, p);
  const int64_t frames = p.stft_frames(gl_samples);
  const std::vector<float> magnitude = stft_magnitude(spectrum.data(), frames, p.n_freqs());
  const float momentum = 0.99f;
  Timing t;
  if (opt.device == Device::CPU) {
    t = time_runs(0, opt.griffin_lim_reps,
                  [&] { griffin_lim(magnitude.data(), frames, p, opt.griffin_lim_iters, momentum, 1, gl_samples); });
  } else {
    GriffinLimGpu gl(p, frames);
    t = time_runs(1, std::max(opt.griffin_lim_reps, 3),
                  [&] { gl.run(magnitude.data(), opt.griffin_lim_iters, momentum, 1, gl_samples); });
  }
  const double seconds = double(gl_samples) / p.sr;
  out["griffin_lim"] = {{"iterations", opt.griffin_lim_iters}, {"momentum", momentum}, {"audio_seconds", seconds},
                        {"time_ms", t.to_json()}, {"x_realtime", seconds / (t.median_ms * 1e-3)},
                        {"what", opt.device == Device::CPU ? "griffin_lim on the host"
                                                           : "GriffinLimGpu::run, host magnitude in, samples back"}};

  // `listen` on CUDA: a batch of 10 s slices inverted at once (audio/mel_inversion_batch.h), Griffin-Lim
  // alone (GriffinLimGpu::run_batch, magnitudes on the device) and the whole inversion (MelInversionGpu:
  // host mel power in, NNLS of 200 iterations + Griffin-Lim, samples back).
  if (opt.device == Device::CUDA) {
    size_t free_bytes = 0, total_bytes = 0;
    DS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const int64_t batch = std::min<int64_t>(16, auto_inversion_batch(p, free_bytes, 16));
    const int64_t slice_frames = p.stft_frames(L), per_slice_mel = int64_t(p.n_mels) * slice_frames;
    const std::vector<float> fb = mel_filterbank(p);
    std::vector<float> power(static_cast<size_t>(batch * per_slice_mel));
    for (int64_t s = 0; s < batch; ++s) {
      const std::vector<float> m = mel_power(x.data() + (s % n) * L, L, p, fb.data());
      std::copy(m.begin(), m.end(), power.begin() + s * per_slice_mel);
    }
    std::vector<uint64_t> seeds(static_cast<size_t>(batch));
    for (int64_t s = 0; s < batch; ++s) seeds[s] = static_cast<uint64_t>(s);
    MelInversionGpu inversion(p, batch);
    const Timing whole = time_runs(1, 3, [&] { inversion.invert(power.data(), batch, seeds.data(), 200,
                                                                opt.griffin_lim_iters, momentum); });
    // Griffin-Lim alone on the slices' linear magnitudes (the first slice's STFT magnitude tiled).
    const std::vector<complexf> X = stft(x.data(), L, p);
    const std::vector<float> mag = stft_magnitude(X.data(), slice_frames, p.n_freqs());
    std::vector<float> tiled(static_cast<size_t>(batch * slice_frames * p.n_freqs()));
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t t = 0; t < slice_frames; ++t)
        for (int k = 0; k < p.n_freqs(); ++k)
          tiled[(s * slice_frames + t) * p.n_freqs() + k] = mag[k * slice_frames + t];
    const DeviceBuffer<float> d_mag = DeviceBuffer<float>::from_host(tiled);
    GriffinLimGpu gl_batch(p, slice_frames, batch);
    const Timing gl_t = time_runs(1, 3, [&] {
      gl_batch.run_batch(d_mag.get(), batch, opt.griffin_lim_iters, momentum, seeds.data(), L);
    });
    const double batch_seconds = double(batch) * p.slice_seconds;
    out["listen_batch"] = {{"slices", batch}, {"nnls_iterations", 200}, {"gl_iterations", opt.griffin_lim_iters},
                           {"time_ms", whole.to_json()}, {"x_realtime", batch_seconds / (whole.median_ms * 1e-3)},
                           {"griffin_lim_time_ms", gl_t.to_json()},
                           {"griffin_lim_x_realtime", batch_seconds / (gl_t.median_ms * 1e-3)},
                           {"what", "MelInversionGpu::invert (host mel power in, NNLS + Griffin-Lim, samples back) "
                                    "and GriffinLimGpu::run_batch alone, one batch of 10 s slices"}};
  }
  return out;
}

}  // namespace ds::bench
