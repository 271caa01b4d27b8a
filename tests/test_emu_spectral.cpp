// Emulated spectral kernels (kernels/spectral.cu run by kernels/emu) against the CPU reference
// (audio/mel_cpu.h) and obvious loops, on awkward sizes with every output poisoned with NaN first; and
// the whole GPU mel pipeline with kissfft standing in for cuFFT and a column-major GEMM for cuBLAS, fed
// the very argument sets MelGpu hands to cufftPlanMany and cublasSgemmStridedBatched (audio/mel_gpu.h),
// against mel_image on real music.
//
// Tolerances: framing, |X|², dB, the [−1, 1] map and the resize evaluate the reference's expressions
// (float products; dB, map and resize in double) with the same libm, so they must match bit for bit.
// The pipeline differs from mel_image only in the mel projection's accumulation (float here as in
// cuBLAS, double in the reference): see that test.
#include <doctest/doctest.h>

#include "tests/mel_gpu_emulated.h"

#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <kiss_fftr.h>

#include "audio/mel_cpu.h"
#include "audio/mel_gpu.h"
#include "audio/mel_params.h"
#include "kernels/spectral.h"
#include "tests/test_util.h"

namespace {

using ds::test::count_mismatches;
using ds::test::kNaN;
using ds::test::random_floats;
using ds::test::read_song;

// Sample i of signal x padded by n_fft/2 on each side as np.pad(mode='constant' or 'reflect') does for
// pads shorter than the signal.
float padded_sample(const float* x, int64_t L, int64_t i, bool reflect) {
  if (i >= 0 && i < L) return x[i];
  if (!reflect) return 0.0f;
  if (i < 0) return x[-i];
  return x[2 * (L - 1) - i];
}

// The obvious framing loop: row s·frames + t, column j = window[j]·padded_s[t·hop + j].
std::vector<float> frames_reference(const std::vector<float>& audio, const std::vector<float>& window,
                                    int64_t n_signals, int64_t L, int64_t stride, int n_fft, int hop, int n_frames,
                                    bool reflect) {
  std::vector<float> out(static_cast<size_t>(n_signals * n_frames * n_fft));
  for (int64_t s = 0; s < n_signals; ++s)
    for (int t = 0; t < n_frames; ++t)
      for (int j = 0; j < n_fft; ++j)
        out[(s * n_frames + t) * n_fft + j] =
            window[j] * padded_sample(audio.data() + s * stride, L, int64_t(t) * hop + j - n_fft / 2, reflect);
  return out;
}

}  // namespace

TEST_CASE("emu spectral frame_window: centred framing and window, zero and reflect padding") {
  std::mt19937 rng(31);
  struct Case {
    int n_fft, hop;
    int64_t L, stride;
  };
  // L not a multiple of hop; the stride leaves gaps between signals (garbage there must not be read).
  for (const Case c : {Case{512, 160, 3001, 3017}, Case{2048, 431, 5003, 5003}, Case{2048, 512, 1500, 1600}}) {
    for (int pad_mode : {0, 1}) {
      CAPTURE(c.n_fft);
      CAPTURE(c.L);
      CAPTURE(pad_mode);
      const int64_t n_signals = 3;
      const int n_frames = static_cast<int>(1 + c.L / c.hop);
      std::vector<float> audio = random_floats(static_cast<size_t>(n_signals * c.stride), -1, 1, rng);
      for (int64_t s = 0; s < n_signals; ++s)  // the gaps: poison that would show if read
        for (int64_t i = c.L; i < c.stride; ++i) audio[s * c.stride + i] = kNaN;
      const std::vector<float> window = ds::hann_window_periodic(c.n_fft);
      std::vector<float> got(static_cast<size_t>(n_signals * n_frames * c.n_fft), kNaN);
      ds::kemu::frame_window(got.data(), audio.data(), window.data(), n_signals, c.L, c.stride, c.n_fft, c.hop,
                             n_frames, pad_mode, nullptr);
      CHECK(count_mismatches(got, frames_reference(audio, window, n_signals, c.L, c.stride, c.n_fft, c.hop, n_frames,
                                                   pad_mode == 1)) == 0);
    }
  }
}

TEST_CASE("emu spectral power_spectrum: |X|^2 of awkward counts") {
  std::mt19937 rng(32);
  for (int64_t count : {1, 255, 257, 100003}) {
    CAPTURE(count);
    const std::vector<float> parts = random_floats(static_cast<size_t>(2 * count), -50, 50, rng);
    std::vector<float2> spectrum(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) spectrum[i] = {parts[2 * i], parts[2 * i + 1]};
    std::vector<float> got(static_cast<size_t>(count), kNaN), want(static_cast<size_t>(count));
    ds::kemu::power_spectrum(got.data(), spectrum.data(), count, nullptr);
    for (int64_t i = 0; i < count; ++i) want[i] = spectrum[i].x * spectrum[i].x + spectrum[i].y * spectrum[i].y;
    CHECK(count_mismatches(got, want) == 0);
  }
}

