// `listen` on CUDA, checked on the CPU: kernels/nnls.cu (run by kernels/emu) against the CPU NNLS
// (audio/mel_inverse.h) on awkward sizes; GriffinLimGpu::run_batch's steps (batched kernels, cuFFT layouts
// of slices × frames transforms, per-slice seeds) with kissfft standing in for cuFFT against griffin_lim
// slice by slice; and MelInversionGpu's chunking (invert_in_chunks itself, a batch that does not divide the
// count, a tail chunk) against inverting the slices one by one.
//
// Tolerances: none. The NNLS kernel evaluates mel_to_linear_power's double expressions in the same order
// (one frame per thread, sums ascending from 0, products unfused: __dmul_rn/__dadd_rn are plain IEEE
// operations on the host), the final sqrtf is correctly rounded on both; the Griffin-Lim kernels are the
// ones tests/test_emu_griffin_lim.cpp checks bit for bit and the stand-ins are the very kissfft calls
// stft/istft make. So every output must be equal byte for byte (count_mismatches == 0); the printed maximum
// difference is there only to give a scale if that ever breaks.
#include <doctest/doctest.h>

#include "tests/cufft_stand_in.h"

#include <sndfile.h>

#include <kiss_fftr.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "audio/griffin_lim.h"
#include "audio/griffin_lim_gpu.h"
#include "audio/mel_cpu.h"
#include "audio/mel_inverse.h"
#include "audio/mel_inverse_gpu.h"
#include "audio/mel_inversion_batch.h"
#include "audio/mel_params.h"
#include "kernels/griffin_lim.h"
#include "kernels/nnls.h"
#include "kernels/spectral.h"
#include "tests/test_util.h"

namespace {

using ds::test::count_mismatches;
using ds::test::c2r_stand_in;
using ds::test::kNaN;
using ds::test::read_song;

double max_abs_difference(const float* a, const float* b, size_t n) {
  double err = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(double(a[i]) - b[i]);
    err = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(err, d);
  }
  return err;
}

// MelInverseGpu::run with the kemu kernel: the same plan (plan_nnls, nnls_column_ranges), the scratch and
// the output poisoned first. Returns n_slices × frames × n_freqs.
std::vector<float> emulated_nnls(const float* mel_power, const std::vector<float>& filterbank, int n_mels, int n_freqs,
                                 int64_t n_slices, int64_t frames, int iters) {
  const ds::NnlsPlan plan = ds::plan_nnls(filterbank.data(), n_mels, n_freqs);
  std::vector<int> col_first, col_last;
  ds::nnls_column_ranges(plan, col_first, col_last);
  std::vector<double> scratch(static_cast<size_t>(ds::nnls_scratch_doubles(n_mels, n_freqs, n_slices * frames)),
                              std::numeric_limits<double>::quiet_NaN());
  std::vector<float> magnitude(static_cast<size_t>(n_slices * frames * n_freqs), kNaN);
  ds::kemu::nnls_mel_to_linear(magnitude.data(), scratch.data(), mel_power, filterbank.data(),
                               plan.explains_nothing ? nullptr : plan.g_pinv.data(), plan.row_begin.data(),
                               plan.row_end.data(), col_first.data(), col_last.data(), n_mels, n_freqs, n_slices,
                               frames, plan.step, iters, plan.explains_nothing, nullptr);
  return magnitude;
}

// Slice s of a frames × n_freqs-per-slice batch, as mel_to_linear's n_freqs × frames.
std::vector<float> slice_as_linear(const std::vector<float>& batch, int64_t s, int n_freqs, int64_t frames) {
  std::vector<float> out(static_cast<size_t>(n_freqs * frames));
  const float* in = batch.data() + s * frames * n_freqs;
  for (int64_t t = 0; t < frames; ++t)
    for (int k = 0; k < n_freqs; ++k) out[k * frames + t] = in[t * n_freqs + k];
  return out;
}

