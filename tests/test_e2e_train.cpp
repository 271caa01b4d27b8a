// End-to-end runs on the CPU: a tiny DCGAN learns a synthetic blob set, resume is bit-identical,
// and the command line turns bad input into one clear line and a non-zero exit.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "engine/train/checkpoint.h"
#include "engine/formats/npy.h"
#include "engine/core/rng.h"
#include "engine/formats/safetensors.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;

namespace {

using ds::test::fresh_dir;

// 16×16 grey images: a dark background with one bright Gaussian blob at a random place.
std::string write_blob_dataset(const fs::path& dir, int64_t count) {
  const int64_t S = 16;
  std::vector<uint8_t> pixels(count * S * S);
  Philox rng(7, 0);
  for (int64_t n = 0; n < count; ++n) {
    const double cy = 4 + 8 * rng.uniform(), cx = 4 + 8 * rng.uniform();
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x) {
        const double d2 = (y - cy) * (y - cy) + (x - cx) * (x - cx);
        pixels[(n * S + y) * S + x] = static_cast<uint8_t>(std::lround(20 + 215 * std::exp(-d2 / 8.0)));
      }
  }
  const std::string path = (dir / "blobs.npy").string();
  write_npy(path, DType::U8, {count, 1, S, S}, pixels.data());
  return path;
}

// Mean pixel value and per-pixel mean image of N×1×16×16 data in [-1, 1].
struct ImageStats {
  double mean = 0, std = 0;
  std::vector<double> mean_image;
};
ImageStats stats_of(const std::vector<float>& x, int64_t n, int64_t pixels) {
  ImageStats s;
  s.mean_image.assign(pixels, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < pixels; ++p) s.mean_image[p] += x[i * pixels + p] / double(n);
  for (float v : x) s.mean += v / double(x.size());
  for (float v : x) s.std += (v - s.mean) * (v - s.mean) / double(x.size());
  s.std = std::sqrt(s.std);
  return s;
}
double rms_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(d / double(a.size()));
}

std::vector<float> generate(Generator& G, int64_t n, int64_t nz) {
  std::vector<float> z(n * nz);
  Philox(99, 0).fill_normal(z.data(), 0.f, 1.f, static_cast<int64_t>(z.size()));
  Tensor zt = Tensor::from_host(z, {n, nz, 1, 1}, Device::CPU);
  G.forward(zt, false);
  return G.output().to_host();
}

TrainConfig tiny_config(const std::string& data, const fs::path& out) {
  TrainConfig c;
  c.data_path = data;
  c.out_dir = out.string();
  c.model.nz = 8;
  c.model.ngf = 8;
  c.model.ndf = 8;
  c.batch = 16;
  c.n_samples = 16;
  c.device = Device::CPU;
  c.log_every = 50;
  c.sample_every = 0;
  c.checkpoint_every = 0;
  return c;
}

