// Emulated element-wise kernels (kernels/activations.cu, loss.cu, adam.cu, image.cu run by kernels/emu)
// against the CPU references (engine/nn/cpu/activations.h, loss.h, adam.h, image.h) on awkward sizes, with
// every output poisoned first so unwritten elements are caught.
//
// Tolerances: the emulated kernels are compiled by the same host compiler as the references, evaluate
// the same IEEE float expressions in the same order and call the same libm (expf, log1pf, tanhf, pow),
// so element-wise results must be bit-identical; any difference is a different formula or a wrong
// index. Only sums differ in order (double partial sums per thread, then a tree): see the BCE test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/adam.h"
#include "engine/nn/cpu/image.h"
#include "engine/nn/cpu/loss.h"
#include "kernels/activations.h"
#include "kernels/adam.h"
#include "kernels/image.h"
#include "kernels/loss.h"
#include "tests/test_util.h"

namespace {

using ds::test::count_mismatches;
using ds::test::kNaN;
using ds::test::random_floats;

// Not multiples of the 256-thread block: 1, one short of a block, one past it, and a large prime.
constexpr int64_t kSizes[] = {1, 255, 257, 1000003};

// max|a−b| / max|b|; NaN anywhere (an unwritten poisoned element) counts as infinite error.
double max_normalised_error(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double err = 0, scale = 0;
  for (size_t k = 0; k < got.size(); ++k) {
    const double d = std::abs(double(got[k]) - double(want[k]));
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    err = std::max(err, d);
    scale = std::max(scale, std::abs(double(want[k])));
  }
  return scale > 0 ? err / scale : err;
}

}  // namespace

TEST_CASE("emu activations: relu, leaky_relu, tanh forward and backward equal the CPU reference bit for bit") {
  std::mt19937 rng(101);
  const float slope = 0.2f;
  for (int64_t n : kSizes) {
    CAPTURE(n);
    const size_t count = static_cast<size_t>(n);
    std::vector<float> x = random_floats(count, -3.0f, 3.0f, rng);
    x[0] = 0.0f;  // the kink: relu'(0) = 0 in both
    const std::vector<float> dy = random_floats(count, -1.0f, 1.0f, rng);
    std::vector<float> y_ref(count), dx_ref(count), y(count), dx(count);

    ds::cpu::relu_forward(y_ref.data(), x.data(), n);
    ds::cpu::relu_backward(dx_ref.data(), dy.data(), y_ref.data(), n);
    std::fill(y.begin(), y.end(), kNaN);
    std::fill(dx.begin(), dx.end(), kNaN);
    ds::kemu::relu_forward(y.data(), x.data(), n, nullptr);
    ds::kemu::relu_backward(dx.data(), dy.data(), y_ref.data(), n, nullptr);
    CHECK(count_mismatches(y, y_ref) == 0);
    CHECK(count_mismatches(dx, dx_ref) == 0);

    ds::cpu::leaky_relu_forward(y_ref.data(), x.data(), slope, n);
    ds::cpu::leaky_relu_backward(dx_ref.data(), dy.data(), y_ref.data(), slope, n);
    std::fill(y.begin(), y.end(), kNaN);
    std::fill(dx.begin(), dx.end(), kNaN);
    ds::kemu::leaky_relu_forward(y.data(), x.data(), slope, n, nullptr);
    ds::kemu::leaky_relu_backward(dx.data(), dy.data(), y_ref.data(), slope, n, nullptr);
    CHECK(count_mismatches(y, y_ref) == 0);
    CHECK(count_mismatches(dx, dx_ref) == 0);

    ds::cpu::tanh_forward(y_ref.data(), x.data(), n);
    ds::cpu::tanh_backward(dx_ref.data(), dy.data(), y_ref.data(), n);
    std::fill(y.begin(), y.end(), kNaN);
    std::fill(dx.begin(), dx.end(), kNaN);
    ds::kemu::tanh_forward(y.data(), x.data(), n, nullptr);
    ds::kemu::tanh_backward(dx.data(), dy.data(), y_ref.data(), n, nullptr);
    CHECK(count_mismatches(y, y_ref) == 0);
    CHECK(count_mismatches(dx, dx_ref) == 0);
  }
}

