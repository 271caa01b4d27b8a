// `darkstar inspect memorization`, `darkstar inspect swd` and `train --swd-every` through the real
// binary, on a tiny checkpoint trained here (the CLI suites' noise dataset and tiny model).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using ds::test::contains;

namespace {

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int run_cli(const std::string& args, std::string* output) {
  static int calls = 0;
  const fs::path log = fs::path(DS_TEST_TMP) / ("inspect_e2e_" + std::to_string(getpid()) + "_" + std::to_string(calls++) + ".txt");
  const int status = std::system((std::string(DS_DARKSTAR_EXE) + " " + args + " > " + log.string() + " 2>&1").c_str());
  *output = slurp(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// 40 random 16×16 grey images (uint8), as test_e2e_cli.cpp's.
std::string noise_dataset(const fs::path& dir) {
  std::vector<uint8_t> px(40 * 16 * 16);
  Philox rng(11, 0);
  for (uint8_t& p : px) p = static_cast<uint8_t>(rng.uniform() * 255.0);
  const std::string path = (dir / "noise.npy").string();
  write_npy(path, DType::U8, {40, 1, 16, 16}, px.data());
  return path;
}

}  // namespace

TEST_CASE("e2e inspect memorization and swd: files, shapes, neighbours against brute force") {
  const fs::path dir = ds::test::fresh_dir("e2e_inspect");
  const std::string data = noise_dataset(dir);
  TrainConfig c;
  c.data_path = data;
  c.out_dir = (dir / "run").string();
  c.model.nz = 8;
  c.model.ngf = 4;
  c.model.ndf = 4;
  c.batch = 4;
  c.n_samples = 4;
  c.steps = 2;
  c.sample_every = 0;
  c.checkpoint_every = 2;
  c.quiet = true;
  Trainer(c).run();
  const fs::path out = dir / "memo";
  std::string text;
  REQUIRE_MESSAGE(run_cli("inspect memorization --checkpoint " + (dir / "run" / "last.safetensors").string() + " --data " +
                              data + " --out " + out.string() + " --samples 8 --neighbours 3 --device cpu",
                          &text) == 0,
                  text);
  CHECK(contains(text, "samples ("));  // the verdict line
  const NpyArray samples = read_npy((out / "samples.npy").string());
  CHECK(samples.dtype == DType::F32);
  CHECK(samples.shape == std::vector<int64_t>{8, 1, 16, 16});
  const std::vector<float> s = samples.to_float();
  for (float v : s) CHECK((v >= -1.f && v <= 1.f));
  const nlohmann::json nb = nlohmann::json::parse(slurp(out / "neighbours.json"));
  REQUIRE(nb.at("indices").size() == 8);
  const ImageDataset d = load_image_dataset(data);
  std::vector<float> row(256);
  for (int q = 0; q < 8; ++q) {
    REQUIRE(nb.at("indices")[q].size() == 3);
    // The nearest row by brute force over all 40 rows.
    double best = 1e300;
    int64_t arg = -1;
    for (int64_t i = 0; i < d.count; ++i) {
      d.sample_as_float(row.data(), i);
      double dist = 0;
      for (int j = 0; j < 256; ++j) dist += (double(s[q * 256 + j]) - row[j]) * (double(s[q * 256 + j]) - row[j]);
      if (dist < best) best = dist, arg = i;
    }
    CHECK(nb.at("indices")[q][0] == arg);
    CHECK(double(nb.at("distances")[q][0]) == doctest::Approx(std::sqrt(best)).epsilon(1e-9));
    CHECK(nb.at("distances")[q][0] <= nb.at("distances")[q][1]);
    CHECK(nb.at("distances")[q][1] <= nb.at("distances")[q][2]);
  }
  const nlohmann::json sum = nlohmann::json::parse(slurp(out / "summary.json"));
  CHECK(sum.at("k") == 3);
  CHECK(sum.at("num_samples") == 8);
  CHECK(sum.at("num_heldout") == 4);  // min(500, 40 / 10)
  CHECK(sum.at("sample_nn_distance").at("median").is_number());
  CHECK(sum.at("verdict").is_string());
  const std::string png = slurp(out / "neighbours.png");
  CHECK(png.substr(1, 3) == "PNG");

  // SWD between the dataset and the samples (uint8 against float32), and the dataset against itself.
  REQUIRE_MESSAGE(run_cli("inspect swd " + data + " " + (out / "samples.npy").string() + " --json " +
                              (dir / "swd.json").string(), &text) == 0, text);
  CHECK(contains(text, "8 images per set (of 40 and 8)"));
  const nlohmann::json sj = nlohmann::json::parse(slurp(dir / "swd.json"));
  CHECK(sj.at("swd_levels").size() == 1);  // 16×16: one level
  CHECK(double(sj.at("swd_mean")) > 0);
  // Too small: an 8×8 set is refused with the reason.
  std::vector<float> tiny(2 * 64, 0.f);
  write_npy((dir / "tiny.npy").string(), DType::F32, {2, 1, 8, 8}, tiny.data());
  CHECK(run_cli("inspect swd " + (dir / "tiny.npy").string() + " " + (dir / "tiny.npy").string(), &text) != 0);
  CHECK(contains(text, "smaller than the 16 px"));
}

TEST_CASE("e2e train swd-every: swd_mean and swd_levels in the log lines of those steps") {
  const fs::path dir = ds::test::fresh_dir("e2e_train_swd");
  const std::string data = noise_dataset(dir);
  std::string text;
  REQUIRE_MESSAGE(run_cli("train --data " + data + " --out " + (dir / "run").string() +
                              " --steps 5 --log-every 2 --swd-every 3 --swd-images 16 --batch 4 --nz 8 --ngf 4 --ndf 4"
                              " --device cpu --sample-every 0",
                          &text) == 0,
                  text);
  std::ifstream log(dir / "run" / "log.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(log, line);) lines.push_back(nlohmann::json::parse(line));
  std::vector<int64_t> steps, swd_steps;
  for (const nlohmann::json& j : lines) {
    steps.push_back(j.at("step"));
    if (j.contains("swd_mean")) {
      swd_steps.push_back(j.at("step"));
      CHECK(j.at("swd_levels").size() == 1);
      CHECK(double(j.at("swd_levels")[0]) == doctest::Approx(double(j.at("swd_mean"))));
      CHECK(double(j.at("swd_mean")) > 0);
    }
  }
  CHECK(steps == std::vector<int64_t>{2, 3, 4, 5});  // step 3 logged for its SWD
  CHECK(swd_steps == std::vector<int64_t>{3, 5});    // every 3 steps, and the last
  // Without the flag on 8×8 images the default quietly stays off (16 px needed); asked for, it is an error.
  std::vector<uint8_t> px(8 * 64, 7);
  write_npy((dir / "small.npy").string(), DType::U8, {8, 1, 8, 8}, px.data());
  CHECK(run_cli("train --data " + (dir / "small.npy").string() + " --out " + (dir / "small").string() +
                    " --steps 1 --batch 4 --nz 8 --ngf 4 --ndf 4 --device cpu --sample-every 0",
                &text) == 0);
  CHECK(run_cli("train --data " + (dir / "small.npy").string() + " --out " + (dir / "small2").string() +
                    " --steps 1 --batch 4 --nz 8 --ngf 4 --ndf 4 --device cpu --sample-every 0 --swd-every 1",
                &text) != 0);
  CHECK(contains(text, "smaller than the 16 px"));
}