int run_cli(const std::string& args, std::string* output) {
  // Per process: ctest runs the cases of this file in parallel, each must read its own output.
  const fs::path log = fs::path(DS_TEST_TMP) / ("cli_output_" + std::to_string(getpid()) + ".txt");
  const std::string cmd = std::string(DS_DARKSTAR_EXE) + " " + args + " > " + log.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("e2e train: a tiny DCGAN moves its samples toward the blob data") {
  const fs::path dir = fresh_dir("e2e_blobs");
  const std::string data = write_blob_dataset(dir, 512);
  const NpyArray arr = read_npy(data);
  std::vector<float> real(arr.numel());
  for (int64_t i = 0; i < arr.numel(); ++i) real[i] = arr.as<uint8_t>()[i] / 127.5f - 1.f;
  const ImageStats target = stats_of(real, 512, 256);

  TrainConfig cfg = tiny_config(data, dir / "run");
  cfg.steps = 1500;
  Trainer trainer(cfg);
  ModelConfig mc = cfg.model;
  mc.height = mc.width = 16;
  mc.channels = 1;
  Generator sampler(mc, 256, Device::CPU);  // eval-mode samples, 256 at a time
  sampler.copy_state_from(trainer.generator());
  const ImageStats before = stats_of(generate(sampler, 256, 8), 256, 256);
  const StepStats last = trainer.run();
  // The mean-image distance to the data must shrink clearly (a factor 2 leaves room for GAN
  // noise; an untrained G sits at ~0 everywhere).
  sampler.copy_state_from(trainer.generator());
  const ImageStats after = stats_of(generate(sampler, 256, 8), 256, 256);
  const double d_before = rms_distance(before.mean_image, target.mean_image);
  const double d_after = rms_distance(after.mean_image, target.mean_image);
  MESSAGE("data mean ", target.mean, " std ", target.std, "; samples before: mean ", before.mean, " std ", before.std,
          " mean-image distance ", d_before, "; after 1500 steps: mean ", after.mean, " std ", after.std,
          " distance ", d_after, "; Loss_D ", last.loss_d, " Loss_G ", last.loss_g);
  CHECK(std::isfinite(last.loss_d));
  CHECK(std::isfinite(last.loss_g));
  CHECK(d_after < 0.5 * d_before);
  CHECK(std::fabs(after.mean - target.mean) < 0.5 * std::fabs(before.mean - target.mean));
  // Blobs: samples must have contrast (a collapsed G gives a flat grey image).
  CHECK(after.std > 0.5 * target.std);
}

TEST_CASE("e2e resume: k steps plus a resume to N gives the same weights as N straight steps") {
  const fs::path dir = fresh_dir("e2e_resume");
  const std::string data = write_blob_dataset(dir, 40);  // epochs of 2 batches: data order is exercised
  TrainConfig straight = tiny_config(data, dir / "straight");
  straight.steps = 12;
  straight.checkpoint_every = 12;
  Trainer(straight).run();

  TrainConfig first = tiny_config(data, dir / "resumed");
  first.steps = 5;
  first.checkpoint_every = 5;
  Trainer(first).run();
  TrainConfig second = first;
  second.steps = 12;
  second.resume = true;
  second.checkpoint_every = 12;
  Trainer(second).run();

  const SafeTensorsFile a = read_safetensors((dir / "straight" / "last.safetensors").string());
  const SafeTensorsFile b = read_safetensors((dir / "resumed" / "last.safetensors").string());
  REQUIRE(a.tensors.size() == b.tensors.size());
  int compared = 0;
  for (const auto& [name, t] : a.tensors) {
    REQUIRE(b.tensors.count(name) == 1);
    INFO(name);
    CHECK(t.data == b.tensors.at(name).data);  // bit-identical
    ++compared;
  }
  CHECK(compared > 20);
}

TEST_CASE("e2e cli: bad input gives one clear line and a non-zero exit") {
  const fs::path dir = fresh_dir("e2e_cli");
  std::string out;
  fs::create_directories(dir / "empty");
  CHECK(run_cli("prepare-images " + (dir / "empty").string() + " --out " + (dir / "x.npy").string(), &out) != 0);
  CHECK(out.find("empty") != std::string::npos);

  CHECK(run_cli("prepare-images " + (dir / "empty").string() + " --size 48 --out " + (dir / "x.npy").string(), &out) != 0);
  CHECK(out.find("--size") != std::string::npos);

  const std::string data = write_blob_dataset(dir, 20);
  CHECK(run_cli("train --data " + data + " --out " + (dir / "run").string() + " --batch 64 --device cpu", &out) != 0);
  CHECK(out.find("--batch") != std::string::npos);

  // A short real run, then its checkpoints used well and badly.
  REQUIRE(run_cli("train --data " + data + " --out " + (dir / "run").string() +
                      " --batch 4 --steps 3 --nz 8 --ngf 4 --ndf 4 --device cpu --sample-every 3",
                  &out) == 0);
  CHECK(fs::exists(dir / "run" / "netG.safetensors"));
  CHECK(fs::exists(dir / "run" / "samples" / "step_0000003.png"));
  REQUIRE(run_cli("sample --checkpoint " + (dir / "run" / "last.safetensors").string() + " --n 5 --device cpu --out " +
                      (dir / "five.npy").string(),
                  &out) == 0);
  const NpyArray five = read_npy((dir / "five.npy").string());
  CHECK(five.shape == std::vector<int64_t>{5, 1, 16, 16});
  CHECK(five.dtype == DType::F32);

  CHECK(run_cli("sample --checkpoint " + (dir / "run" / "netD.safetensors").string() + " --out " +
                    (dir / "g.png").string(),
                &out) != 0);
  CHECK(out.find("netD") != std::string::npos);
  {
    std::ofstream bad(dir / "corrupt.safetensors", std::ios::binary);
    bad << "not a safetensors file at all";
  }
  CHECK(run_cli("sample --checkpoint " + (dir / "corrupt.safetensors").string() + " --out " + (dir / "g.png").string(),
                &out) != 0);
  CHECK(out.find("corrupt.safetensors") != std::string::npos);
  CHECK(run_cli("sample --checkpoint " + (dir / "missing.safetensors").string() + " --out " + (dir / "g.png").string(),
                &out) != 0);
  CHECK(out.find("missing.safetensors") != std::string::npos);
  // Resuming with another architecture is refused, naming the checkpoint.
  CHECK(run_cli("train --data " + data + " --out " + (dir / "run").string() +
                    " --batch 4 --steps 6 --nz 8 --ngf 8 --ndf 4 --device cpu --resume",
                &out) != 0);
  CHECK(out.find("last.safetensors") != std::string::npos);
}

TEST_CASE("e2e nan: a diverging run stops with a clear line and keeps the last good checkpoint") {
  const fs::path dir = fresh_dir("e2e_nan");
  const std::string data = write_blob_dataset(dir, 16);
  std::string out;
  // lr 1e30 throws the weights to ±1e30 at the first Adam step: activations overflow, losses go NaN.
  CHECK(run_cli("train --data " + data + " --out " + (dir / "run").string() +
                    " --batch 4 --steps 20 --nz 8 --ngf 4 --ndf 4 --device cpu --lr 1e30 --log-every 1"
                    " --checkpoint-every 10",
                &out) != 0);
  CHECK(out.find("non-finite") != std::string::npos);
  CHECK(out.find("last good checkpoint") != std::string::npos);
  // The checkpoint written before the first step is intact and usable.
  const SafeTensorsFile state = read_safetensors((dir / "run" / "last.safetensors").string());
  CHECK(*reinterpret_cast<const int64_t*>(state.tensors.at("step").data.data()) == 0);
  CHECK(run_cli("sample --checkpoint " + (dir / "run" / "last.safetensors").string() + " --n 2 --device cpu --out " +
                    (dir / "two.npy").string(),
                &out) == 0);
}

TEST_CASE("e2e resume: from the checkpoint written before the first step") {
  const fs::path dir = fresh_dir("e2e_resume0");
  const std::string data = write_blob_dataset(dir, 24);
  TrainConfig none = tiny_config(data, dir / "run");
  none.steps = 0;
  none.checkpoint_every = 5;
  Trainer(none).run();  // writes the step-0 state only
  TrainConfig more = none;
  more.steps = 3;
  more.resume = true;
  Trainer trainer(more);
  CHECK(trainer.current_step() == 0);
  trainer.run();
  CHECK(trainer.current_step() == 3);
}

TEST_CASE("e2e train --minutes: a spent budget ends the run at the end of a step, checkpointed and logged") {
  const fs::path dir = fresh_dir("e2e_minutes");
  const std::string data = write_blob_dataset(dir, 40);
  TrainConfig cfg = tiny_config(data, dir / "run");
  cfg.steps = 50;
  cfg.checkpoint_every = 25;
  cfg.minutes = 1e-9;  // 60 ns: spent by any step, so the run stops after its first one
  Trainer trainer(cfg);
  const StepStats last = trainer.run();
  CHECK(trainer.stopped_on_time_budget());
  CHECK(trainer.current_step() == 1);
  CHECK(last.step == 1);  // the stopping step is logged as a last step is
  const SafeTensorsFile state = read_safetensors((dir / "run" / "last.safetensors").string());
  CHECK(*reinterpret_cast<const int64_t*>(state.get("step", DType::I64, {}).data.data()) == 1);
  // Resuming without a budget runs to --steps and says it did not stop on time.
  TrainConfig more = cfg;
  more.minutes = 0;
  more.resume = true;
  Trainer resumed(more);
  resumed.run();
  CHECK_FALSE(resumed.stopped_on_time_budget());
  CHECK(resumed.current_step() == 50);
}

TEST_CASE("e2e train --lr-d: D's own learning rate changes D only when it differs from --lr") {
  const fs::path dir = fresh_dir("e2e_lr_d");
  const std::string data = write_blob_dataset(dir, 40);
  auto weights_after = [&](const char* name, double lr_d) {
    TrainConfig cfg = tiny_config(data, dir / name);
    cfg.steps = 3;
    cfg.checkpoint_every = 3;
    cfg.lr_d = lr_d;
    Trainer(cfg).run();
    return read_safetensors((dir / name / "netD.safetensors").string());
  };
  const SafeTensorsFile same = weights_after("plain", 0), equal = weights_after("equal", 2e-4),
                        slower = weights_after("slower", 5e-5);
  int differing = 0;
  for (const auto& [name, t] : same.tensors) {
    CHECK(t.data == equal.tensors.at(name).data);  // lr_d == lr: bit-identical to no lr_d
    if (t.data != slower.tensors.at(name).data) ++differing;
  }
  CHECK(differing > 0);
}
