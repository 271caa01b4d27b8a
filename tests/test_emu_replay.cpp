// The replayable (graph-capturable) step's pieces, emulated: noise and batch gathers that read their
// per-step value from "device" memory, and the trainer's double-buffered data order driven through
// the emulated cursor kernel exactly as Trainer::step drives it on CUDA, against the CPU path.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "engine/nn/cpu/image.h"
#include "engine/core/rng.h"
#include "engine/train/trainer.h"
#include "kernels/image.h"
#include "kernels/rng.h"
#include "tests/test_util.h"

using ds::test::count_mismatches;
using ds::test::kNaN;

TEST_CASE("emu replay normal_fill_at equals the host Philox at (*step)·tuples_per_step, bit for bit") {
  // Both sides are the host compiler's float code calling the same libm: bit-identical (see test_emu_rng).
  constexpr int64_t kTail = 3;  // poisoned elements past n that must survive
  for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{1029}}) {
    const uint64_t tuples_per_step = ds::philox_tuples_for(n);
    // Steps: the first, an odd one, and one whose offset passes 2^32 tuples (the counter's high word).
    for (const int64_t step : {int64_t{0}, int64_t{5}, int64_t{(int64_t{1} << 32) / 3 + 11}}) {
      CAPTURE(n);
      CAPTURE(step);
      std::vector<float> want(static_cast<size_t>(n + kTail), kNaN), got(want.size(), kNaN);
      ds::Philox(2024, 3, static_cast<uint64_t>(step) * tuples_per_step).fill_normal(want.data(), 0.f, 1.f, n);
      const int64_t device_step = step;
      ds::kemu::normal_fill_at(got.data(), 0.f, 1.f, 2024, 3, &device_step, tuples_per_step, n, nullptr);
      CHECK(count_mismatches(got, want) == 0);
      // And equal to the host-offset launcher, which it replaces in the trainer.
      std::vector<float> plain(want.size(), kNaN);
      ds::kemu::normal_fill(plain.data(), 0.f, 1.f, 2024, 3, static_cast<uint64_t>(step) * tuples_per_step, n, nullptr);
      CHECK(count_mismatches(got, plain) == 0);
    }
  }
  int64_t counter = 41;
  ds::kemu::advance_counter(&counter, nullptr);
  CHECK(counter == 42);
}

TEST_CASE("emu replay gathers at a device position equal the CPU references") {
  std::mt19937 rng(5);
  const int64_t count = 13, image_size = 37, batch = 5;  // odd sizes: blocks end mid-image
  std::vector<uint8_t> images(count * image_size);
  for (uint8_t& b : images) b = static_cast<uint8_t>(rng() & 0xff);
  const std::vector<float> rows = ds::test::random_floats(count * image_size, -3.f, 3.f, rng);
  // A 2×count double buffer of two different orders, as the trainer keeps it.
  std::vector<int32_t> orders(2 * count);
  for (int64_t i = 0; i < count; ++i) {
    orders[i] = static_cast<int32_t>((i * 5 + 3) % count);
    orders[count + i] = static_cast<int32_t>((i * 7 + 1) % count);
  }
  for (const int64_t position : {int64_t{0}, int64_t{4}, count - batch, count, 2 * count - batch}) {
    CAPTURE(position);
    std::vector<float> want(batch * image_size, kNaN), got(want.size(), kNaN);
    ds::cpu::images_u8_to_float(want.data(), images.data(), orders.data() + position, batch, image_size);
    ds::kemu::images_u8_to_float_at(got.data(), images.data(), orders.data(), &position, batch, image_size, nullptr);
    CHECK(count_mismatches(got, want) == 0);

    std::vector<float> want_rows(batch * image_size, kNaN), got_rows(want_rows.size(), kNaN);
    ds::cpu::gather_rows(want_rows.data(), rows.data(), orders.data() + position, batch, image_size);
    ds::kemu::gather_rows_at(got_rows.data(), rows.data(), orders.data(), &position, batch, image_size, nullptr);
    CHECK(count_mismatches(got_rows, want_rows) == 0);
  }
}

