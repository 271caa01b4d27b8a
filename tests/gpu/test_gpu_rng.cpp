// Philox fills on the GPU (ds::kcuda, kernels/rng.cu) against the host generator (engine/core/rng.h) on
// awkward sizes and offsets, with the output (and a tail past n) poisoned first.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"
#include "engine/core/rng.h"
#include "kernels/rng.h"

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kTail = 5;

uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

struct Case {
  int64_t n;
  uint64_t seed;
  uint32_t stream;
  uint64_t offset;
};
const Case kCases[] = {
    {1, 1, 0, 0},
    {7, 0x0123456789abcdefull, 3, 5},
    {100003, 0xfedcba9876543210ull, 1, 0},
    {100003, 42, 7, (uint64_t{1} << 32) + 3},
    {4099, 42, 7, 0xffffffffull},
};

std::vector<float> run_on_device(int64_t n, const std::function<void(float*, cudaStream_t)>& launch) {
  auto d_out = ds::DeviceBuffer<float>::from_host(std::vector<float>(static_cast<size_t>(n + kTail), kNaN));
  launch(d_out.get(), ds::CudaContext::get().stream());
  ds::CudaContext::get().synchronize();
  return d_out.download();
}

}  // namespace

// The integer part (Philox, the 24-bit conversion) is exact on both sides. For normals, CUDA's logf
// is within 1 ulp and sinf/cosf within 2 ulp (CUDA C++ Programming Guide, "Mathematical Functions",
// single precision), glibc's within 1 ulp; sqrtf and the products are IEEE on both (no fast math),
// and the final mean + stddev*z is an explicit fmaf. So |z_dev − z_host| ≲ r·(3 ulp of cos/sin) +
// (1.5 ulp relative of r) ≤ 5.8·3·6e-8 + 5.8·1.5·1.2e-7 ≈ 2e-6 for |z| ≤ 5.77; 1e-5·max(1, stddev)
// leaves 5× room while a wrong tuple or component is off by O(1).
TEST_CASE("gpu rng normal_fill matches the host Philox to a few ulp") {
  for (const Case& c : kCases) {
    for (const std::pair<float, float>& mean_stddev : {std::pair<float, float>{0.0f, 1.0f}, {0.5f, 0.02f}}) {
      const float mean = mean_stddev.first, stddev = mean_stddev.second;  // C++17 lambdas can't capture bindings
      CAPTURE(c.n);
      CAPTURE(c.offset);
      CAPTURE(mean);
      std::vector<float> want(static_cast<size_t>(c.n + kTail), kNaN);
      ds::Philox(c.seed, c.stream, c.offset).fill_normal(want.data(), mean, stddev, c.n);
      const std::vector<float> got = run_on_device(c.n, [&](float* out, cudaStream_t s) {
        ds::kcuda::normal_fill(out, mean, stddev, c.seed, c.stream, c.offset, c.n, s);
      });
      double max_error = 0;
      int64_t exact = 0;
      for (int64_t i = 0; i < c.n; ++i) {
        const double d = std::abs(double(got[i]) - double(want[i]));
        if (std::isnan(d)) max_error = std::numeric_limits<double>::infinity();
        else if (d > max_error) max_error = d;
        exact += bits_of(got[i]) == bits_of(want[i]);
      }
      CHECK(max_error <= 1e-5 * std::max(1.0f, stddev));
      for (int64_t i = c.n; i < c.n + kTail; ++i) CHECK(std::isnan(got[static_cast<size_t>(i)]));
      MESSAGE("n = " << c.n << ": " << exact << " normals bit-identical, max |diff| " << max_error);
    }
  }
}

TEST_CASE("gpu rng uniform_fill equals the host Philox bit for bit") {
  for (const Case& c : kCases) {
    CAPTURE(c.n);
    CAPTURE(c.offset);
    std::vector<float> want(static_cast<size_t>(c.n + kTail), kNaN);
    ds::Philox(c.seed, c.stream, c.offset).fill_uniform(want.data(), c.n);
    const std::vector<float> got = run_on_device(c.n, [&](float* out, cudaStream_t s) {
      ds::kcuda::uniform_fill(out, c.seed, c.stream, c.offset, c.n, s);
    });
    int64_t first_difference = -1;
    for (size_t i = 0; i < got.size() && first_difference < 0; ++i)
      if (bits_of(got[i]) != bits_of(want[i])) first_difference = static_cast<int64_t>(i);
    CHECK(first_difference == -1);
  }
}
