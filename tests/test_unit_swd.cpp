// The sliced Wasserstein distance (engine/inspect/swd.h): against the numpy reference
// (tests/swd_reference.py, fixture tests/fixtures/swd) with identical randomness, identical sets,
// blurred and brightened copies, the pyramid's sizes and what too-small images get.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/inspect/swd.h"
#include "tests/test_util.h"

using namespace ds;
using ds::test::contains;
using ds::test::error_of;

namespace {

const std::string kFixtures = std::string(DS_SOURCE_DIR) + "/tests/fixtures/swd/";

std::vector<float> floats_of(const NpyArray& a) { return a.to_float(); }

// n structured single-channel images (smooth blobs with sharp-edged squares), in [−1, 1].
std::vector<float> structured_images(int64_t n, int64_t h, int64_t w, uint64_t seed) {
  std::vector<float> out(static_cast<size_t>(n * h * w));
  Philox rng(seed, 0);
  for (int64_t i = 0; i < n; ++i) {
    float* im = out.data() + i * h * w;
    for (int64_t k = 0; k < h * w; ++k) im[k] = -0.8f + 0.1f * rng.normal();
    for (int b = 0; b < 3; ++b) {
      const double cy = rng.uniform() * h, cx = rng.uniform() * w, s = 2 + 4 * rng.uniform();
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x)
          im[y * w + x] += static_cast<float>(1.2 * std::exp(-((y - cy) * (y - cy) + (x - cx) * (x - cx)) / (2 * s * s)));
    }
    const int64_t sy = rng.uniform_int(static_cast<uint32_t>(h - 6)), sx = rng.uniform_int(static_cast<uint32_t>(w - 6));
    for (int64_t y = sy; y < sy + 6; ++y)
      for (int64_t x = sx; x < sx + 6; ++x) im[y * w + x] = 0.9f;
    for (int64_t k = 0; k < h * w; ++k) im[k] = std::max(-1.f, std::min(1.f, im[k]));
  }
  return out;
}

// 3×3 box blur, edges clamped.
std::vector<float> blurred(const std::vector<float>& in, int64_t n, int64_t h, int64_t w) {
  std::vector<float> out(in.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        float s = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const int64_t yy = std::min(h - 1, std::max<int64_t>(0, y + dy)), xx = std::min(w - 1, std::max<int64_t>(0, x + dx));
            s += in[(i * h + yy) * w + xx];
          }
        out[(i * h + y) * w + x] = s / 9;
      }
  return out;
}

}  // namespace

TEST_CASE("unit swd reference: matches tests/swd_reference.py (numpy, float64) with the same draws") {
  std::ifstream in(kFixtures + "expected.json");
  REQUIRE(in.good());
  const nlohmann::json expected = nlohmann::json::parse(in);
  for (const std::string name : {"rgb32", "odd33x40"}) {
    INFO(name);
    const nlohmann::json& e = expected.at(name);
    const NpyArray a = read_npy(kFixtures + name + "_a.npy"), b = read_npy(kFixtures + name + "_b.npy");
    const std::vector<float> av = floats_of(a), bv = floats_of(b);
    SwdOptions o;
    o.patch_size = e.at("patch_size");
    o.patches_per_image = e.at("patches_per_image");
    o.direction_repeats = e.at("direction_repeats");
    o.directions_per_repeat = e.at("directions_per_repeat");
    const int levels = e.at("levels");
    REQUIRE(swd_level_count(a.shape[2], a.shape[3], o.min_resolution) == levels);
    SwdDraws d;
    for (int l = 0; l < levels; ++l) {
      auto ints = [&](const std::string& file) {
        const NpyArray c = read_npy(kFixtures + file);
        REQUIRE(c.dtype == DType::I32);
        return std::vector<int32_t>(c.as<int32_t>(), c.as<int32_t>() + c.numel());
      };
      d.centres_a.push_back(ints(name + "_centres_a_" + std::to_string(l) + ".npy"));
      d.centres_b.push_back(ints(name + "_centres_b_" + std::to_string(l) + ".npy"));
      d.directions.push_back(read_npy(kFixtures + name + "_directions_" + std::to_string(l) + ".npy").to_float());
    }
    const SwdResult r = sliced_wasserstein_distance({av.data(), a.shape[0], a.shape[1], a.shape[2], a.shape[3]},
                                                    {bv.data(), b.shape[0], b.shape[1], b.shape[2], b.shape[3]}, o, &d);
    REQUIRE(r.levels.size() == size_t(levels));
    for (int l = 0; l < levels; ++l) {
      const double want = e.at("swd_x1e3")[l];
      // The reference is float64 throughout; here the pyramid and the projections are float32 (sums
      // in double only for the normalisation and the means). A projection is a 49·C-term float dot
      // product of unit-variance components with a unit vector: rounding error ~ sqrt(dims)·2^-24 ≈
      // 1e-6 typically, the pyramid adds a few 2^-24 per value. Sorting is 1-Lipschitz in the max
      // norm (|sort(x) − sort(y)|∞ ≤ |x − y|∞), so the SWD moves by at most the two sets' largest
      // projection errors: ~1e-5 raw = 1e-2 on this ×1e3 scale in the worst case. Measured: under 1e-5
      // ×1e3 (3e-8 relative). 2e-3 ×1e3 sits between the two: catches any algorithmic difference (a
      // wrong border, kernel, crop or normalisation moves these ~250 values by whole units).
      MESSAGE(name << " level " << l << ": darkstar " << r.levels[l] << ", numpy " << want << ", difference "
                   << r.levels[l] - want);
      CHECK(std::abs(r.levels[l] - want) < 2e-3);
    }
    CHECK(std::abs(r.mean - double(e.at("mean"))) < 2e-3);
  }
}