// GriffinLimGpu::iterate for n_slices slices with kemu kernels and the stand-ins: the same buffers (sized
// for `capacity` slices and poisoned, so a step reaching past n_slices' part or reading what it did not
// write shows), steps, offsets and layouts (griffin_lim_r2c_layout / c2r_layout of n_slices · frames).
// magnitude: n_slices × frames × n_freqs. Returns n_slices × length samples.
std::vector<float> emulated_griffin_lim_batch(const ds::MelParams& p, int64_t frames, int64_t capacity,
                                              const float* magnitude, int64_t n_slices, int iters, float momentum,
                                              const uint64_t* seeds, int64_t length, bool random_init) {
  REQUIRE(n_slices >= 1);
  REQUIRE(n_slices <= capacity);
  length = ds::griffin_lim_length(p, frames, length);
  const int n_freqs = p.n_freqs();
  const int64_t n = frames * n_freqs, all = n_slices * n;
  const ds::StftFftLayout r2c = ds::griffin_lim_r2c_layout(p, n_slices * frames);
  const ds::IstftFftLayout c2r = ds::griffin_lim_c2r_layout(p, n_slices * frames);
  const std::vector<float> window = ds::stft_window(p);
  const std::vector<float> wss = ds::istft_window_sum_square(p, frames, length);
  const int64_t max_length = int64_t(p.hop) * frames - 1;
  std::vector<float2> angles(static_cast<size_t>(capacity * n), float2{kNaN, kNaN});
  std::vector<float2> tprev(static_cast<size_t>(capacity * n), float2{kNaN, kNaN});
  std::vector<float2> rebuilt(static_cast<size_t>(capacity * n), float2{kNaN, kNaN});
  std::vector<float> frame_rows(static_cast<size_t>(capacity * frames * p.n_fft), kNaN);
  std::vector<float> signal(static_cast<size_t>(capacity * max_length), kNaN);
  auto inverse_stft = [&] {
    ds::kemu::clear_edge_imaginary(angles.data(), n_slices * frames, n_freqs, nullptr);
    c2r_stand_in(c2r, angles.data(), frame_rows.data());
    ds::kemu::overlap_add_batched(signal.data(), frame_rows.data(), window.data(), wss.data(), n_slices, frames,
                                  p.n_fft, p.hop, p.n_fft / 2, length, nullptr);
  };
  for (int64_t s = 0; s < n_slices; ++s) {
    if (random_init)
      ds::kemu::random_phase_init(angles.data() + s * n, magnitude + s * n, seeds[s], n, nullptr);
    else
      ds::kemu::zero_phase_init(angles.data() + s * n, magnitude + s * n, n, nullptr);
  }
  std::fill(tprev.begin(), tprev.begin() + all, float2{0.0f, 0.0f});  // the cudaMemsetAsync
  for (int it = 0; it < iters; ++it) {
    inverse_stft();
    ds::kemu::frame_window(frame_rows.data(), signal.data(), window.data(), n_slices, length, length, p.n_fft, p.hop,
                           static_cast<int>(frames), p.pad_mode == "reflect" ? 1 : 0, nullptr);
    ds::test::r2c_stand_in(r2c, frame_rows.data(), rebuilt.data());
    ds::kemu::griffin_lim_phase_update(angles.data(), tprev.data(), rebuilt.data(), magnitude, all, momentum, nullptr);
  }
  inverse_stft();
  return std::vector<float>(signal.begin(), signal.begin() + n_slices * length);
}

// Small, awkward STFT/mel parameters: n_freqs 126, 23 mels, hop not dividing n_fft, an odd sample count.
ds::MelParams small_params(int sr) {
  ds::MelParams p = ds::mel_preset("default");
  p.sr = sr;
  p.n_fft = p.win = 250;
  p.hop = 90;
  p.n_mels = 23;
  p.slice_seconds = 2401.0 / sr;
  p.frames = static_cast<int>(p.stft_frames(p.slice_samples()));
  return p;
}

