// `--precision bf16` on a GPU: one whole training step of the CUDA bf16 networks (engine/nn/bf16_path.h:
// cuDNN bf16 NCHW convolutions, the bf16 kernels) against the float32 CPU step, within the R·u bound of
// tests/bf16_step_check.h; and the bf16 Trainer step captured in a CUDA graph. Only compiled here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/precision.h"
#include "engine/formats/npy.h"
#include "engine/core/rng.h"
#include "engine/nn/dcgan.h"
#include "engine/train/trainer.h"
#include "tests/bf16_step_check.h"
#include "tests/test_util.h"

using namespace ds;

namespace {
std::vector<float> normals(int64_t n, uint32_t stream, float stddev) {
  std::vector<float> v(static_cast<size_t>(n));
  Philox(2027, stream).fill_normal(v.data(), 0.f, stddev, n);
  return v;
}
// bf16 networks for the scope's lifetime, then the suite's float32 ones again.
struct Bf16NetworksScope {
  Bf16NetworksScope() { set_bf16_networks(true); }
  ~Bf16NetworksScope() { set_bf16_networks(false); }
};
}  // namespace

TEST_CASE("gpu bf16: one CUDA bf16 training step against the float32 CPU step, within R roundings of 2^-8") {
  ModelConfig mc;
  mc.height = 32;
  mc.width = 64;
  mc.channels = 3;
  mc.nz = 16;
  mc.ngf = mc.ndf = 8;
  const int64_t B = 5;
  Generator Gc(mc, B, Device::CPU);
  Discriminator Dc(mc, B, Device::CPU);
  Gc.init_weights(3, 0);
  Dc.init_weights(3, 1);
  std::unique_ptr<Generator> Gb;
  std::unique_ptr<Discriminator> Db;
  {
    Bf16NetworksScope bf16;
    Gb = std::make_unique<Generator>(mc, B, Device::CUDA);
    Db = std::make_unique<Discriminator>(mc, B, Device::CUDA);
  }
  const test::Bf16StepResult r =
      test::bf16_step_against_float(Gc, Dc, *Gb, *Db, normals(B * 3 * 32 * 64, 7, 0.5f), normals(B * 16, 8, 1.f));
  MESSAGE("gpu bf16 step vs float32 CPU: statistics " << r.stats_error << " (bound " << r.stats_bound
                                                      << "), D gradient " << r.grad_error[0] << " (" << r.grad_bound[0]
                                                      << "), G gradient " << r.grad_error[1] << " (" << r.grad_bound[1]
                                                      << ")");
  test::check_bf16_step(r);
}

TEST_CASE("gpu bf16: the bf16 Trainer step is captured and replayed in a CUDA graph, bit-equal to eager bf16 steps") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "gpu_bf16_graph";
  fs::remove_all(dir);
  fs::create_directories(dir);
  constexpr int64_t kCount = 10, kSteps = 5;
  std::vector<float> values(kCount * 16 * 16);
  Philox(78, 0).fill_uniform(values.data(), static_cast<int64_t>(values.size()));
  std::vector<uint8_t> bytes(values.size());
  for (size_t i = 0; i < values.size(); ++i) bytes[i] = static_cast<uint8_t>(values[i] * 256.f);
  const std::string data = (dir / "data.npy").string();
  write_npy(data, DType::U8, {kCount, 1, 16, 16}, bytes.data());
  auto config = [&](const std::string& out, bool graph) {
    TrainConfig c;
    c.data_path = data;
    c.out_dir = (dir / out).string();
    c.model.nz = 8;
    c.model.ngf = c.model.ndf = 8;
    c.batch = 4;
    c.n_samples = 4;
    c.steps = kSteps;
    c.device = Device::CUDA;
    c.log_every = 1000;
    c.sample_every = 0;
    c.checkpoint_every = 0;
    c.quiet = true;
    c.cuda_graph = graph;
    return c;
  };
  Bf16NetworksScope bf16;
  Trainer graph(config("graph", true)), eager(config("eager", false));
  REQUIRE(graph.generator().bf16());
  REQUIRE(graph.discriminator().bf16());
  for (int64_t step = 1; step <= kSteps; ++step) {
    CAPTURE(step);
    CHECK(graph.cuda_graph_replaying() == (step >= 3));  // step 1 eager warm-up, step 2 captured
    graph.step();
    eager.step();
    // The same kernels and cuDNN calls with the same arguments on one stream: the same bits.
    CHECK(test::count_mismatches(graph.statistics().to_host(), eager.statistics().to_host()) == 0);
  }
  CHECK(graph.cuda_graph_failure() == "");
  CHECK(test::count_mismatches(graph.generator().params().to_host(), eager.generator().params().to_host()) == 0);
  const std::vector<float> stats = graph.statistics().to_host();
  for (float v : stats) CHECK(std::isfinite(v));
}
