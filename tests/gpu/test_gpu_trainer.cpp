// The CUDA Trainer (device data order, device noise step) against the CPU Trainer with the same seed:
// the same batch every step across epochs, also after a resume on CUDA, and the same statistics.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/formats/npy.h"
#include "engine/core/rng.h"
#include "engine/train/trainer.h"
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
