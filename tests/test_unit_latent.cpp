// inspect latent: slerp (endpoints, norms and angles on the sphere, the straight-line fallback), the
// interpolation and sweep rows, --dims parsing, and the command end to end on a tiny checkpoint
// (files, shapes, z rows, `sample --z` reproducing the images, no overwrite).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/inspect/latent.h"
#include "engine/train/checkpoint.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using ds::test::contains;
using ds::test::error_of;
using ds::test::fresh_dir;

namespace {

double norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s);
}
double angle(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += double(a[i]) * b[i];
  return std::acos(std::clamp(ab / (norm(a) * norm(b)), -1.0, 1.0));
}
std::vector<float> normal(uint64_t seed, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  Philox(seed, 0).fill_normal(v.data(), 0.f, 1.f, n);
  return v;
}
std::vector<float> at(const std::vector<float>& a, const std::vector<float>& b, double t) {
  std::vector<float> out(a.size());
  slerp_latent(out.data(), a.data(), b.data(), static_cast<int64_t>(a.size()), t);
  return out;
}

}  // namespace

TEST_CASE("unit latent slerp: the endpoints are the inputs, bit for bit") {
  const std::vector<float> a = normal(1, 100), b = normal(2, 100);
  CHECK(ds::test::count_mismatches(at(a, b, 0.0), a) == 0);  // weights sin θ/sin θ = 1 and sin 0 = 0 exactly
  CHECK(ds::test::count_mismatches(at(a, b, 1.0), b) == 0);
  const std::vector<float> rows = interpolation_latents([&] {
    std::vector<float> e = a;
    e.insert(e.end(), b.begin(), b.end());
    return e;
  }().data(), 1, 100, 7);
  REQUIRE(rows.size() == 700);
  CHECK(ds::test::count_mismatches(rows.data(), a.data(), 100) == 0);
  CHECK(ds::test::count_mismatches(rows.data() + 600, b.data(), 100) == 0);
}

TEST_CASE("unit latent slerp: on the sphere, constant norm and an angle growing as t·θ (a straight line dips)") {
  const int64_t nz = 100;
  std::vector<float> a = normal(3, nz), b = normal(4, nz);
  const double ra = norm(a), rb = norm(b);
  for (float& x : b) x = static_cast<float>(x * ra / rb);  // equal norms
  const double theta = angle(a, b);
  REQUIRE(theta > 1.0);  // independent Gaussians of dimension 100 are nearly orthogonal
  for (double t : {0.1, 0.25, 0.5, 0.75, 0.9}) {
    INFO("t = " << t);
    const std::vector<float> s = at(a, b, t);
    // float rounding of 100 weighted sums (a few ulp each) on a norm of ~10: 1e-5 relative is ~100× that.
    CHECK(std::abs(norm(s) - ra) / ra < 1e-5);
    CHECK(std::abs(angle(a, s) - t * theta) < 1e-4);  // acos near θ ≈ π/2 is well conditioned
    CHECK(slerp_weights(a.data(), b.data(), nz, t).linear == false);
  }
  // The straight line's midpoint has norm ra·cos(θ/2): what slerp avoids (θ ≈ π/2 → ~0.71·ra).
  std::vector<float> mid(a.size());
  for (size_t i = 0; i < a.size(); ++i) mid[i] = 0.5f * (a[i] + b[i]);
  CHECK(norm(mid) < 0.8 * ra);
  CHECK(norm(at(a, b, 0.5)) > 0.99 * ra);
  // Unequal norms (White's unnormalised slerp): for orthogonal-ish a, b the norm stays between theirs.
  std::vector<float> c = normal(5, nz);
  for (float& x : c) x *= 2.f;
  for (double t : {0.2, 0.5, 0.8}) {
    const double n = norm(at(a, c, t));
    CHECK(n > std::min(ra, norm(c)) * 0.999);
    CHECK(n < std::max(ra, norm(c)) * 1.001);
  }
}

TEST_CASE("unit latent slerp: (anti)parallel or zero inputs fall back to the straight line") {
  const std::vector<float> a = normal(6, 16);
  std::vector<float> twice = a, minus = a, zero(a.size(), 0.f);
  for (float& x : twice) x *= 2.f;
  for (float& x : minus) x = -x;
  for (const std::vector<float>* b : {&twice, &minus, &zero}) {
    const SlerpWeights w = slerp_weights(a.data(), b->data(), 16, 0.3);
    CHECK(w.linear);
    CHECK(w.a == doctest::Approx(0.7).epsilon(1e-15));
    CHECK(w.b == doctest::Approx(0.3).epsilon(1e-15));
  }
  // Antiparallel: the straight line passes through 0 at t = 0.5 (no great circle is defined).
  CHECK(norm(at(a, minus, 0.5)) == 0.0);
  // Just above the threshold the circle is used: orthogonal unit vectors give cos/sin weights.
  std::vector<float> e0(4, 0.f), e1(4, 0.f);
  e0[0] = 1.f;
  e1[1] = 1.f;
  const SlerpWeights w = slerp_weights(e0.data(), e1.data(), 4, 1.0 / 3.0);
  CHECK_FALSE(w.linear);
  CHECK(w.a == doctest::Approx(std::cos(M_PI / 6)).epsilon(1e-12));
  CHECK(w.b == doctest::Approx(std::sin(M_PI / 6)).epsilon(1e-12));
}

