// `listen` on a GPU: the NNLS kernel (kernels/nnls.cu through MelInverseGpu) against the CPU NNLS, and the
// batched inversion (MelInversionGpu: NNLS + GriffinLimGpu::run_batch in chunks, a tail chunk included)
// against mel_to_linear + griffin_lim slice by slice, on real music at the default 128 × 512 layout.
//
// Tolerances. NNLS: the kernel does the CPU's double operations in the CPU's order with products that nvcc
// may not fuse (__dmul_rn/__dadd_rn), and double '/', sqrt and the final sqrtf are correctly rounded on the
// device (CUDA C++ Programming Guide, "Mathematical Functions": 0 ulp under the default -prec-div/-prec-sqrt),
// so the magnitudes must be equal bit for bit. Griffin-Lim: cuFFT against kissfft and the device's
// hypotf/cosf/sinf make the samples drift apart with iterations, as tests/gpu/test_gpu_griffin_lim.cpp
// measured (2.3e-6 of the peak at 2 iterations for a 1e-6 perturbation): 1e-4 of the peak at 2 iterations,
// and after 64 iterations the spectral convergence within 5% of the CPU's.
#include <doctest/doctest.h>

#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "audio/griffin_lim.h"
#include "audio/mel_cpu.h"
#include "audio/mel_inverse.h"
#include "audio/mel_inverse_gpu.h"
#include "audio/mel_inversion_batch.h"
#include "audio/mel_params.h"
#include "tests/test_util.h"

namespace {

using ds::test::count_mismatches;
using ds::test::max_ulps;
using ds::test::read_song;

}  // namespace

TEST_CASE("gpu nnls mel_to_linear_gpu: bit for bit the CPU NNLS on real music, 128 mels × 1025 bins") {
  int sr = 0;
  const std::vector<float> song = read_song(45.0, 10.0, &sr);
  ds::MelParams p = ds::mel_preset("default", sr, 10.0);
  const int64_t L = std::min<int64_t>(p.slice_samples(), static_cast<int64_t>(song.size()));
  const int64_t frames = p.stft_frames(L);
  const std::vector<float> filterbank = ds::mel_filterbank(p);
  const std::vector<float> power = ds::mel_power(song.data(), L, p);
  for (const int iters : {0, 200}) {
    CAPTURE(iters);
    const std::vector<float> want = ds::mel_to_linear(power.data(), filterbank.data(), p.n_mels, p.n_freqs(), frames, iters);
    const std::vector<float> got = ds::mel_to_linear_gpu(power.data(), filterbank.data(), p.n_mels, p.n_freqs(), frames, iters);
    REQUIRE(got.size() == want.size());
    MESSAGE("iters " << iters << ": max ulps GPU vs CPU " << max_ulps(got, want) << ", differing "
                     << count_mismatches(got, want));
    CHECK(count_mismatches(got, want) == 0);
    CHECK(*std::max_element(want.begin(), want.end()) > 0.0f);
  }
}

TEST_CASE("gpu listen batch: MelInversionGpu in chunks (5 slices, batch 2) against the CPU slice by slice") {
  int sr = 0;
  const int64_t n = 5;
  const std::vector<float> song = read_song(30.0, 12.0, &sr);
  const ds::MelParams p = ds::mel_preset("default", sr, 2.0);  // 2 s slices keep the CPU side short
  const int64_t L = p.slice_samples(), frames = p.stft_frames(L), per_slice_mel = int64_t(p.n_mels) * frames;
  REQUIRE(static_cast<int64_t>(song.size()) >= n * L);
  const std::vector<float> filterbank = ds::mel_filterbank(p);
  std::vector<float> power(static_cast<size_t>(n * per_slice_mel));
  for (int64_t s = 0; s < n; ++s) {
    const std::vector<float> m = ds::mel_power(song.data() + s * L, L, p, filterbank.data());
    std::copy(m.begin(), m.end(), power.begin() + s * per_slice_mel);
  }
  std::vector<uint64_t> seeds(n);
  for (int64_t s = 0; s < n; ++s) seeds[s] = 11 + s;
  ds::MelInversionGpu gpu(p, 2);
  const int nnls_iters = 200;

  // 2 Griffin-Lim iterations: close samples.
  const std::vector<float> short_run = gpu.invert(power.data(), n, seeds.data(), nnls_iters, 2, 0.99f);
  REQUIRE(static_cast<int64_t>(short_run.size()) == n * L);
  std::vector<std::vector<float>> magnitudes(n);
  for (int64_t s = 0; s < n; ++s) {
    CAPTURE(s);
    magnitudes[s] = ds::mel_to_linear(power.data() + s * per_slice_mel, filterbank.data(), p.n_mels, p.n_freqs(),
                                      frames, nnls_iters);
    const std::vector<float> want = ds::griffin_lim(magnitudes[s].data(), frames, p, 2, 0.99f, seeds[s], L);
    double peak = 0, err = 0;
    for (int64_t i = 0; i < L; ++i) {
      peak = std::max(peak, std::fabs(double(want[i])));
      const double d = std::fabs(double(short_run[s * L + i]) - want[i]);
      err = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(err, d);
    }
    MESSAGE("slice " << s << ", 2 iterations: max |GPU − CPU| = " << err << " (peak " << peak << ")");
    CHECK(peak > 0.01);
    CHECK(err < 1e-4 * peak);
  }

  // 64 iterations: the same quality per slice (the spectral convergence of the STFT magnitude reached).
  const std::vector<float> long_run = gpu.invert(power.data(), n, seeds.data(), nnls_iters, 64, 0.99f);
  for (int64_t s = 0; s < n; ++s) {
    CAPTURE(s);
    auto convergence_of = [&](const float* y) {
      const std::vector<ds::complexf> Y = ds::stft(y, L, p);
      const std::vector<float> achieved = ds::stft_magnitude(Y.data(), frames, p.n_freqs());
      return ds::spectral_convergence(magnitudes[s].data(), achieved.data(), frames * p.n_freqs());
    };
    const std::vector<float> cpu = ds::griffin_lim(magnitudes[s].data(), frames, p, 64, 0.99f, seeds[s], L);
    const double sc_cpu = convergence_of(cpu.data()), sc_gpu = convergence_of(long_run.data() + s * L);
    MESSAGE("slice " << s << ", 64 iterations: spectral convergence GPU " << sc_gpu << ", CPU " << sc_cpu);
    CHECK(std::fabs(sc_gpu - sc_cpu) <= 0.05 * sc_cpu);
  }

  // A batch that holds every slice gives each slice what the chunked run gave, to cuFFT's batch-size
  // dependent rounding at most (the same 1e-4 of the peak at 2 iterations).
  ds::MelInversionGpu whole(p, n);
  const std::vector<float> at_once = whole.invert(power.data(), n, seeds.data(), nnls_iters, 2, 0.99f);
  double peak = 0, err = 0;
  for (size_t i = 0; i < at_once.size(); ++i) {
    peak = std::max(peak, std::fabs(double(short_run[i])));
    err = std::max(err, std::fabs(double(at_once[i]) - short_run[i]));
  }
  MESSAGE("batch 5 vs batch 2: max difference " << err << " (peak " << peak << ")");
  CHECK(err <= 1e-4 * peak);
}
