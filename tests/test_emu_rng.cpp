// Emulated Philox fills (kernels/rng.cu run by kernels/emu) against the host generator (engine/core/rng.h)
// on awkward sizes and offsets, with the output (and a tail past n) poisoned first.
// Both sides are compiled by the same host compiler and call the same glibc logf/sinf/cosf, so the
// normals must match bit for bit here; only the real device may differ by a few ulp (tests/gpu).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "engine/core/rng.h"
#include "kernels/rng.h"

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kTail = 5;  // poisoned elements past n that the kernel must not touch

uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// Index of the first element whose bits differ, or -1.
int64_t first_bit_difference(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i)
    if (bits_of(got[i]) != bits_of(want[i])) return static_cast<int64_t>(i);
  return -1;
}

struct Case {
  int64_t n;
  uint64_t seed;
  uint32_t stream;
  uint64_t offset;  // in tuples
};

// n: one element, less than a tuple, not a multiple of 4 nor of the block's 1024 elements; offsets:
// zero, odd, and past 2^32 so the counter's high word is exercised.
const Case kCases[] = {
    {1, 1, 0, 0},
    {7, 0x0123456789abcdefull, 3, 5},
    {100003, 0xfedcba9876543210ull, 1, 0},
    {100003, 42, 7, (uint64_t{1} << 32) + 3},
    {4099, 42, 7, 0xffffffffull},  // the tuples straddle the high-word carry
};

}  // namespace

TEST_CASE("emu rng normal_fill equals the host Philox bit for bit") {
  for (const Case& c : kCases) {
    for (const auto& [mean, stddev] : {std::pair<float, float>{0.0f, 1.0f}, {0.5f, 0.02f}}) {
      CAPTURE(c.n);
      CAPTURE(c.offset);
      CAPTURE(mean);
      std::vector<float> want(static_cast<size_t>(c.n + kTail), kNaN);
      ds::Philox host(c.seed, c.stream, c.offset);
      host.fill_normal(want.data(), mean, stddev, c.n);
      CHECK(host.tuples_used() == c.offset + static_cast<uint64_t>((c.n + 3) / 4));

      std::vector<float> got(static_cast<size_t>(c.n + kTail), kNaN);
      ds::kemu::normal_fill(got.data(), mean, stddev, c.seed, c.stream, c.offset, c.n, nullptr);
      CHECK(first_bit_difference(got, want) == -1);  // the NaN tail must survive on both sides
    }
  }
}

TEST_CASE("emu rng uniform_fill equals the host Philox bit for bit") {
  for (const Case& c : kCases) {
    CAPTURE(c.n);
    CAPTURE(c.offset);
    std::vector<float> want(static_cast<size_t>(c.n + kTail), kNaN);
    ds::Philox(c.seed, c.stream, c.offset).fill_uniform(want.data(), c.n);
    std::vector<float> got(static_cast<size_t>(c.n + kTail), kNaN);
    ds::kemu::uniform_fill(got.data(), c.seed, c.stream, c.offset, c.n, nullptr);
    CHECK(first_bit_difference(got, want) == -1);
  }
}

TEST_CASE("emu rng consecutive device fills continue the host stream") {
  // Host reserves tuples for two device fills of odd sizes; together they equal one host draw only
  // where the first ends on a tuple boundary, and never overlap otherwise.
  ds::Philox plan(99, 4, 10);
  const uint64_t first = plan.take_tuples_for(8), second = plan.take_tuples_for(5);
  CHECK(first == 10);
  CHECK(second == 12);
  std::vector<float> device(13, kNaN);
  ds::kemu::normal_fill(device.data(), 0.0f, 1.0f, 99, 4, first, 8, nullptr);
  ds::kemu::normal_fill(device.data() + 8, 0.0f, 1.0f, 99, 4, second, 5, nullptr);
  std::vector<float> host(13, kNaN);
  ds::Philox(99, 4, 10).fill_normal(host.data(), 0.0f, 1.0f, 13);
  CHECK(first_bit_difference(device, host) == -1);
}

TEST_CASE("emu rng n = 0 launches nothing") {
  float untouched = kNaN;
  ds::kemu::normal_fill(&untouched, 0.0f, 1.0f, 1, 0, 0, 0, nullptr);
  ds::kemu::uniform_fill(&untouched, 1, 0, 0, 0, nullptr);
  CHECK(bits_of(untouched) == bits_of(kNaN));
}