TEST_CASE("unit latent sweep: row k·steps + j changes only dimension dims[k], from -range to range") {
  const int64_t nz = 10, steps = 5;
  const std::vector<float> base = latent_sweep_base(9, nz);
  const std::vector<int64_t> dims{7, 0, 3};
  const std::vector<float> z = sweep_latents(base.data(), nz, dims, steps, 2.5);
  REQUIRE(z.size() == dims.size() * steps * nz);
  for (size_t k = 0; k < dims.size(); ++k)
    for (int64_t j = 0; j < steps; ++j) {
      const float* row = z.data() + (k * steps + j) * nz;
      for (int64_t d = 0; d < nz; ++d) {
        INFO("row " << k * steps + j << " dim " << d);
        if (d == dims[k])
          CHECK(row[d] == static_cast<float>(-2.5 + 5.0 * j / (steps - 1)));
        else
          CHECK(row[d] == base[d]);  // bit-equal: copied
      }
    }
  CHECK(z[dims[0]] == -2.5f);
  CHECK(z[(steps - 1) * nz + dims[0]] == 2.5f);
  CHECK(contains(error_of([&] { sweep_latents(base.data(), nz, {10}, steps, 1.0); }), "outside 0..9"));
  CHECK(contains(error_of([&] { sweep_latents(base.data(), nz, {1}, 1, 1.0); }), "--steps 1"));
}

TEST_CASE("unit latent dims: --dims parses lists and names what is wrong") {
  CHECK(parse_latent_dims("3,0,17") == std::vector<int64_t>{3, 0, 17});
  CHECK(parse_latent_dims("5") == std::vector<int64_t>{5});
  for (const char* bad : {"", "1,,2", "a", "1.5", "-1", "2,"}) {
    INFO(bad);
    CHECK(contains(error_of([&] { parse_latent_dims(bad); }), "--dims"));
  }
  CHECK(contains(error_of([&] { parse_latent_dims("1,2,1"); }), "given twice"));
}

