// The streamed dataset path of CUDA training (engine/data/batch_stream.h), emulated: host staging from the
// memory map, the copy into one of two device slots, the gather through the slot cursor, against the
// resident path's device double buffer of orders, bit for bit, for uint8 and float16 datasets, across
// epochs and a resume. Plus the --device-data choice and the memory-mapped CPU batch gather.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "engine/data/batch_stream.h"
#include "engine/nn/cpu/image.h"
#include "engine/data/image_dataset.h"
#include "engine/formats/npy.h"
#include "engine/train/trainer.h"
#include "kernels/image.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using ds::test::count_mismatches;
using ds::test::kNaN;

namespace {

// A dataset on disk: count rows of C×H×W (odd sizes), uint8 or float16 (random values in [-1, 1]).
std::string write_dataset(const fs::path& dir, DType dtype, int64_t count) {
  std::mt19937 rng(3);
  const int64_t C = 1, H = 3, W = 5, n = count * C * H * W;
  const std::string path = (dir / (dtype == DType::U8 ? "u8.npy" : "f16.npy")).string();
  if (dtype == DType::U8) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng() & 0xff);
    write_npy(path, dtype, {count, C, H, W}, v.data());
  } else {
    std::vector<uint16_t> v(n);
    for (auto& h : v) h = float_to_half(std::uniform_real_distribution<float>(-1.f, 1.f)(rng));
    write_npy(path, dtype, {count, C, H, W}, v.data());
  }
  return path;
}

// The resident path as Trainer::step drives it on CUDA, emulated: the dataset whole on the "device"
// (uint8 as stored, float16 as float32), orders in the double buffer, the gather at the cursor.
std::vector<std::vector<float>> resident_batches(const ImageDataset& data, int64_t batch, int64_t steps, int64_t resume_at) {
  const int64_t count = data.count, size = data.sample_size();
  std::vector<float> rows_f32(count * size);
  std::vector<int32_t> all(count);
  for (int64_t i = 0; i < count; ++i) all[i] = static_cast<int32_t>(i);
  data.gather_as_float(rows_f32.data(), all.data(), count);
  auto order = std::make_unique<DataOrder>(9, 2, count, batch);
  std::vector<int32_t> orders(2 * count, -1);
  int64_t cursor = order->device_cursor();
  std::vector<std::vector<float>> batches;
  for (int64_t s = 0; s < steps; ++s) {
    if (s == resume_at) {
      auto resumed = std::make_unique<DataOrder>(9, 2, count, batch);
      resumed->restore(order->permutation(), order->position(), order->epoch(), order->rng_state());
      order = std::move(resumed);
      std::fill(orders.begin(), orders.end(), -1);
      cursor = order->device_cursor();
    }
    order->next_batch();
    DataOrder::Upload due[2];
    const int n = order->uploads_due(due);
    for (int i = 0; i < n; ++i) std::copy(due[i].order, due[i].order + count, orders.begin() + due[i].half * count);
    std::vector<float> out(batch * size, kNaN);
    if (data.dtype == DType::U8)
      kemu::images_u8_to_float_at(out.data(), data.row(0), orders.data(), &cursor, batch, size, nullptr);
    else
      kemu::gather_rows_at(out.data(), rows_f32.data(), orders.data(), &cursor, batch, size, nullptr);
    kemu::advance_batch_cursor(&cursor, batch, count, nullptr);
    batches.push_back(out);
  }
  return batches;
}

// The streamed path as Trainer::step drives it: BatchStream picks the slot and rows, stage() gathers
// them into that slot's staging buffer, the "copy" puts them in the ring's slot, the step gathers
// through the ring's identity order at its own cursor. A resume starts a fresh BatchStream, cursor 0.
std::vector<std::vector<float>> streamed_batches(const ImageDataset& data, int64_t batch, int64_t steps,
                                                 int64_t resume_at, std::vector<int>* slots) {
  const int64_t count = data.count, size = data.sample_size();
  auto order = std::make_unique<DataOrder>(9, 2, count, batch);
  auto stream = std::make_unique<BatchStream>(batch, data);
  std::vector<uint8_t> staging[2] = {std::vector<uint8_t>(stream->slot_bytes()), std::vector<uint8_t>(stream->slot_bytes())};
  std::vector<uint8_t> ring(2 * stream->slot_bytes(), 0xff);  // poisoned: NaN floats, 255 bytes
  std::vector<int32_t> ring_order = stream->ring_order();
  int64_t cursor = 0;
  std::vector<std::vector<float>> batches;
  for (int64_t s = 0; s < steps; ++s) {
    if (s == resume_at) {
      auto resumed = std::make_unique<DataOrder>(9, 2, count, batch);
      resumed->restore(order->permutation(), order->position(), order->epoch(), order->rng_state());
      order = std::move(resumed);
      stream = std::make_unique<BatchStream>(batch, data);
      std::fill(ring.begin(), ring.end(), 0xff);
      cursor = 0;
    }
    const int64_t first = order->next_batch();
    DataOrder::Upload due[2];
    order->uploads_due(due);  // the trainer still keeps the device orders; must not change the rows
    const BatchStream::Upload u = stream->next(order->permutation(), first);
    slots->push_back(u.slot);
    stream->stage(staging[u.slot].data(), u.rows, u.n);
    std::memcpy(ring.data() + u.slot * stream->slot_bytes(), staging[u.slot].data(), stream->slot_bytes());
    CHECK(cursor == u.slot * batch);  // the device cursor points at the slot just filled
    std::vector<float> out(batch * size, kNaN);
    if (data.dtype == DType::U8)
      kemu::images_u8_to_float_at(out.data(), ring.data(), ring_order.data(), &cursor, batch, size, nullptr);
    else
      kemu::gather_rows_at(out.data(), reinterpret_cast<const float*>(ring.data()), ring_order.data(), &cursor, batch,
                           size, nullptr);
    kemu::advance_batch_cursor(&cursor, batch, batch, nullptr);
    batches.push_back(out);
  }
  return batches;
}

}  // namespace

