// Emulated Griffin-Lim kernels (kernels/griffin_lim.cu run by kernels/emu) against the CPU reference
// (audio/griffin_lim.h) on awkward sizes with every output poisoned first; and GriffinLimGpu's whole
// algorithm with kissfft standing in for cuFFT — fed the layouts GriffinLimGpu hands to cufftPlanMany,
// the C2R stand-in scribbling over its input as cuFFT may — against griffin_lim on real music.
//
// Tolerances: every kernel evaluates the reference's float expressions in the same order with the same
// libm (hypotf, cosf, sinf), and the stand-ins are the very kissfft calls stft/istft make, so kernels and
// pipeline must match bit for bit; the pipeline's 1e-5 bar is there only to print a scale if they do not.
#include <doctest/doctest.h>

#include "tests/cufft_stand_in.h"

#include <sndfile.h>

#include <kiss_fftr.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "audio/griffin_lim.h"
#include "audio/griffin_lim_gpu.h"
#include "audio/mel_params.h"
#include "engine/core/rng.h"
#include "kernels/griffin_lim.h"
#include "kernels/spectral.h"
#include "tests/test_util.h"

namespace {

using ds::complexf;
using ds::test::count_mismatches;
using ds::test::c2r_stand_in;
using ds::test::kNaN;
using ds::test::read_song;

float2* as_float2(complexf* p) { return reinterpret_cast<float2*>(p); }
const float2* as_float2(const complexf* p) { return reinterpret_cast<const float2*>(p); }

ds::MelParams stft_params(int n_fft, int win, int hop) {
  ds::MelParams p = ds::mel_preset("default");
  p.n_fft = n_fft;
  p.win = win;
  p.hop = hop;
  return p;
}

// GriffinLimGpu::run with kemu kernels and the stand-ins: the same buffers, steps and order.
struct EmulatedGriffinLim {
  bool input_scribbled = false;  // the last C2R left its input (angles) NaN

  std::vector<float> run(const ds::MelParams& p, int64_t frames, const float* magnitude_host, int iters,
                         float momentum, uint64_t seed, int64_t length, bool random_init) {
    length = ds::griffin_lim_length(p, frames, length);
    const int n_freqs = p.n_freqs();
    const int64_t n = frames * n_freqs;
    const ds::StftFftLayout r2c = ds::griffin_lim_r2c_layout(p, frames);
    const ds::IstftFftLayout c2r = ds::griffin_lim_c2r_layout(p, frames);
    const std::vector<float> window = ds::stft_window(p);
    const std::vector<float> wss = ds::istft_window_sum_square(p, frames, length);
    std::vector<float> magnitude_in(magnitude_host, magnitude_host + n);
    std::vector<float> magnitude(static_cast<size_t>(n), kNaN);
    std::vector<float2> angles(static_cast<size_t>(n), float2{kNaN, kNaN});
    std::vector<float2> tprev(static_cast<size_t>(n), float2{kNaN, kNaN});
    std::vector<float2> rebuilt(static_cast<size_t>(n), float2{kNaN, kNaN});
    std::vector<float> frame_rows(static_cast<size_t>(frames * p.n_fft), kNaN);
    std::vector<float> signal(static_cast<size_t>(length), kNaN);

    auto inverse_stft = [&] {
      ds::kemu::clear_edge_imaginary(angles.data(), frames, n_freqs, nullptr);
      c2r_stand_in(c2r, angles.data(), frame_rows.data());
      ds::kemu::overlap_add(signal.data(), frame_rows.data(), window.data(), wss.data(), frames, p.n_fft, p.hop,
                            p.n_fft / 2, length, nullptr);
    };
    ds::kemu::transpose_magnitude(magnitude.data(), magnitude_in.data(), n_freqs, frames, nullptr);
    if (random_init)
      ds::kemu::random_phase_init(angles.data(), magnitude.data(), seed, n, nullptr);
    else
      ds::kemu::zero_phase_init(angles.data(), magnitude.data(), n, nullptr);
    std::fill(tprev.begin(), tprev.end(), float2{0.0f, 0.0f});  // the cudaMemsetAsync
    for (int it = 0; it < iters; ++it) {
      inverse_stft();
      ds::kemu::frame_window(frame_rows.data(), signal.data(), window.data(), 1, length, length, p.n_fft, p.hop,
                             static_cast<int>(frames), p.pad_mode == "reflect" ? 1 : 0, nullptr);
      ds::test::r2c_stand_in(r2c, frame_rows.data(), rebuilt.data());
      ds::kemu::griffin_lim_phase_update(angles.data(), tprev.data(), rebuilt.data(), magnitude.data(), n, momentum,
                                         nullptr);
    }
    inverse_stft();
    input_scribbled = std::all_of(angles.begin(), angles.end(), [](float2 z) { return std::isnan(z.x); });
    return signal;
  }
};

}  // namespace

