// inspect quality's five figures on known cases, on a tiny synthetic mel layout: real slices held out
// from the same music-like process pass every bar; broadband hiss, a collapsed set, a copied set and a
// run whose discriminator wins each fail their own bar.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "audio/mel_cpu.h"
#include "audio/prepare_audio.h"
#include "audio/quality.h"

using namespace ds;

namespace {

// 0.5 s at 8 kHz, 32 mel bands × 16 frames (hop floor(4000 / 15) = 266, n_fft 1024: frames overlap 74%,
// which Griffin-Lim's iSTFT needs; see test_e2e_audio.cpp). Small, because every assessment inverts
// each generated and real slice through listen's full inversion.
MelParams tiny_layout() {
  MelOverrides o;
  o.sr = 8000;
  o.slice_seconds = 0.5;
  o.n_mels = 32;
  o.n_fft = 1024;
  o.frames = 16;
  return build_mel_params("default", o);
}

// "Music": four notes per slice, each a harmonic tone (fundamental 110–880 Hz, 4 partials falling off
// as 1/k) with a decaying envelope, over faint noise 50 dB down. Hiss: white noise.
std::vector<float> synth_slice(const MelParams& p, std::mt19937& rng, bool hiss) {
  const int64_t L = p.slice_samples();
  std::vector<float> x(static_cast<size_t>(L));
  std::normal_distribution<float> noise(0.0f, 1.0f);
  if (hiss) {
    for (float& v : x) v = 0.3f * noise(rng);
    return x;
  }
  std::uniform_real_distribution<double> octave(0.0, 3.0);
  const int64_t note = L / 4;
  for (int n = 0; n < 4; ++n) {
    const double f0 = 110.0 * std::pow(2.0, octave(rng));
    for (int64_t t = 0; t < note; ++t) {
      const double time = double(t) / p.sr, env = std::exp(-3.0 * time);
      double v = 0;
      for (int k = 1; k <= 4; ++k)
        if (k * f0 < p.sr / 2.0) v += std::sin(2.0 * M_PI * k * f0 * time) / k;
      x[n * note + t] = static_cast<float>(0.3 * env * v);
    }
  }
  for (float& v : x) v += 0.001f * noise(rng);
  return x;
}

struct SynthSet {
  std::vector<float> images;
  std::vector<double> ref_db;
};

SynthSet synth_set(const MelParams& p, int n, uint32_t seed, bool hiss) {
  std::mt19937 rng(seed);
  const std::vector<float> fb = mel_filterbank(p);
  SynthSet s;
  for (int i = 0; i < n; ++i) {
    const std::vector<float> x = synth_slice(p, rng, hiss);
    double ref = 0;
    const std::vector<float> image = mel_image(x.data(), p.slice_samples(), p, &ref, fb.data());
    s.images.insert(s.images.end(), image.begin(), image.end());
    s.ref_db.push_back(10.0 * std::log10(std::max(ref, p.amin)));
  }
  return s;
}

// A log.jsonl of `steps` logged steps: D(G(z)) 0.3 throughout, or (d_wins) falling to 0.002 after half.
std::string synth_log(int steps, bool d_wins) {
  std::string log;
  for (int s = 10; s <= steps; s += 10) {
    const double z = d_wins && s > steps / 2 ? 0.002 : 0.3;
    log += "{\"step\":" + std::to_string(s) + ",\"Loss_D\":1.0,\"D_G_z1\":" + std::to_string(z) +
           ",\"D_G_z2\":" + std::to_string(z * 0.9) + "}\n";
  }
  return log;
}

}  // namespace