// n slices of mel power (n × n_mels × frames) of real music at successive offsets.
std::vector<float> music_mel_power(const ds::MelParams& p, int64_t n, const std::vector<float>& song) {
  const int64_t L = p.slice_samples(), frames = p.stft_frames(L), per_slice = int64_t(p.n_mels) * frames;
  std::vector<float> out(static_cast<size_t>(n * per_slice));
  for (int64_t s = 0; s < n; ++s) {
    REQUIRE(static_cast<int64_t>(song.size()) >= (s + 1) * L);
    const std::vector<float> m = ds::mel_power(song.data() + s * L, L, p);
    REQUIRE(static_cast<int64_t>(m.size()) == per_slice);
    std::copy(m.begin(), m.end(), out.begin() + s * per_slice);
  }
  return out;
}

}  // namespace

TEST_CASE("emu nnls mel_to_linear: the GPU kernel equals the CPU NNLS bit for bit on awkward sizes") {
  int sr = 0;
  const std::vector<float> song = read_song(40.0, 1.0, &sr);

  SUBCASE("a Slaney filterbank, real music, three slices in one launch (159 frames: two blocks, one partial)") {
    ds::MelParams p = small_params(sr);
    p.slice_seconds = 4771.0 / sr;  // 1 + 4771 / 90 = 54 frames
    const int64_t L = p.slice_samples(), frames = p.stft_frames(L);
    REQUIRE(frames == 54);
    const int n_freqs = p.n_freqs();
    const std::vector<float> filterbank = ds::mel_filterbank(p);
    const std::vector<float> power = music_mel_power(p, 3, song);
    std::vector<float> previous;
    for (const int iters : {0, 1, 37}) {
      CAPTURE(iters);
      const std::vector<float> got = emulated_nnls(power.data(), filterbank, p.n_mels, n_freqs, 3, frames, iters);
      for (int64_t s = 0; s < 3; ++s) {
        CAPTURE(s);
        const std::vector<float> want = ds::mel_to_linear(power.data() + s * p.n_mels * frames, filterbank.data(),
                                                          p.n_mels, n_freqs, frames, iters);
        const std::vector<float> got_s = slice_as_linear(got, s, n_freqs, frames);
        const size_t bad = count_mismatches(got_s, want);
        if (bad) MESSAGE("max |emulated − CPU| = " << max_abs_difference(got_s.data(), want.data(), want.size()));
        CHECK(bad == 0);
        CHECK(*std::max_element(want.begin(), want.end()) > 0.0f);  // not an all-zero comparison
      }
      if (!previous.empty()) CHECK(count_mismatches(got, previous) > 0);  // the iterations changed something
      previous = got;
    }
  }

  SUBCASE("a random filterbank: interior zeros, an empty row, uncovered bins, non-monotone spans") {
    std::mt19937 rng(31);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    const int n_mels = 7, n_freqs = 19;
    const int64_t frames = 131, n_slices = 2;  // 262 frames: three blocks of 128, the last partial
    std::vector<float> filterbank(static_cast<size_t>(n_mels * n_freqs), 0.0f);
    for (int m = 0; m < n_mels; ++m) {
      if (m == 3) continue;  // an empty band
      const int begin = (m * 5) % 13, end = std::min(n_freqs - 2, begin + 4 + m % 3);  // bins 17, 18: no row
      for (int k = begin; k < end; ++k) filterbank[m * n_freqs + k] = (k == begin + 1) ? 0.0f : uni(rng);
    }
    std::vector<float> power(static_cast<size_t>(n_slices * n_mels * frames));
    for (float& v : power) v = uni(rng) * uni(rng) * 10.0f;
    for (const int iters : {0, 50}) {
      CAPTURE(iters);
      const std::vector<float> got = emulated_nnls(power.data(), filterbank, n_mels, n_freqs, n_slices, frames, iters);
      for (int64_t s = 0; s < n_slices; ++s) {
        const std::vector<float> want = ds::mel_to_linear(power.data() + s * n_mels * frames, filterbank.data(),
                                                          n_mels, n_freqs, frames, iters);
        CHECK(count_mismatches(slice_as_linear(got, s, n_freqs, frames), want) == 0);
        CHECK(*std::max_element(want.begin(), want.end()) > 0.0f);
      }
    }
  }

  SUBCASE("an all-zero filterbank: zeros, as the CPU") {
    const int n_mels = 5, n_freqs = 9;
    const int64_t frames = 3;
    const std::vector<float> filterbank(static_cast<size_t>(n_mels * n_freqs), 0.0f);
    const std::vector<float> power(static_cast<size_t>(n_mels * frames), 1.0f);
    const std::vector<float> got = emulated_nnls(power.data(), filterbank, n_mels, n_freqs, 1, frames, 10);
    CHECK(count_mismatches(slice_as_linear(got, 0, n_freqs, frames),
                           ds::mel_to_linear(power.data(), filterbank.data(), n_mels, n_freqs, frames, 10)) == 0);
  }
}