TEST_CASE("emu activations run in place (y == x, dx == dy) and propagate NaN") {
  std::mt19937 rng(102);
  const int64_t n = 257;
  std::vector<float> x = random_floats(n, -3.0f, 3.0f, rng), dy = random_floats(n, -1.0f, 1.0f, rng);
  x[5] = kNaN;
  std::vector<float> y_ref(n), dx_ref(n);
  ds::cpu::leaky_relu_forward(y_ref.data(), x.data(), 0.2f, n);
  ds::cpu::leaky_relu_backward(dx_ref.data(), dy.data(), y_ref.data(), 0.2f, n);
  std::vector<float> y = x, dx = dy;
  ds::kemu::leaky_relu_forward(y.data(), y.data(), 0.2f, n, nullptr);
  ds::kemu::leaky_relu_backward(dx.data(), dx.data(), y.data(), 0.2f, n, nullptr);
  CHECK(std::isnan(y[5]));
  y[5] = y_ref[5] = 0.0f;  // NaN ≠ NaN bitwise is fine either way; the rest must match
  CHECK(count_mismatches(y, y_ref) == 0);
  CHECK(count_mismatches(dx, dx_ref) == 0);
  std::vector<float> r = x;
  ds::kemu::relu_forward(r.data(), r.data(), n, nullptr);
  CHECK(std::isnan(r[5]));
}

// Loss and mean probability are double sums in a different order (per thread, then a shuffle tree)
// than the reference's sequential one; both round a double that differs by ~1e-16 relative to float,
// so they agree to at most one float ulp (≤ 1.2e-7 relative); 2.5e-7 allows the ulp at a binade edge.
// dlogits are element-wise: bit-identical.
TEST_CASE("emu bce_with_logits: loss, mean probability and dlogits for n = 1, 3, 257, 4099, both targets") {
  std::mt19937 rng(103);
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{257}, int64_t{4099}}) {
    std::vector<float> logits = random_floats(static_cast<size_t>(n), -6.0f, 6.0f, rng);
    if (n > 3) {  // saturated logits: the stable form must stay finite and exact
      logits[1] = 90.0f;
      logits[2] = -90.0f;
    }
    for (float target : {0.0f, 1.0f}) {
      for (float dloss : {1.0f, 0.5f}) {
        CAPTURE(n);
        CAPTURE(target);
        CAPTURE(dloss);
        float p_ref = 0;
        const float loss_ref = ds::cpu::bce_with_logits_forward(&p_ref, logits.data(), target, n);
        std::vector<float> d_ref(static_cast<size_t>(n));
        ds::cpu::bce_with_logits_backward(d_ref.data(), logits.data(), target, dloss, n);

        float loss = kNaN, p = kNaN;
        std::vector<float> d(static_cast<size_t>(n), kNaN);
        ds::kemu::bce_with_logits(&loss, &p, d.data(), logits.data(), target, dloss, n, nullptr);
        CHECK(std::isfinite(loss_ref));
        CHECK(loss == doctest::Approx(loss_ref).epsilon(2.5e-7).scale(0));
        CHECK(p == doctest::Approx(p_ref).epsilon(2.5e-7).scale(0));
        CHECK(count_mismatches(d, d_ref) == 0);

        float loss_only = kNaN, p_only = kNaN;  // forward only: dlogits = nullptr
        ds::kemu::bce_with_logits(&loss_only, &p_only, nullptr, logits.data(), target, dloss, n, nullptr);
        CHECK(loss_only == loss);
        CHECK(p_only == p);
      }
    }
  }
  float loss, p;
  const float x = 0;
  CHECK_THROWS_AS(ds::kemu::bce_with_logits(&loss, &p, nullptr, &x, 1.0f, 1.0f, 0, nullptr), std::invalid_argument);
}