TEST_CASE("unit quality: real against real passes every bar - hiss, collapse, copies and a winning D fail theirs") {
  const MelParams p = tiny_layout();
  const int64_t H = p.image_height(), W = p.image_width(), size = H * W;
  constexpr int kTrain = 48, kGen = 16;
  const SynthSet train = synth_set(p, kTrain, 1, false);
  MelDatasetInfo info;
  info.mel = p;
  info.count = kTrain;
  info.height = H;
  info.width = W;
  info.files = {"synthetic"};
  for (int i = 0; i < kTrain; ++i) info.slices.push_back({0, double(i) * p.slice_seconds, train.ref_db[i]});

  QualityOptions o;
  o.n_real = 8;
  o.progress = false;
  const std::string good_log = synth_log(400, false);
  auto assess = [&](const std::vector<float>& gen, const std::string& log) {
    return assess_quality(info, train.images.data(), kTrain, gen.data(), static_cast<int64_t>(gen.size() / size), log, o);
  };
  auto passed = [](const QualityReport& r, int figure) { return r.figures.at(static_cast<size_t>(figure)).pass; };

  // Held-out slices of the same process: every bar passes, and every real-against-real figure too.
  // (No SUBCASEs: doctest would rerun this assessment before each.)
  const SynthSet held_out = synth_set(p, kGen, 2, false);
  {
    const QualityReport real = assess(held_out.images, good_log);
    INFO(real.text());
    REQUIRE(real.figures.size() == 5);
    CHECK(real.all_pass());
    for (int k = 0; k < 4; ++k) CHECK(real.figures[k].real_pass);
  }
  {  // Broadband hiss is not tonal.
    const QualityReport r = assess(synth_set(p, kGen, 3, true).images, good_log);
    INFO(r.text());
    CHECK_FALSE(passed(r, 2));
    CHECK(r.figures[2].value > 10.0 * r.figures[2].reference);
    CHECK_FALSE(r.all_pass());
  }
  {  // One slice repeated is collapsed; with a log where D wins, figure 5 fails too.
    std::vector<float> gen;
    for (int k = 0; k < kGen; ++k) gen.insert(gen.end(), held_out.images.begin(), held_out.images.begin() + size);
    const QualityReport r = assess(gen, synth_log(400, true));
    INFO(r.text());
    CHECK_FALSE(passed(r, 0));
    CHECK(r.figures[0].value == doctest::Approx(0.0));
    CHECK_FALSE(passed(r, 4));
  }
  {  // Training slices played back are diverse but copies; without a log figure 5 fails.
    std::vector<float> gen(train.images.begin(), train.images.begin() + kGen * size);
    const QualityReport r = assess(gen, "");
    INFO(r.text());
    CHECK(passed(r, 0));
    CHECK_FALSE(passed(r, 1));
    CHECK(r.figures[1].value == doctest::Approx(0.0));
    CHECK_FALSE(passed(r, 4));
  }
}

TEST_CASE("unit quality: the measures on cases with known answers") {
  // Distance: images differing by 0.5 everywhere are 0.5 · top_db / 2 = 20 dB apart at top_db 80.
  const std::vector<float> a(16, 0.0f), b(16, 0.5f);
  CHECK(mel_image_distance_db(a.data(), b.data(), 16, 80.0) == doctest::Approx(20.0));
  // Flatness: white noise near 1 (librosa gives ≈ 0.56 for Gaussian noise with a Hann window: the
  // periodogram's exponential distribution has E[log] = log(mean) − γ, so exp(−γ) ≈ 0.56), a pure tone near 0.
  const MelParams p = tiny_layout();
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<float> white(static_cast<size_t>(p.slice_samples())), tone(white.size());
  for (size_t i = 0; i < white.size(); ++i) {
    white[i] = noise(rng);
    tone[i] = static_cast<float>(std::sin(2.0 * M_PI * 440.0 * double(i) / p.sr));
  }
  CHECK(spectral_flatness(white.data(), static_cast<int64_t>(white.size()), p) == doctest::Approx(0.56).epsilon(0.1));
  CHECK(spectral_flatness(tone.data(), static_cast<int64_t>(tone.size()), p) < 1e-3);
  // Band means: a band at x = 1 is 0 dB, one at x = −1 is −top_db.
  std::vector<float> image = {1.0f, 1.0f, -1.0f, -1.0f};  // 2 bands × 2 frames
  const std::vector<double> bands = mean_band_db(image.data(), 1, 2, 2, 80.0);
  CHECK(bands[0] == doctest::Approx(0.0));
  CHECK(bands[1] == doctest::Approx(-80.0));
  // The log: only steps > ¾ of the last count, and a repeated step counts once (its last line).
  const std::string log =
      "{\"step\":10,\"D_G_z1\":0.5,\"D_G_z2\":0.4}\n{\"step\":40,\"D_G_z1\":0.9,\"D_G_z2\":0.9}\n"
      "{\"step\":40,\"D_G_z1\":0.2,\"D_G_z2\":0.1}\n{\"step\":30,\"D_G_z1\":0.5,\"D_G_z2\":0.5}\nnot json\n";
  double z1 = 0, z2 = 0;
  int64_t used = 0;
  REQUIRE(mean_dgz_last_quarter(log, &z1, &z2, &used));
  CHECK(used == 1);
  CHECK(z1 == doctest::Approx(0.2));
  CHECK(z2 == doctest::Approx(0.1));
  CHECK_FALSE(mean_dgz_last_quarter("", &z1, &z2, &used));
}