TEST_CASE("emu griffin-lim phase_update: bit for bit the CPU rule, with and without magnitude") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uni(-3, 3);
  for (const int64_t n : {int64_t(1), int64_t(5), int64_t(257), int64_t(4099)}) {
    for (const float momentum : {0.0f, 0.5f, 0.99f}) {
      for (const bool with_magnitude : {true, false}) {
        CAPTURE(n);
        CAPTURE(momentum);
        CAPTURE(with_magnitude);
        std::vector<complexf> rebuilt(n), tprev(n);
        std::vector<float> magnitude(n);
        for (int64_t i = 0; i < n; ++i) {
          rebuilt[i] = {uni(rng), uni(rng)};
          tprev[i] = {uni(rng), uni(rng)};
          magnitude[i] = std::fabs(uni(rng));
        }
        // The edges of the rule: an exact cancellation (a = 0 must stay 0, not NaN), huge values (|a|
        // overflows x² + y² but not hypot), a denormal, an all-zero previous spectrum.
        const float accel = momentum / (1.0f + momentum);
        if (n > 4) {
          tprev[1] = {2.0f, -1.0f};
          rebuilt[1] = {2.0f * accel, -1.0f * accel};
          rebuilt[2] = {3e38f, -3e38f};
          tprev[2] = {0.0f, 0.0f};
          rebuilt[3] = {1e-40f, 0.0f};
          tprev[3] = {0.0f, 0.0f};
          magnitude[4] = 0.0f;
        }
        const float* mag = with_magnitude ? magnitude.data() : nullptr;
        std::vector<complexf> want_angles(n, complexf(kNaN, kNaN)), want_tprev = tprev;
        ds::griffin_lim_phase_update(want_angles.data(), want_tprev.data(), rebuilt.data(), mag, n, momentum);
        std::vector<complexf> got_angles(n, complexf(kNaN, kNaN)), got_tprev = tprev;
        ds::kemu::griffin_lim_phase_update(as_float2(got_angles.data()), as_float2(got_tprev.data()),
                                           as_float2(rebuilt.data()), mag, n, momentum, nullptr);
        CHECK(count_mismatches(got_angles.data(), want_angles.data(), n) == 0);
        CHECK(count_mismatches(got_tprev.data(), want_tprev.data(), n) == 0);
        // Not vacuous: the rule produced finite values of the magnitude asked for.
        CHECK(std::all_of(got_angles.begin(), got_angles.end(),
                          [](complexf z) { return std::isfinite(z.real()) && std::isfinite(z.imag()); }));
        if (with_magnitude) CHECK(std::abs(got_angles[0]) == doctest::Approx(magnitude[0]).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("emu griffin-lim overlap_add: C2R frames + overlap-add equal istft, trimmed, cut and zero-extended") {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uni(-1, 1);
  struct Case {
    int n_fft, win, hop;
    int64_t frames;
  };
  // hop not dividing n_fft, a window shorter than n_fft (zero ends), a single frame, hop > n_fft/2.
  for (const Case c : {Case{512, 512, 160, 23}, Case{1024, 800, 200, 17}, Case{2048, 2048, 431, 9},
                       Case{256, 256, 200, 1}, Case{256, 256, 200, 6}}) {
    const ds::MelParams p = stft_params(c.n_fft, c.win, c.hop);
    const int n_freqs = p.n_freqs();
    std::vector<complexf> spectrum(static_cast<size_t>(c.frames * n_freqs));
    for (complexf& z : spectrum) z = {30 * uni(rng), 30 * uni(rng)};
    const int64_t natural = p.hop * (c.frames - 1);
    // librosa's default, shorter, and longer than the frames reach (zero-extended); all give c.frames.
    for (const int64_t length : {natural, natural + p.hop - 1, natural + p.hop / 3}) {
      CAPTURE(c.n_fft);
      CAPTURE(c.hop);
      CAPTURE(c.frames);
      CAPTURE(length);
      if (length == 0) continue;  // one frame, librosa's default length: nothing to compare
      REQUIRE(p.stft_frames(length) == c.frames);
      const std::vector<float> want = ds::istft(spectrum.data(), c.frames, p, length);
      const ds::IstftFftLayout layout = ds::griffin_lim_c2r_layout(p, c.frames);
      std::vector<complexf> c2r_input = spectrum;
      std::vector<float> frames(static_cast<size_t>(c.frames * p.n_fft), kNaN);
      c2r_stand_in(layout, as_float2(c2r_input.data()), frames.data());
      const std::vector<float> window = ds::stft_window(p);
      const std::vector<float> wss = ds::istft_window_sum_square(p, c.frames, length);
      std::vector<float> got(static_cast<size_t>(length), kNaN);
      ds::kemu::overlap_add(got.data(), frames.data(), window.data(), wss.data(), c.frames, p.n_fft, p.hop,
                            p.n_fft / 2, length, nullptr);
      REQUIRE(want.size() == got.size());
      CHECK(count_mismatches(got.data(), want.data(), got.size()) == 0);
      CHECK(*std::max_element(want.begin(), want.end()) > 0.0f);  // not an all-zero comparison
    }
  }
}

TEST_CASE("emu griffin-lim window_sum_square: librosa's window_sumsquare for Hann, hop n_fft/4") {
  // An independent check of the precomputed normaliser: the periodic Hann's squares overlap-added at hop
  // n_fft/4 sum to 3/2 everywhere the four frames overlap (Σ_k cos² terms: 4·(3/8)); inside 1e-6 (float
  // accumulation of four terms ≤ 1).
  const ds::MelParams p = stft_params(1024, 1024, 256);
  const int64_t frames = 40, length = p.hop * (frames - 1);
  const std::vector<float> wss = ds::istft_window_sum_square(p, frames, length);
  REQUIRE(int64_t(wss.size()) == length);
  for (int64_t i = p.n_fft; i < length - p.n_fft; ++i) REQUIRE(std::fabs(wss[i] - 1.5f) < 1e-6f);
  // The first output sample (j = n_fft/2) is the centre of frame 0 (w = 1) and a quarter into frame 1
  // (w = 1/2): 1 + 1/4.
  CHECK(wss[0] == doctest::Approx(1.25).epsilon(1e-6));
}

TEST_CASE("emu griffin-lim random_phase_init, zero_phase_init, transpose, edge bins: equal the CPU") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uni(0, 2);
  // n not a multiple of 4 (a partial last Philox tuple) and a single element.
  for (const int64_t n : {int64_t(1), int64_t(6), int64_t(4097)}) {
    CAPTURE(n);
    std::vector<float> magnitude(n);
    for (float& m : magnitude) m = uni(rng);
    for (const uint64_t seed : {uint64_t(1234), uint64_t(0xDEADBEEFCAFEULL)}) {
      std::vector<float> u(n);
      ds::Philox(seed, 0).fill_uniform(u.data(), n);  // griffin_lim's initial phases
      std::vector<complexf> want(n);
      for (int64_t i = 0; i < n; ++i) want[i] = std::polar(magnitude[i], static_cast<float>(2.0 * M_PI) * u[i]);
      std::vector<complexf> got(n, complexf(kNaN, kNaN));
      ds::kemu::random_phase_init(as_float2(got.data()), magnitude.data(), seed, n, nullptr);
      CHECK(count_mismatches(got.data(), want.data(), n) == 0);
    }
    std::vector<complexf> zero(n, complexf(kNaN, kNaN)), want_zero(n);
    for (int64_t i = 0; i < n; ++i) want_zero[i] = {magnitude[i], 0.0f};
    ds::kemu::zero_phase_init(as_float2(zero.data()), magnitude.data(), n, nullptr);
    CHECK(count_mismatches(zero.data(), want_zero.data(), n) == 0);
  }

  const int n_freqs = 13;
  const int64_t frames = 7;
  std::vector<float> in(static_cast<size_t>(n_freqs * frames));
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  std::vector<float> got(in.size(), kNaN);
  ds::kemu::transpose_magnitude(got.data(), in.data(), n_freqs, frames, nullptr);
  size_t bad = 0;
  for (int64_t t = 0; t < frames; ++t)
    for (int k = 0; k < n_freqs; ++k) bad += got[t * n_freqs + k] != in[k * frames + t];
  CHECK(bad == 0);

  std::vector<float2> spectrum(static_cast<size_t>(frames * n_freqs), float2{1.0f, 2.0f});
  ds::kemu::clear_edge_imaginary(spectrum.data(), frames, n_freqs, nullptr);
  for (int64_t t = 0; t < frames; ++t)
    for (int k = 0; k < n_freqs; ++k) {
      const bool edge = k == 0 || k == n_freqs - 1;
      REQUIRE(spectrum[t * n_freqs + k].x == 1.0f);
      REQUIRE(spectrum[t * n_freqs + k].y == (edge ? 0.0f : 2.0f));
    }
}

TEST_CASE("emu griffin-lim cpu-emulated pipeline: GriffinLimGpu's steps and FFT layouts vs griffin_lim on music") {
  int sr = 0;
  const std::vector<float> song = read_song(50.0, 2.0, &sr);
  struct Case {
    const char* pad_mode;
    bool random_init;
    float momentum;
  };
  for (const Case c : {Case{"constant", true, 0.99f}, Case{"reflect", false, 0.99f}, Case{"constant", true, 0.0f}}) {
    ds::MelParams p = stft_params(1024, 1024, 256);
    p.sr = sr;
    p.pad_mode = c.pad_mode;
    const std::string pad_name = c.pad_mode;
    CAPTURE(pad_name);
    CAPTURE(c.random_init);
    CAPTURE(c.momentum);
    const int64_t L = static_cast<int64_t>(song.size()), frames = p.stft_frames(L);
    const std::vector<complexf> X = ds::stft(song.data(), L, p);
    const std::vector<float> target = ds::stft_magnitude(X.data(), frames, p.n_freqs());
    const int iters = 12;
    const uint64_t seed = 2024;
    const std::vector<float> want = ds::griffin_lim(target.data(), frames, p, iters, c.momentum, seed, L, c.random_init);
    EmulatedGriffinLim emulated;
    const std::vector<float> got = emulated.run(p, frames, target.data(), iters, c.momentum, seed, L, c.random_init);
    REQUIRE(got.size() == want.size());
    // The C2R stand-in really did destroy its input, so nothing downstream read the consumed angles.
    CHECK(emulated.input_scribbled);
    double peak = 0, err = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      peak = std::max(peak, std::fabs(double(want[i])));
      const double d = std::fabs(double(got[i]) - want[i]);
      err = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(err, d);
    }
    const size_t differing = count_mismatches(got.data(), want.data(), got.size());
    const std::string phases = c.random_init ? "random" : "zero";
    MESSAGE(pad_name << ", " << phases << " phases, momentum " << c.momentum
                     << ": max |emulated − griffin_lim| = " << err << " (peak " << peak << "), samples differing: "
                     << differing);
    REQUIRE(peak > 0.05);  // real music came back, not silence
    // Same arithmetic in the same order (see the header): every sample equal. The 1e-5 bar (relative to
    // the peak) is the scale to read if that ever breaks: Griffin-Lim amplifies rounding (summing
    // overlap_add's frames in descending order instead already exceeds it after these 12 iterations),
    // and a wrong window, normalisation or momentum term gives errors of the order of the signal.
    CHECK(err < 1e-5 * peak);
    CHECK(differing == 0);
  }
}
