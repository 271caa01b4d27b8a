// perf driver for the CPU mel path (audio/mel_cpu.cpp): MelCpu::image of every 10 s slice of a signal, many
// times, with nothing else in the process (darkstar-bench also decodes, resamples and times SGEMM, which
// drown the mel path in a whole-process profile). Not part of the CMake build (a folder below bench/).
// Build and profile (one thread):
//   g++ -O3 -DNDEBUG -fopenmp -std=gnu++17 -g -I. bench/profile/mel_slices.cpp audio/mel_cpu.cpp
//       audio/mel_params.cpp -o /tmp/mel_slices -lfftw3f    (one line)
//   OMP_NUM_THREADS=1 perf record -e cpu-clock -g /tmp/mel_slices [song.f32] [repeats]
// song.f32: raw float32 mono at 22.05 kHz (bench/librosa_mel.py's resampled song written with
// x.tofile); without it a deterministic chirp in noise, 14 slices long. Prints ms per slice, wall clock
// and the process's CPU time (on a loaded machine the CPU time is the steadier of the two).
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "audio/mel_cpu.h"
#include "audio/mel_params.h"

int main(int argc, char** argv) {
  const ds::MelParams p = ds::mel_preset("default");
  const int64_t L = p.slice_samples();
  std::vector<float> x;
  if (argc > 1) {
    std::FILE* f = std::fopen(argv[1], "rb");
    if (!f) { std::perror(argv[1]); return 1; }
    float v;
    while (std::fread(&v, sizeof v, 1, f) == 1) x.push_back(v);
    std::fclose(f);
  } else {
    std::mt19937 rng(1);
    std::normal_distribution<float> noise(0.0f, 0.05f);
    x.resize(static_cast<size_t>(14 * L));
    for (size_t i = 0; i < x.size(); ++i) {
      const double t = static_cast<double>(i) / p.sr;
      x[i] = static_cast<float>(0.5 * std::sin(2 * 3.14159265358979 * (100 + 200 * t) * t)) + noise(rng);
    }
  }
  const int64_t n = static_cast<int64_t>(x.size()) / L;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 50;
  if (n < 1) { std::fprintf(stderr, "shorter than one slice\n"); return 1; }
  const ds::MelCpu mel(p);  // prepared once, as darkstar-bench and dataset preparation do
  double ref = 0, checksum = 0;
  const std::clock_t c0 = std::clock();
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r)
    for (int64_t s = 0; s < n; ++s) checksum += mel.image(x.data() + s * L, L, &ref)[7];
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double cpu_ms = 1e3 * static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  std::printf("%lld slices x %d: %.3f ms per slice wall, %.3f ms CPU (checksum %.9g)\n", static_cast<long long>(n),
              repeats, ms / double(n * repeats), cpu_ms / double(n * repeats), checksum);
  return 0;
}
