// The fast CPU activations (engine/nn/elementwise_cpu_fast.h) against the reference
// (engine/nn/cpu/activations.h): bit-identical, in place and out of place, on sizes around the
// vector width and the parallel threshold, with NaN, ±0, ±inf and denormals among the inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/parallel.h"
#include "engine/nn/elementwise_cpu_fast.h"
#include "tests/test_util.h"

namespace {

// Values of both signs plus the special ones every few elements.
std::vector<float> activation_inputs(size_t n, std::mt19937_64& rng) {
  std::vector<float> v = ds::test::random_floats(n, -2.0f, 2.0f, rng);
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::denorm_min()};
  for (size_t i = 0; i < n; i += 5) v[i] = specials[(i / 5) % 7];
  return v;
}

// Bitwise equality (NaN == NaN, −0 ≠ +0).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("unit elementwise fast relu and leaky relu are bit-identical to the reference") {
  const float slope = 0.2f;
  const int64_t threshold = ds::cpu::kParallelElements;
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(33), threshold - 3, threshold + 5, 3 * threshold + 1}) {
    CAPTURE(n);
    std::mt19937_64 rng(static_cast<uint64_t>(n));
    const std::vector<float> x = activation_inputs(size_t(n), rng), dy = activation_inputs(size_t(n), rng);
    const size_t count = size_t(n);

    // Forward, out of place and in place.
    std::vector<float> ref(count), fast(count), in_place;
    ds::cpu::relu_forward(ref.data(), x.data(), n);
    ds::cpu_fast::relu_forward(fast.data(), x.data(), n);
    CHECK(same_bits(fast, ref));
    in_place = x;
    ds::cpu_fast::relu_forward(in_place.data(), in_place.data(), n);
    CHECK(same_bits(in_place, ref));
    const std::vector<float> y_relu = ref;

    ds::cpu::leaky_relu_forward(ref.data(), x.data(), slope, n);
    ds::cpu_fast::leaky_relu_forward(fast.data(), x.data(), slope, n);
    CHECK(same_bits(fast, ref));
    in_place = x;
    ds::cpu_fast::leaky_relu_forward(in_place.data(), in_place.data(), slope, n);
    CHECK(same_bits(in_place, ref));
    const std::vector<float> y_leaky = ref;

    // Backward from the forward outputs, out of place and in place (dx == dy, as the stages run it).
    ds::cpu::relu_backward(ref.data(), dy.data(), y_relu.data(), n);
    ds::cpu_fast::relu_backward(fast.data(), dy.data(), y_relu.data(), n);
    CHECK(same_bits(fast, ref));
    in_place = dy;
    ds::cpu_fast::relu_backward(in_place.data(), in_place.data(), y_relu.data(), n);
    CHECK(same_bits(in_place, ref));

    ds::cpu::leaky_relu_backward(ref.data(), dy.data(), y_leaky.data(), slope, n);
    ds::cpu_fast::leaky_relu_backward(fast.data(), dy.data(), y_leaky.data(), slope, n);
    CHECK(same_bits(fast, ref));
    in_place = dy;
    ds::cpu_fast::leaky_relu_backward(in_place.data(), in_place.data(), y_leaky.data(), slope, n);
    CHECK(same_bits(in_place, ref));
  }
}