TEST_CASE("unit swd identical sets: 0 with shared draws, within the sampling bound with independent ones") {
  const int64_t n = 64, h = 32, w = 32;
  const std::vector<float> a = structured_images(n, h, w, 5);
  const ImageSetView va{a.data(), n, 1, h, w};
  SwdOptions o;
  // The same patch centres for both sets: every descriptor, projection and sorted value is the same
  // float computation, so each |difference| is exactly 0.
  SwdDraws shared = draw_swd(n, n, 1, h, w, o);
  shared.centres_b = shared.centres_a;
  const SwdResult zero = sliced_wasserstein_distance(va, va, o, &shared);
  for (double v : zero.levels) CHECK(v == 0.0);

  // Independent centres (the default, as the reference draws them per set): what is left is the
  // sampling noise of n·128 descriptors per set. For one direction, E W1(empirical_n, μ) ≤ J/√n with
  // J = ∫ sqrt(F(1 − F)) (Bobkov & Ledoux 2019, Thm 3.5), J ≈ 1.61 for a unit-variance Gaussian, and
  // the projections have variance 1 on average over directions (the normalised components' trace);
  // two empirical sets: ≤ 2·J/√n. With n = 8192 descriptors: 0.036, i.e. 36 ×1e3 (the patches of one
  // image overlap, so the true n is smaller and the bound is the expected scale, not a hard limit).
  const SwdResult floor = sliced_wasserstein_distance(va, va, o);
  const double bound = 1e3 * 2 * 1.61 / std::sqrt(double(n * 128));
  for (size_t l = 0; l < floor.levels.size(); ++l) {
    MESSAGE("identical sets, level " << l << ": " << floor.levels[l] << " (bound " << bound << ")");
    CHECK(floor.levels[l] > 0);
    CHECK(floor.levels[l] < bound);
  }

  // A blurred copy: the 3×3 box takes the detail the finest (32 px) level holds, far beyond the
  // floor there; the 16 px Gaussian level is already low-passed by the pyramid's own kernel, so it
  // moves only a little (measured 21.0 against 17.5); the average rises by more than the bound.
  const std::vector<float> b = blurred(a, n, h, w);
  const SwdResult blur = sliced_wasserstein_distance(va, {b.data(), n, 1, h, w}, o);
  for (size_t l = 0; l < blur.levels.size(); ++l) {
    MESSAGE("blurred copy, level " << l << ": " << blur.levels[l]);
    CHECK(blur.levels[l] > floor.levels[l]);
  }
  CHECK(blur.levels[0] > 2 * bound);
  CHECK(blur.mean > floor.mean + bound);

  // A brightness/contrast change is invisible by design (linear pyramid, per-set normalisation): the
  // same draws give the floor's values up to float rounding.
  std::vector<float> brighter(a);
  for (float& v : brighter) v = 0.5f * v + 0.3f;
  const SwdResult bright = sliced_wasserstein_distance(va, {brighter.data(), n, 1, h, w}, o);
  for (size_t l = 0; l < bright.levels.size(); ++l) CHECK(std::abs(bright.levels[l] - floor.levels[l]) < 1e-2);

  // SwdReference (the trainer's) gives sliced_wasserstein_distance's numbers for the same draws.
  const SwdReference ref(va, o);
  const SwdResult via_ref = ref.compare({b.data(), n, 1, h, w});
  for (size_t l = 0; l < blur.levels.size(); ++l) CHECK(via_ref.levels[l] == doctest::Approx(blur.levels[l]).epsilon(1e-9));
}

TEST_CASE("unit swd sizes: pyramid levels, odd and non-square sides, images below 16 px refused") {
  CHECK(swd_level_count(16, 16, 16) == 1);
  CHECK(swd_level_count(32, 32, 16) == 2);
  CHECK(swd_level_count(64, 64, 16) == 3);
  CHECK(swd_level_count(128, 512, 16) == 4);  // the default mel layout: 128×512 … 16×64
  CHECK(swd_level_count(33, 40, 16) == 2);    // 33×40, 17×20
  CHECK(swd_level_count(15, 64, 16) == 0);
  CHECK(swd_level_side(33, 1) == 17);
  const std::vector<float> small(2 * 8 * 8, 0.f);
  const std::string e = error_of([&] {
    sliced_wasserstein_distance({small.data(), 2, 1, 8, 8}, {small.data(), 2, 1, 8, 8}, SwdOptions{});
  });
  CHECK(contains(e, "smaller than the 16 px"));
  const std::vector<float> a(2 * 16 * 16, 0.f), b(3 * 16 * 16, 0.f);
  CHECK(contains(error_of([&] { sliced_wasserstein_distance({a.data(), 2, 1, 16, 16}, {b.data(), 3, 1, 16, 16}, {}); }),
                 "same number of images"));
  // A constant set: descriptors only centred (no division by a zero std), distance 0, finite.
  const SwdResult flat = sliced_wasserstein_distance({a.data(), 2, 1, 16, 16}, {a.data(), 2, 1, 16, 16}, {});
  CHECK(flat.levels.at(0) == 0.0);

  // The pyramid is exact: the levels sum back (upsampled) to the image; a constant image keeps its
  // value in the Gaussian level and leaves 0 in the differences.
  std::vector<float> c(1 * 33 * 40, 0.25f);
  const auto p = laplacian_pyramid({c.data(), 1, 1, 33, 40}, 2);
  REQUIRE(p.size() == 2);
  REQUIRE(p[1].size() == size_t(17 * 20));
  for (float v : p[0]) CHECK(std::abs(v) < 1e-6);
  for (float v : p[1]) CHECK(std::abs(v - 0.25f) < 1e-6);
}