TEST_CASE("emu spectral power_to_db: per-slice reference, amin and top_db clip as mel_cpu's power_to_db") {
  std::mt19937 rng(33);
  const int64_t n_slices = 3, per_slice = 128 * 37 + 5;  // not a multiple of the block
  // Powers spread over 16 decades (so the 80 dB clip bites), exact zeros (below amin), and slices whose
  // scales differ by 10^4 (so a shared reference would be wrong).
  std::vector<float> power(static_cast<size_t>(n_slices * per_slice));
  std::uniform_real_distribution<float> exponent(-14, 2);
  for (int64_t s = 0; s < n_slices; ++s)
    for (int64_t i = 0; i < per_slice; ++i)
      power[s * per_slice + i] = i % 97 == 0 ? 0.0f : std::pow(10.0f, exponent(rng)) * std::pow(100.0f, float(s));
  for (double fixed_ref : {-1.0, 1.0, 1e-3}) {
    for (double top_db : {80.0, 0.0}) {
      CAPTURE(fixed_ref);
      CAPTURE(top_db);
      ds::MelParams p;
      p.ref = fixed_ref;
      p.top_db = top_db;
      std::vector<float> got(power.size(), kNaN), refs(n_slices, kNaN);
      ds::kemu::power_to_db(got.data(), refs.data(), power.data(), n_slices, per_slice, p.amin, p.top_db, p.ref,
                            nullptr);
      std::vector<float> want;
      size_t clipped = 0;
      for (int64_t s = 0; s < n_slices; ++s) {
        double ref_used = 0;
        // The kernel computes in double as mel_cpu's double power_to_db does (bit for bit); the float one,
        // mel_image's, has its own float ln (within 3e-5 dB of it, tests/test_unit_mel_cpu.cpp).
        const std::vector<double> slice64(power.begin() + s * per_slice, power.begin() + (s + 1) * per_slice);
        const std::vector<float> db = ds::power_to_db(slice64.data(), per_slice, p, &ref_used);
        CHECK(refs[s] == static_cast<float>(ref_used));
        const float lowest = *std::min_element(db.begin(), db.end());
        clipped += std::count(db.begin(), db.end(), lowest);
        want.insert(want.end(), db.begin(), db.end());
      }
      CHECK(count_mismatches(got, want) == 0);
      if (top_db > 0) CHECK(clipped > size_t(n_slices) * 100);  // the clip really happened
      // In-place use (MelGpu runs it so) gives the same values.
      std::vector<float> inplace = power;
      ds::kemu::power_to_db(inplace.data(), nullptr, inplace.data(), n_slices, per_slice, p.amin, p.top_db, p.ref,
                            nullptr);
      CHECK(count_mismatches(inplace, want) == 0);
    }
  }
}

TEST_CASE("emu spectral db_to_unit: the affine map of mel_params.h") {
  std::mt19937 rng(34);
  for (int64_t n : {1, 257, 100003}) {
    for (double top_db : {80.0, 60.0}) {
      const std::vector<float> db = random_floats(static_cast<size_t>(n), -float(top_db), 0, rng);
      std::vector<float> got(static_cast<size_t>(n), kNaN), want(static_cast<size_t>(n));
      ds::kemu::db_to_unit(got.data(), db.data(), n, top_db, nullptr);
      for (int64_t i = 0; i < n; ++i) want[i] = static_cast<float>(ds::db_to_unit(db[i], top_db));
      CHECK(count_mismatches(got, want) == 0);
      CHECK(*std::min_element(got.begin(), got.end()) >= -1.0f);
      CHECK(*std::max_element(got.begin(), got.end()) <= 1.0f);
    }
  }
}

TEST_CASE("emu spectral resize_antialiased: as mel_cpu's resize_image_antialiased") {
  std::mt19937 rng(35);
  struct Case {
    int in_h, in_w, out_h, out_w;
  };
  // The seed layout (431 → 128 columns, rows kept), odd shrinks and growths on both axes.
  for (const Case c : {Case{128, 431, 128, 128}, Case{37, 130, 16, 128}, Case{9, 5, 20, 13}, Case{64, 64, 64, 64}}) {
    CAPTURE(c.in_h);
    CAPTURE(c.in_w);
    CAPTURE(c.out_h);
    CAPTURE(c.out_w);
    const int64_t n_images = 3;
    const std::vector<float> in = random_floats(static_cast<size_t>(n_images * c.in_h * c.in_w), -80, 0, rng);
    std::vector<float> got(static_cast<size_t>(n_images * c.out_h * c.out_w), kNaN);
    std::vector<double> tmp(static_cast<size_t>(n_images * c.in_h * c.out_w), std::nan(""));
    ds::kemu::resize_antialiased(got.data(), tmp.data(), in.data(), n_images, c.in_h, c.in_w, c.out_h, c.out_w,
                                 nullptr);
    std::vector<float> want(got.size());
    for (int64_t i = 0; i < n_images; ++i)
      ds::resize_image_antialiased(want.data() + i * c.out_h * c.out_w, in.data() + i * c.in_h * c.in_w, c.in_h,
                                   c.in_w, c.out_h, c.out_w);
    CHECK(count_mismatches(got, want) == 0);
  }
}

