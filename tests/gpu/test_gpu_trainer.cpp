// The CUDA Trainer (device data order, device noise step) against the CPU Trainer with the same seed:
// the same batch every step across epochs, also after a resume on CUDA, and the same statistics; the
// graph-captured step (step_graph.h) against eager launches, and the launch logs of two eager steps.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/formats/npy.h"
#include "engine/core/rng.h"
#include "engine/train/trainer.h"
#include "kernels/launch_log.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using ds::test::count_mismatches;
using ds::test::normalised_error;

namespace {

constexpr int64_t kCount = 10, kBatch = 4, kSteps = 9;  // epochs of 2 batches with a tail of 2: 5 epochs

fs::path fresh_tmp(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// kCount random 1×16×16 samples: uint8 images, or float16 values (the mel path, gather_rows).
std::string write_dataset(const fs::path& dir, DType dtype) {
  const int64_t n = kCount * 16 * 16;
  std::vector<float> values(n);
  Philox(77, 0).fill_uniform(values.data(), n);
  const std::string path = (dir / "data.npy").string();
  if (dtype == DType::U8) {
    std::vector<uint8_t> bytes(n);
    for (int64_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(values[i] * 256.f);
    write_npy(path, DType::U8, {kCount, 1, 16, 16}, bytes.data());
  } else {
    std::vector<uint16_t> halves(n);
    for (int64_t i = 0; i < n; ++i) halves[i] = float_to_half(2.f * values[i] - 1.f);
    write_npy(path, DType::F16, {kCount, 1, 16, 16}, halves.data());
  }
  return path;
}

TrainConfig tiny(const std::string& data, const fs::path& out, Device device) {
  TrainConfig c;
  c.data_path = data;
  c.out_dir = out.string();
  c.model.nz = 8;
  c.model.ngf = c.model.ndf = 8;
  c.batch = kBatch;
  c.n_samples = 4;
  c.steps = kSteps;
  c.device = device;
  c.log_every = 1000;
  c.sample_every = 0;
  c.checkpoint_every = 0;
  c.quiet = true;
  return c;
}

}  // namespace

TEST_CASE("gpu trainer: CUDA steps train on the CPU's batches (also after a CUDA resume) with the same losses") {
  // The dataset resident on the device, and streamed per batch (--device-data stream): the same rows.
  for (const DeviceData mode : {DeviceData::Resident, DeviceData::Stream})
  for (const DType dtype : {DType::U8, DType::F16}) {
    const std::string kind = std::string(dtype_name(dtype)) + " " + device_data_name(mode);
    CAPTURE(kind);
    const fs::path dir = fresh_tmp("darkstar_gpu_trainer");
    const std::string data = write_dataset(dir, dtype);
    Trainer cpu(tiny(data, dir / "cpu", Device::CPU));
    TrainConfig cuda_config = tiny(data, dir / "cuda", Device::CUDA);
    cuda_config.device_data = mode;
    Trainer cuda(cuda_config);
    CHECK(cuda.dataset_streamed() == (mode == DeviceData::Stream));
    std::vector<std::vector<float>> cpu_batches;
    for (int64_t step = 1; step <= kSteps; ++step) {
      CAPTURE(step);
      cpu.step();
      cuda.step();
      cpu_batches.push_back(cpu.real_batch().to_host());
      // The gather is exact on both devices (one correctly rounded division, or a copy): same rows, same bits.
      CHECK(count_mismatches(cuda.real_batch().to_host(), cpu_batches.back()) == 0);
      // Losses and D outputs: float sums in another order (cuDNN, block reductions) and device
      // logf/sinf in the noise (a few ulp), as the gpu dcgan step test: ~1e-5.
      CHECK(normalised_error(cuda.statistics().to_host(), cpu.statistics().to_host(), 0.0) < 1e-4);
      CHECK(cuda.data_order().epoch() == cpu.data_order().epoch());
      if (step == 3) cuda.write_checkpoint();  // mid-epoch 2, with epoch 3's order already on the device
    }
    CHECK(cpu.data_order().epoch() == 5);

    // A fresh CUDA trainer resumed at step 3 (empty device buffer, cursor from the host mirror) must
    // continue with the CPU run's batches through the following epoch boundaries.
    TrainConfig again = cuda_config;
    again.resume = true;
    Trainer resumed(again);
    REQUIRE(resumed.current_step() == 3);
    for (int64_t step = 4; step <= kSteps; ++step) {
      CAPTURE(step);
      resumed.step();
      CHECK(count_mismatches(resumed.real_batch().to_host(), cpu_batches[step - 1]) == 0);
    }
  }
}

TEST_CASE("gpu trainer: the CUDA graph replays train exactly as eager launches (--no-graph), and two eager steps log the same launches") {
  for (const DeviceData mode : {DeviceData::Resident, DeviceData::Stream}) {
    CAPTURE(device_data_name(mode));
    const fs::path dir = fresh_tmp("darkstar_gpu_graph");
    const std::string data = write_dataset(dir, DType::U8);
    TrainConfig graph_config = tiny(data, dir / "graph", Device::CUDA), eager_config = tiny(data, dir / "eager", Device::CUDA);
    graph_config.device_data = eager_config.device_data = mode;
    eager_config.cuda_graph = false;
    Trainer graph(graph_config), eager(eager_config);
    for (int64_t step = 1; step <= kSteps; ++step) {
      CAPTURE(step);
      // Step 1 eager (warm-up), step 2 captured and launched, the rest replays.
      CHECK(graph.cuda_graph_replaying() == (step >= 3));
      if (step == 3) {  // a replay enqueues one graph launch and nothing else
        launch_log::LaunchLog replay;
        {
          launch_log::LaunchLogScope scope(replay);
          graph.step();
        }
        REQUIRE(replay.records.size() == 1);
        CHECK(replay.records[0].what == "cudaGraphLaunch");
      } else {
        graph.step();
      }
      eager.step();
      // The graph runs the same kernels with the same arguments in the same order on one stream (a
      // capture of one stream is a chain), with the same deterministic cuDNN algorithms (cached per
      // shape, deterministic only): the same bits.
      CHECK(count_mismatches(graph.statistics().to_host(), eager.statistics().to_host()) == 0);
      CHECK(count_mismatches(graph.real_batch().to_host(), eager.real_batch().to_host()) == 0);
    }
    CHECK(graph.cuda_graph_failure() == "");
    CHECK_FALSE(eager.cuda_graph_replaying());
    CHECK(count_mismatches(graph.generator().params().to_host(), eager.generator().params().to_host()) == 0);
    CHECK(count_mismatches(graph.discriminator().params().to_host(), eager.discriminator().params().to_host()) == 0);
    // The host bookkeeping the replays do not run was mirrored: the same counters as the eager run.
    for (size_t i = 0; i < graph.discriminator().stages().size(); ++i)
      CHECK(graph.discriminator().stages()[i].num_batches_tracked == eager.discriminator().stages()[i].num_batches_tracked);
    for (size_t i = 0; i < graph.generator().stages().size(); ++i)
      CHECK(graph.generator().stages()[i].num_batches_tracked == eager.generator().stages()[i].num_batches_tracked);

    // Two eager steps: the same kernels, library calls and argument bytes (what lets one graph replay them).
    launch_log::LaunchLog a, b;
    {
      launch_log::LaunchLogScope scope(a);
      eager.step();
    }
    {
      launch_log::LaunchLogScope scope(b);
      eager.step();
    }
    CHECK(a.records.size() > 10);
    CHECK(launch_log::first_difference(a, b) == "");
    bool saw_cudnn = false;
    for (const launch_log::Record& r : a.records) saw_cudnn = saw_cudnn || r.what == "cudnnConvolutionForward";
    CHECK(saw_cudnn);
  }
}

TEST_CASE("gpu trainer: deferred log lines on CUDA hold the statistics of the step they name (graph and eager)") {
  // Trainer::run writes step k's line from pinned copies after step k+1 is enqueued (host_readback.h);
  // the reference is the same training driven step by step with a synchronous read after each step.
  for (const bool graph : {true, false}) {
    CAPTURE(graph);
    const fs::path dir = fresh_tmp("darkstar_gpu_deferred_log");
    const std::string data = write_dataset(dir, DType::U8);
    TrainConfig manual_config = tiny(data, dir / "manual", Device::CUDA);
    manual_config.cuda_graph = graph;
    std::vector<std::vector<float>> expected;
    {
      Trainer manual(manual_config);
      for (int64_t s = 0; s < kSteps; ++s) {
        manual.step();
        expected.push_back(manual.statistics().to_host());
      }
    }
    TrainConfig run_config = tiny(data, dir / "run", Device::CUDA);
    run_config.cuda_graph = graph;
    run_config.log_every = 1;
    std::vector<StepStats> reported;
    Trainer run(run_config);
    run.run([&](const StepStats& s) { reported.push_back(s); });
    REQUIRE(reported.size() == static_cast<size_t>(kSteps));
    for (int64_t s = 0; s < kSteps; ++s) {
      CAPTURE(s);
      const std::vector<float>& e = expected[static_cast<size_t>(s)];
      CHECK(reported[static_cast<size_t>(s)].step == s + 1);
      CHECK(reported[static_cast<size_t>(s)].loss_g == e[kErrG]);  // the same kernels, the same bits
      CHECK(reported[static_cast<size_t>(s)].d_x == e[kDx]);
      CHECK(reported[static_cast<size_t>(s)].loss_d == e[kErrDReal] + e[kErrDFake]);
    }
    fs::remove_all(dir);
  }
}