namespace {

// What Trainer::step does with the order on CUDA, with the device memory in host vectors and the
// kernels emulated; returns the rows of each step's batch. `resume_at` > 0: after that many steps the
// host state is restored into a fresh DataOrder (as a resumed run does) and the "device" starts empty.
std::vector<std::vector<int32_t>> device_batches(int64_t count, int64_t batch, int64_t steps, int64_t resume_at) {
  auto order = std::make_unique<ds::DataOrder>(7, 2, count, batch);
  std::vector<int32_t> orders(2 * count, -1), gathered(batch);
  int64_t cursor = order->device_cursor();
  std::vector<std::vector<int32_t>> batches;
  for (int64_t s = 0; s < steps; ++s) {
    if (s == resume_at) {
      auto resumed = std::make_unique<ds::DataOrder>(7, 2, count, batch);
      resumed->restore(order->permutation(), order->position(), order->epoch(), order->rng_state());
      order = std::move(resumed);
      std::fill(orders.begin(), orders.end(), -1);  // a fresh process: nothing on the device
      cursor = order->device_cursor();
    }
    CHECK(cursor == order->device_cursor());  // the device cursor and the host mirror agree before each batch
    order->next_batch();
    ds::DataOrder::Upload due[2];
    const int n = order->uploads_due(due);
    for (int i = 0; i < n; ++i) std::copy(due[i].order, due[i].order + count, orders.begin() + due[i].half * count);
    // The gather, with the row index as the "pixel" (image_size 1, values i/127.5 − 1 decoded back).
    std::vector<uint8_t> ids(count);
    for (int64_t i = 0; i < count; ++i) ids[i] = static_cast<uint8_t>(i);
    std::vector<float> out(batch, kNaN);
    ds::kemu::images_u8_to_float_at(out.data(), ids.data(), orders.data(), &cursor, batch, 1, nullptr);
    for (int64_t i = 0; i < batch; ++i) gathered[i] = static_cast<int32_t>(std::lround((out[i] + 1.f) * 127.5f));
    batches.push_back(gathered);
    ds::kemu::advance_batch_cursor(&cursor, batch, count, nullptr);
  }
  return batches;
}

// The CPU path: indices = permutation() + next_batch(), never asked for device uploads.
std::vector<std::vector<int32_t>> cpu_batches(int64_t count, int64_t batch, int64_t steps) {
  ds::DataOrder order(7, 2, count, batch);
  std::vector<std::vector<int32_t>> batches;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t first = order.next_batch();
    batches.emplace_back(order.permutation().begin() + first, order.permutation().begin() + first + batch);
  }
  return batches;
}

}  // namespace

TEST_CASE("emu replay data order: the device double buffer gives the CPU path's batches, across epochs and resume") {
  // (count, batch): a tail skipped each epoch, none, one batch per epoch (every step starts an epoch),
  // a batch of 2 in an odd count.
  const std::pair<int64_t, int64_t> shapes[] = {{10, 4}, {8, 4}, {5, 5}, {7, 2}};
  for (const auto& [count, batch] : shapes) {
    const int64_t steps = 4 * (count / batch) + 3;  // at least four epochs
    const auto want = cpu_batches(count, batch, steps);
    for (const int64_t resume_at : {int64_t{-1}, int64_t{0}, int64_t{1}, count / batch, steps - 2}) {
      CAPTURE(count);
      CAPTURE(batch);
      CAPTURE(resume_at);
      CHECK(device_batches(count, batch, steps, resume_at) == want);
    }
  }
}

TEST_CASE("unit data order: drawing the device's look-ahead never moves the checkpointed state") {
  ds::DataOrder cpu(11, 2, 9, 4), cuda(11, 2, 9, 4);
  ds::DataOrder::Upload due[2];
  for (int s = 0; s < 9; ++s) {
    CAPTURE(s);
    CHECK(cpu.next_batch() == cuda.next_batch());
    const int n = cuda.uploads_due(due);
    // Two on the first batch (this epoch and the next), one when an epoch starts, none otherwise.
    CHECK(n == (s == 0 ? 2 : (s % 2 == 0 ? 1 : 0)));
    if (n > 0) CHECK(due[n - 1].half == (cuda.epoch() + 1) % 2);
    CHECK(cpu.permutation() == cuda.permutation());
    CHECK(cpu.position() == cuda.position());
    CHECK(cpu.epoch() == cuda.epoch());
    CHECK(cpu.rng_state() == cuda.rng_state());
  }
  CHECK(cpu.epoch() == 5);
}