TEST_CASE("emu check_finite: clears the flag on NaN/Inf anywhere, leaves it otherwise, never sets it") {
  std::mt19937 rng(104);
  for (int64_t n : kSizes) {
    CAPTURE(n);
    std::vector<float> x = random_floats(static_cast<size_t>(n), -1e30f, 1e30f, rng);
    x[static_cast<size_t>(n) / 2] = std::numeric_limits<float>::max();
    int flag = 1;
    ds::kemu::check_finite(&flag, x.data(), n, nullptr);
    CHECK(flag == 1);
    CHECK(ds::cpu::all_finite(x.data(), n));
    for (float bad : {kNaN, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
      for (size_t where : {size_t{0}, static_cast<size_t>(n) - 1}) {  // the first and the last element
        std::vector<float> y = x;
        y[where] = bad;
        flag = 1;
        ds::kemu::check_finite(&flag, y.data(), n, nullptr);
        CHECK(flag == 0);
        CHECK(ds::cpu::count_nonfinite(y.data(), n) == 1);
      }
    }
    flag = 0;  // a flag already cleared stays cleared
    ds::kemu::check_finite(&flag, x.data(), n, nullptr);
    CHECK(flag == 0);
  }
}

// Same expressions, same libm pow, so bit-identical in the emulator; the brief's bound (1e-6 relative,
// the Adam-vs-PyTorch bound of the issue) is asserted too, with the update itself checked to be
// non-trivial (parameters moved by ~lr per step).
TEST_CASE("emu adam_step: 5 steps with the step counter on the device equal the CPU reference") {
  std::mt19937 rng(105);
  const double lr = 2e-4, beta1 = 0.5, beta2 = 0.999, eps = 1e-8;
  for (int64_t n : kSizes) {
    CAPTURE(n);
    const size_t count = static_cast<size_t>(n);
    const std::vector<float> p0 = random_floats(count, -0.1f, 0.1f, rng);
    std::vector<float> p_ref = p0, m_ref(count, 0.0f), v_ref(count, 0.0f);
    std::vector<float> p = p0, m(count, 0.0f), v(count, 0.0f);
    int step = 0;
    for (int64_t s = 1; s <= 5; ++s) {
      CAPTURE(s);
      std::vector<float> g = random_floats(count, -1e-2f, 1e-2f, rng);
      if (s == 3) g[0] = 0.0f;  // a zero gradient: m and v only decay
      ds::cpu::adam_step(p_ref.data(), m_ref.data(), v_ref.data(), g.data(), n, lr, beta1, beta2, eps, s);
      ds::kemu::advance_step(&step, nullptr);
      ds::kemu::adam_step(p.data(), m.data(), v.data(), g.data(), &step, n, lr, beta1, beta2, eps, nullptr);
      CHECK(step == s);
      CHECK(count_mismatches(p, p_ref) == 0);
      CHECK(count_mismatches(m, m_ref) == 0);
      CHECK(count_mismatches(v, v_ref) == 0);
      CHECK(max_normalised_error(p, p_ref) <= 1e-6);
    }
    double moved = 0;
    for (size_t k = 0; k < count; ++k) moved = std::max(moved, std::abs(double(p[k]) - double(p0[k])));
    CHECK(moved > 0.5 * lr);
  }
}

TEST_CASE("emu images_u8_to_float gathers rows by index and float_to_u8 writes every byte") {
  std::mt19937 rng(106);
  struct Size {
    int64_t count, n_images, image_size;
  };
  for (Size s : {Size{1, 1, 1}, Size{5, 3, 3 * 7 * 9}, Size{9, 17, 3 * 33 * 31}}) {
    CAPTURE(s.n_images);
    CAPTURE(s.image_size);
    std::vector<uint8_t> images(static_cast<size_t>(s.count * s.image_size));
    std::uniform_int_distribution<int> byte(0, 255), row(0, static_cast<int>(s.count - 1));
    for (uint8_t& b : images) b = static_cast<uint8_t>(byte(rng));
    std::vector<int32_t> indices(static_cast<size_t>(s.n_images));
    for (int32_t& i : indices) i = row(rng);
    indices.back() = static_cast<int32_t>(s.count - 1);  // the last row: an overrun would read past the end
    const size_t out_count = static_cast<size_t>(s.n_images * s.image_size);
    std::vector<float> ref(out_count), out(out_count, kNaN);
    ds::cpu::images_u8_to_float(ref.data(), images.data(), indices.data(), s.n_images, s.image_size);
    ds::kemu::images_u8_to_float(out.data(), images.data(), indices.data(), s.n_images, s.image_size, nullptr);
    CHECK(count_mismatches(out, ref) == 0);
  }
  for (int64_t n : kSizes) {
    CAPTURE(n);
    std::vector<float> in = random_floats(static_cast<size_t>(n), -1.2f, 1.2f, rng);
    in[0] = kNaN;
    std::vector<uint8_t> ref(static_cast<size_t>(n));
    ds::cpu::float_to_u8(ref.data(), in.data(), n);
    // Two different poisons: an unwritten byte cannot match the reference under both.
    for (uint8_t poison : {uint8_t{0x00}, uint8_t{0xFF}}) {
      std::vector<uint8_t> out(static_cast<size_t>(n), poison);
      ds::kemu::float_to_u8(out.data(), in.data(), n, nullptr);
      CHECK(out == ref);
    }
  }
}

TEST_CASE("emu gather_rows copies float rows by index, every element written") {
  std::mt19937 rng(107);
  for (int64_t row_size : {int64_t{1}, int64_t{7}, int64_t{128 * 33}}) {
    CAPTURE(row_size);
    const int64_t count = 11, n_rows = 9;
    const std::vector<float> rows = random_floats(static_cast<size_t>(count * row_size), -1.f, 1.f, rng);
    std::vector<int32_t> indices(static_cast<size_t>(n_rows));
    std::uniform_int_distribution<int> row(0, static_cast<int>(count - 1));
    for (int32_t& i : indices) i = row(rng);
    indices.back() = static_cast<int32_t>(count - 1);
    std::vector<float> ref(static_cast<size_t>(n_rows * row_size)), out(ref.size(), kNaN);
    ds::cpu::gather_rows(ref.data(), rows.data(), indices.data(), n_rows, row_size);
    ds::kemu::gather_rows(out.data(), rows.data(), indices.data(), n_rows, row_size, nullptr);
    CHECK(count_mismatches(out, ref) == 0);
  }
}