TEST_CASE("emu stream: streamed batches equal the resident path's, bit for bit, across epochs and resume") {
  const fs::path dir = ds::test::fresh_dir("emu_batch_stream");
  for (const DType dtype : {DType::U8, DType::F16}) {
    // (count, batch): a tail skipped each epoch, exact epochs, one batch per epoch, odd count.
    for (const auto& [count, batch] : {std::pair<int64_t, int64_t>{10, 4}, {8, 4}, {5, 5}, {7, 2}}) {
      const ImageDataset data = load_image_dataset(write_dataset(dir, dtype, count));
      const int64_t steps = 4 * (count / batch) + 3;
      for (const int64_t resume_at : {int64_t{-1}, int64_t{1}, count / batch, steps - 2}) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(count);
        CAPTURE(batch);
        CAPTURE(resume_at);
        std::vector<int> slots;
        const auto want = resident_batches(data, batch, steps, resume_at);
        const auto got = streamed_batches(data, batch, steps, resume_at, &slots);
        REQUIRE(got.size() == want.size());
        size_t bad = 0;
        for (size_t s = 0; s < got.size(); ++s) bad += count_mismatches(got[s], want[s]);
        CHECK(bad == 0);
        // Slots alternate from 0, starting again at 0 after a resume.
        for (int64_t s = 0; s < steps; ++s) {
          const int64_t since = resume_at >= 0 && s >= resume_at ? s - resume_at : s;
          CHECK(slots[s] == since % 2);
        }
      }
    }
  }
}

TEST_CASE("unit stream: --device-data picks resident when the dataset fits the budget, and refuses what cannot fit") {
  CHECK(parse_device_data("auto") == DeviceData::Auto);
  CHECK(parse_device_data("stream") == DeviceData::Stream);
  CHECK(ds::test::contains(ds::test::error_of([] { parse_device_data("gpu"); }), "--device-data gpu"));
  const size_t MiB = size_t(1) << 20, GiB = size_t(1) << 30;
  CHECK(resident_budget(16 * GiB) == 14 * GiB);    // 1/8 kept back
  CHECK(resident_budget(2 * GiB) == 1536 * MiB);   // at least 512 MiB kept back
  CHECK(resident_budget(256 * MiB) == 0);
  CHECK(choose_resident(DeviceData::Auto, 14 * GiB, 16 * GiB));
  CHECK_FALSE(choose_resident(DeviceData::Auto, 14 * GiB + 1, 16 * GiB));
  CHECK_FALSE(choose_resident(DeviceData::Stream, 1, 16 * GiB));
  CHECK(choose_resident(DeviceData::Resident, 15 * GiB, 16 * GiB));  // forced: anything that fits at all
  CHECK(ds::test::contains(ds::test::error_of([&] { choose_resident(DeviceData::Resident, 17 * GiB, 16 * GiB); }),
                           "--device-data resident"));
}

TEST_CASE("unit stream: the CPU trainer gathers its batches from the memory map as read_npy's rows") {
  const fs::path dir = ds::test::fresh_dir("unit_mmap_train");
  for (const DType dtype : {DType::U8, DType::F16}) {
    CAPTURE(dtype_name(dtype));
    // 16×16 rows (the smallest DCGAN side the trainer takes).
    const int64_t count = 12, S = 16, size = S * S;
    std::mt19937 rng(4);
    const std::string path = (dir / (dtype == DType::U8 ? "u8.npy" : "f16.npy")).string();
    if (dtype == DType::U8) {
      std::vector<uint8_t> v(count * size);
      for (auto& b : v) b = static_cast<uint8_t>(rng() & 0xff);
      write_npy(path, dtype, {count, 1, S, S}, v.data());
    } else {
      std::vector<uint16_t> v(count * size);
      for (auto& h : v) h = float_to_half(std::uniform_real_distribution<float>(-1.f, 1.f)(rng));
      write_npy(path, dtype, {count, 1, S, S}, v.data());
    }
    const std::vector<float> all = read_npy(path).to_float();  // independent: one whole read
    TrainConfig c;
    c.data_path = path;
    c.out_dir = (dir / ("run_" + std::string(dtype_name(dtype)))).string();
    c.model.nz = 4;
    c.model.ngf = 4;
    c.model.ndf = 4;
    c.batch = 5;
    c.n_samples = 4;
    c.device = Device::CPU;
    c.sample_every = 0;
    c.checkpoint_every = 0;
    c.quiet = true;
    Trainer trainer(c);
    for (int s = 0; s < 3; ++s) {  // 12 rows, batch 5: the third step starts a new epoch
      trainer.step();
      const DataOrder& order = trainer.data_order();
      const std::vector<float> got = trainer.real_batch().to_host();
      std::vector<float> want;
      for (int64_t i = 0; i < c.batch; ++i) {
        const int32_t row = order.permutation()[order.position() - c.batch + i];
        for (int64_t j = 0; j < size; ++j) {
          const float v = all[row * size + j];
          want.push_back(dtype == DType::U8 ? v / 127.5f - 1.0f : v);
        }
      }
      CHECK(count_mismatches(got, want) == 0);
    }
  }
}