namespace {
std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
int run_darkstar(const std::string& args, const fs::path& log, std::string* output) {
  const std::string cmd = std::string(DS_DARKSTAR_EXE) + " " + args + " > " + log.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  *output = read_text(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
// PNG width and height from the IHDR chunk (bytes 16..23, big-endian).
std::pair<int, int> png_size(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<unsigned char> b(24);
  in.read(reinterpret_cast<char*>(b.data()), 24);
  auto be = [&](int o) { return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]; };
  return {be(16), be(20)};
}
}  // namespace

TEST_CASE("e2e latent: inspect latent on a tiny checkpoint writes the grids, images and z it says") {
  const fs::path dir = fresh_dir("e2e_latent");
  // A tiny run: 32 random 16×16 grey images, nz 8, 3 steps (the weights need not be good, only real).
  std::vector<uint8_t> pixels(32 * 16 * 16);
  Philox rng(3, 0);
  for (uint8_t& p : pixels) p = static_cast<uint8_t>(rng.uniform() * 255.0);
  const std::string data = (dir / "noise.npy").string();
  write_npy(data, DType::U8, {32, 1, 16, 16}, pixels.data());
  TrainConfig c;
  c.data_path = data;
  c.out_dir = (dir / "run").string();
  c.model.nz = 8;
  c.model.ngf = 8;
  c.model.ndf = 8;
  c.batch = 8;
  c.n_samples = 8;
  c.steps = 3;
  c.checkpoint_every = 3;
  c.sample_every = 0;
  c.quiet = true;
  Trainer(c).run();
  const std::string ckpt = (dir / "run" / "netG.safetensors").string();

  const fs::path out = dir / "latent";
  std::string text;
  REQUIRE_MESSAGE(run_darkstar("inspect latent --checkpoint " + ckpt + " --out " + out.string() +
                                   " --pairs 2 --steps 5 --dims 0,3 --range 2 --seed 4 --device cpu",
                               dir / "log1.txt", &text) == 0,
                  text);
  for (const char* f : {"interpolation.png", "interpolation.npy", "interpolation_z.npy", "sweep.png", "sweep.npy",
                        "sweep_z.npy", "latent.json"})
    CHECK_MESSAGE(fs::exists(out / f), f);
  const NpyArray interp = read_npy((out / "interpolation.npy").string());
  const NpyArray interp_z = read_npy((out / "interpolation_z.npy").string());
  const NpyArray sweep = read_npy((out / "sweep.npy").string());
  const NpyArray sweep_z = read_npy((out / "sweep_z.npy").string());
  CHECK(interp.dtype == DType::F32);
  CHECK(interp.shape == std::vector<int64_t>{10, 1, 16, 16});
  CHECK(interp_z.shape == std::vector<int64_t>{10, 8});
  CHECK(sweep.shape == std::vector<int64_t>{10, 1, 16, 16});
  CHECK(sweep_z.shape == std::vector<int64_t>{10, 8});
  for (int64_t i = 0; i < interp.numel(); ++i) REQUIRE(std::abs(interp.as<float>()[i]) <= 1.f);  // tanh
  // One row per pair / dimension, `steps` images each, 2-pixel padding: 5·18 + 2 by 2·18 + 2.
  CHECK(png_size(out / "interpolation.png") == std::pair<int, int>{92, 38});
  CHECK(png_size(out / "sweep.png") == std::pair<int, int>{92, 38});

  // The z rows are the documented ones: endpoints from seed 4, the sweep around seed 4's base.
  const std::vector<float> ends = latent_endpoints(4, 2, 8);
  const std::vector<float> want_interp = interpolation_latents(ends.data(), 2, 8, 5);
  const std::vector<float> base = latent_sweep_base(4, 8);
  const std::vector<float> want_sweep = sweep_latents(base.data(), 8, {0, 3}, 5, 2.0);
  CHECK(ds::test::count_mismatches(interp_z.as<float>(), want_interp.data(), want_interp.size()) == 0);
  CHECK(ds::test::count_mismatches(sweep_z.as<float>(), want_sweep.data(), want_sweep.size()) == 0);
  // Row 1 of the sweep differs from row 0 only in dimension 0, and those images differ.
  CHECK(sweep_z.as<float>()[8 + 0] != sweep_z.as<float>()[0]);
  for (int d = 1; d < 8; ++d) CHECK(sweep_z.as<float>()[8 + d] == sweep_z.as<float>()[d]);

  // The images are G in eval mode on those z: `darkstar sample --z` (eval mode) gives the same.
  std::string text2;
  REQUIRE_MESSAGE(run_darkstar("sample --checkpoint " + ckpt + " --z " + (out / "interpolation_z.npy").string() +
                                   " --out " + (dir / "again.npy").string() + " --device cpu",
                               dir / "log2.txt", &text2) == 0,
                  text2);
  const NpyArray again = read_npy((dir / "again.npy").string());
  REQUIRE(again.numel() == interp.numel());
  double worst = 0;
  for (int64_t i = 0; i < again.numel(); ++i)
    worst = std::max(worst, double(std::abs(again.as<float>()[i] - interp.as<float>()[i])));
  // Same batch of 10 and the same CPU code: equal up to GEMM rounding (README: 9e-8 measured).
  CHECK(worst <= 1e-6);
  // ... and not train mode: batch statistics would change the images by far more than that.
  LoadedGenerator lg = load_generator(ckpt, 10, Device::CPU);
  Tensor zt = Tensor::from_host(want_interp, {10, 8, 1, 1}, Device::CPU);
  lg.generator->forward(zt, true);
  const std::vector<float> train_mode = lg.generator->output().to_host();
  double train_diff = 0;
  for (int64_t i = 0; i < interp.numel(); ++i)
    train_diff = std::max(train_diff, double(std::abs(train_mode[i] - interp.as<float>()[i])));
  CHECK(train_diff > 1e-3);

  const nlohmann::json meta = nlohmann::json::parse(read_text(out / "latent.json"));
  CHECK(meta.at("sweep").at("dims") == nlohmann::json::array({0, 3}));
  CHECK(meta.at("sweep").at("values").size() == 5);
  // A second run into the same folder refuses and keeps what is there.
  std::string text3;
  CHECK(run_darkstar("inspect latent --checkpoint " + ckpt + " --out " + out.string() + " --device cpu",
                     dir / "log3.txt", &text3) != 0);
  CHECK(contains(text3, "latent.json exists"));
  CHECK(read_npy((out / "sweep_z.npy").string()).data == sweep_z.data);
  // Bad flags name themselves.
  CHECK(run_darkstar("inspect latent --checkpoint " + ckpt + " --out " + (dir / "x").string() + " --dims 0,99",
                     dir / "log4.txt", &text3) != 0);
  CHECK(contains(text3, "--dims: dimension 99 is outside 0..7"));
}