TEST_CASE("emu griffin-lim batched: run_batch's steps and layouts equal griffin_lim slice by slice") {
  int sr = 0;
  const std::vector<float> song = read_song(30.0, 1.0, &sr);
  ds::MelParams p = small_params(sr);
  const int64_t L = p.slice_samples(), frames = p.stft_frames(L);
  const int n_freqs = p.n_freqs();
  const int64_t n = frames * n_freqs;
  const int64_t capacity = 4;
  // Target magnitudes: the STFT magnitudes of four different excerpts, in the batch's spectrum layout.
  std::vector<float> magnitude(static_cast<size_t>(capacity * n));
  std::vector<std::vector<float>> linear(capacity);
  for (int64_t s = 0; s < capacity; ++s) {
    const std::vector<ds::complexf> X = ds::stft(song.data() + s * L, L, p);
    linear[s] = ds::stft_magnitude(X.data(), frames, n_freqs);
    for (int64_t t = 0; t < frames; ++t)
      for (int k = 0; k < n_freqs; ++k) magnitude[s * n + t * n_freqs + k] = linear[s][k * frames + t];
  }
  const uint64_t seeds[4] = {7, 8, 1234, 7};
  struct Case {
    int64_t n_slices;
    bool random_init;
    const char* pad_mode;
  };
  // The full batch, a short (tail) batch, a single slice, zero phases, reflect padding.
  for (const Case c : {Case{4, true, "constant"}, Case{3, true, "constant"}, Case{1, true, "reflect"},
                       Case{2, false, "reflect"}}) {
    p.pad_mode = c.pad_mode;
    CAPTURE(c.n_slices);
    CAPTURE(c.random_init);
    const std::string pad_name = c.pad_mode;
    CAPTURE(pad_name);
    const int iters = 6;
    const std::vector<float> got = emulated_griffin_lim_batch(p, frames, capacity, magnitude.data(), c.n_slices, iters,
                                                              0.99f, seeds, L, c.random_init);
    REQUIRE(static_cast<int64_t>(got.size()) == c.n_slices * L);
    for (int64_t s = 0; s < c.n_slices; ++s) {
      CAPTURE(s);
      const std::vector<float> want = ds::griffin_lim(linear[s].data(), frames, p, iters, 0.99f, seeds[s], L, c.random_init);
      const size_t bad = count_mismatches(got.data() + s * L, want.data(), want.size());
      if (bad) MESSAGE("max |batched − griffin_lim| = " << max_abs_difference(got.data() + s * L, want.data(), want.size()));
      CHECK(bad == 0);
      CHECK(*std::max_element(want.begin(), want.end()) > 0.01f);  // music, not silence
    }
  }
}