TEST_CASE("emu spectral cpu-emulated pipeline: MelGpu's steps and library arguments vs mel_image on music") {
  int sr = 0;
  const double slice_seconds = 1.5;
  const std::vector<float> song = read_song(40.0, 3 * slice_seconds + 0.25, &sr);
  for (const std::string preset : {"default", "seed"}) {
    for (const std::string pad_mode : {"constant", "reflect"}) {
      CAPTURE(preset);
      CAPTURE(pad_mode);
      ds::MelParams p = ds::mel_preset(preset, sr, slice_seconds);
      p.pad_mode = pad_mode;
      // Short slices at 44.1 kHz: no hop gives exactly 512 frames (⌊L/511⌋ gives 513 here), so keep the
      // preset's hop and take the frames it gives.
      if (!p.resize_w) p.frames = static_cast<int>(p.stft_frames(p.slice_samples()));
      const int64_t L = p.slice_samples(), n_slices = 3;
      const int64_t stride = L + sr / 16;  // slices not back to back: the stride must be honoured
      REQUIRE(2 * stride + L <= int64_t(song.size()));
      // The same steps, in the same order, as MelGpu::compute (tests/mel_gpu_emulated.h).
      std::vector<float> refs;
      const std::vector<float> image = ds::test::mel_gpu_emulated(p, song.data(), n_slices, stride, &refs);
      const int64_t image_size = int64_t(p.image_height()) * p.image_width();

      // Every step feeds the next, so one comparison at the end checks them all.
      double max_err = 0, max_ref_err = 0;
      for (int64_t s = 0; s < n_slices; ++s) {
        double ref_used = 0;
        const std::vector<float> want = ds::mel_image(song.data() + s * stride, L, p, &ref_used);
        REQUIRE(int64_t(want.size()) == image_size);
        for (int64_t i = 0; i < image_size; ++i) {
          const double d = std::abs(double(image[s * image_size + i]) - want[i]);
          max_err = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(max_err, d);
        }
        max_ref_err = std::max(max_ref_err, std::abs(refs[s] - ref_used) / ref_used);
      }
      // The differences from mel_image: the FFT's float rounding (kissfft here, FFTW there) and the mel
      // projection's float accumulation (cuBLAS's, here in k order) against the reference's double: a
      // relative error of about n_freqs·2^-24 ≈ 6e-5 in the worst case, ~1e-6 typically, i.e.
      // 10·log10(1 + 1e-6) ≈ 4e-6 dB, 1e-7 on the [−1, 1] scale (÷ 40); values near the −80 dB clip can
      // move it by far more: bands near the clip are ~1e-8 of the loudest bins' power, whose FFT
      // rounding then reaches ~1e-4 relative (4e-4 dB, 1e-5 here). Measured: 9.4e-6 (default preset),
      // 3.8e-6 (seed), so 1e-5 has a margin under 2× (tests/test_emu_mel_path.cpp: more sizes).
      MESSAGE(preset << " " << pad_mode << ": max |image − mel_image| = " << max_err
                     << ", max relative ref error = " << max_ref_err);
      CHECK(max_err < 1e-5);
      CHECK(max_ref_err < 1e-5);
    }
  }
}

TEST_CASE("unit spectral library arguments: cuFFT layout and cuBLAS operand roles for the presets") {
  for (const std::string preset : {"default", "seed"}) {
    const ds::MelParams p = ds::mel_preset(preset);
    const int64_t frames = p.stft_frames(p.slice_samples());
    const ds::StftFftLayout l = ds::stft_fft_layout(p, 7);
    CHECK(l.n == 2048);
    CHECK(l.inembed == 2048);  // non-null embeds: cufftPlanMany honours the strides and distances
    CHECK(l.onembed == 1025);
    CHECK(l.idist == 2048);
    CHECK(l.odist == 1025);
    CHECK(l.istride == 1);
    CHECK(l.ostride == 1);
    CHECK(l.batch == 7 * frames);
    const ds::MelProjectionGemm g = ds::mel_projection_gemm(p, 7);
    CHECK(g.m == frames);
    CHECK(g.n == 128);
    CHECK(g.k == 1025);
    CHECK(g.stride_b == 0);
    CHECK(g.batch_count == 7);
  }
  CHECK(ds::mel_preset("default").stft_frames(ds::mel_preset("default").slice_samples()) == 512);
  // An hour in one batch still fits cuFFT's int sizes; a day does not and is refused by name.
  CHECK_NOTHROW(ds::stft_fft_layout(ds::mel_preset("default"), 360));
  CHECK_THROWS_AS(ds::stft_fft_layout(ds::mel_preset("default"), 8640), std::invalid_argument);
  // As mel_cpu: 'reflect' needs a slice longer than n_fft/2 (refused before any device call).
  ds::MelParams short_reflect = ds::mel_preset("default", 22050, 1000.0 / 22050);
  short_reflect.pad_mode = "reflect";
  short_reflect.frames = static_cast<int>(short_reflect.stft_frames(short_reflect.slice_samples()));
  CHECK_THROWS_AS(ds::MelGpu(short_reflect, 1), std::invalid_argument);
}