TEST_CASE("emu listen batching: chunks that do not divide the count equal inverting the slices one by one") {
  // slice_chunks itself: offsets, the tail, the edges.
  auto chunks_of = [](int64_t n, int64_t batch) {
    std::vector<int64_t> flat;
    for (const ds::SliceChunk& c : ds::slice_chunks(n, batch)) {
      flat.push_back(c.first);
      flat.push_back(c.count);
    }
    return flat;
  };
  CHECK(chunks_of(7, 3) == std::vector<int64_t>{0, 3, 3, 3, 6, 1});
  CHECK(chunks_of(6, 3) == std::vector<int64_t>{0, 3, 3, 3});
  CHECK(chunks_of(2, 64) == std::vector<int64_t>{0, 2});
  CHECK(chunks_of(0, 4).empty());
  CHECK_THROWS_AS(ds::slice_chunks(3, 0), std::invalid_argument);

  // The automatic chunk: half the free memory over the per-slice need, within [1, min(64, n)].
  const ds::MelParams full = ds::mel_preset("default");
  const size_t per_slice = ds::inversion_bytes_per_slice(full);
  // NNLS scratch alone is 512 frames × (3·1025 + 128) doubles = 13.1 MB: the estimate covers at least that.
  CHECK(per_slice > size_t(512) * (3 * 1025 + 128) * 8);
  CHECK(ds::auto_inversion_batch(full, 10 * per_slice, 100) == 5);
  CHECK(ds::auto_inversion_batch(full, per_slice, 100) == 1);  // never 0
  CHECK(ds::auto_inversion_batch(full, 1000 * per_slice, 100) == ds::kMaxAutoInversionBatch);
  CHECK(ds::auto_inversion_batch(full, 1000 * per_slice, 3) == 3);

  // MelInversionGpu::invert's loop (invert_in_chunks itself) with emulated chunks: 7 slices, batch 3
  // (3 + 3 + a tail of 1), each slice its own seed, against mel_to_linear + griffin_lim slice by slice.
  int sr = 0;
  const std::vector<float> song = read_song(20.0, 1.0, &sr);
  const ds::MelParams p = small_params(sr);
  const int64_t L = p.slice_samples(), frames = p.stft_frames(L);
  const int n_freqs = p.n_freqs();
  const int64_t n_slices = 7, batch = 3, per_slice_mel = int64_t(p.n_mels) * frames;
  const std::vector<float> filterbank = ds::mel_filterbank(p);
  const std::vector<float> power = music_mel_power(p, n_slices, song);
  std::vector<uint64_t> seeds(n_slices);
  for (int64_t s = 0; s < n_slices; ++s) seeds[s] = 100 + 3 * s;
  const int nnls_iters = 25, gl_iters = 4;
  std::vector<int64_t> seen_counts;
  const std::vector<float> got = ds::invert_in_chunks(n_slices, batch, L, [&](const ds::SliceChunk& c, float* out) {
    seen_counts.push_back(c.count);
    const std::vector<float> magnitude = emulated_nnls(power.data() + c.first * per_slice_mel, filterbank, p.n_mels,
                                                       n_freqs, c.count, frames, nnls_iters);
    const std::vector<float> audio = emulated_griffin_lim_batch(p, frames, batch, magnitude.data(), c.count, gl_iters,
                                                                0.99f, seeds.data() + c.first, L, true);
    REQUIRE(static_cast<int64_t>(audio.size()) == c.count * L);
    std::copy(audio.begin(), audio.end(), out);
  });
  CHECK(seen_counts == std::vector<int64_t>{3, 3, 1});
  REQUIRE(static_cast<int64_t>(got.size()) == n_slices * L);
  for (int64_t s = 0; s < n_slices; ++s) {
    CAPTURE(s);
    const std::vector<float> magnitude = ds::mel_to_linear(power.data() + s * per_slice_mel, filterbank.data(),
                                                           p.n_mels, n_freqs, frames, nnls_iters);
    const std::vector<float> want = ds::griffin_lim(magnitude.data(), frames, p, gl_iters, 0.99f, seeds[s], L);
    const size_t bad = count_mismatches(got.data() + s * L, want.data(), want.size());
    if (bad) MESSAGE("max |chunked − one by one| = " << max_abs_difference(got.data() + s * L, want.data(), want.size()));
    CHECK(bad == 0);
    CHECK(*std::max_element(want.begin(), want.end()) > 0.0f);
  }
}
