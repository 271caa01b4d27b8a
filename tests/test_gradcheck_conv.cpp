// Gradient checks of the Conv2d / ConvTranspose2d CPU reference (engine/nn/cpu/conv.h) against central
// finite differences in double on odd shapes, their write/accumulate contract, known answers that pin
// PyTorch's semantics (cross-correlation, scatter for the transposed conv), and the identity the cuDNN
// mapping relies on: ConvTranspose2d forward = the matching Conv2d's backward-data.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/nn/conv_shape.h"
#include "engine/nn/cpu/conv.h"
#include "tests/test_util.h"

namespace {

using ds::ConvShape;

using ds::test::max_normalised_error;

// Inputs uniform in [-1, 1).
std::vector<double> conv_random(size_t n, std::mt19937_64& rng) { return ds::test::random_doubles(n, -1.0, 1.0, rng); }

void layer_forward(std::vector<double>& y, const std::vector<double>& x, const std::vector<double>& w,
                   const ConvShape& s) {
  if (s.transposed)
    ds::cpu::conv_transpose2d_forward(y.data(), x.data(), w.data(), s);
  else
    ds::cpu::conv2d_forward(y.data(), x.data(), w.data(), s);
}

// loss = Σ g·y(x, w) for a fixed random g, so ∂loss/∂y = g is the dy fed to the backward passes.
double conv_loss(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& g,
                 const ConvShape& s) {
  std::vector<double> y(s.y_size());
  layer_forward(y, x, w, s);
  double l = 0;
  for (size_t i = 0; i < y.size(); ++i) l += g[i] * y[i];
  return l;
}

// The loss is linear in x and in w separately, so central differences have no truncation error at
// all; h = 1e-3 leaves only rounding, ~1e-16·Σ|terms|/h ≈ 1e-12 here.
std::vector<double> conv_numeric_gradient(std::vector<double>& wrt, const std::vector<double>& x,
                                          const std::vector<double>& w, const std::vector<double>& g,
                                          const ConvShape& s) {
  const double h = 1e-3;
  std::vector<double> grad(wrt.size());
  for (size_t i = 0; i < wrt.size(); ++i) {
    const double saved = wrt[i];
    wrt[i] = saved + h;
    const double up = conv_loss(x, w, g, s);
    wrt[i] = saved - h;
    const double down = conv_loss(x, w, g, s);
    wrt[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

std::string describe(const ConvShape& s) {
  return std::string(s.transposed ? "ConvTranspose2d" : "Conv2d") + " N=" + std::to_string(s.N) +
         " C=" + std::to_string(s.C) + " " + std::to_string(s.H) + "x" + std::to_string(s.W) +
         " K=" + std::to_string(s.K) + " kernel " + std::to_string(s.R) + "x" + std::to_string(s.S) + " stride " +
         std::to_string(s.stride_h) + "x" + std::to_string(s.stride_w) + " pad " + std::to_string(s.pad_h) + "x" +
         std::to_string(s.pad_w) + " -> " + std::to_string(s.out_h()) + "x" + std::to_string(s.out_w());
}

void gradcheck_conv_layer(const ConvShape& s, unsigned seed) {
  INFO(describe(s));
  s.validate();
  std::mt19937_64 rng(seed);
  std::vector<double> x = conv_random(s.x_size(), rng), w = conv_random(s.w_size(), rng),
                      g = conv_random(s.y_size(), rng);

  // dx is WRITTEN: start from NaN, so any element the backward pass forgets stays NaN and fails.
  std::vector<double> dx(s.x_size(), std::numeric_limits<double>::quiet_NaN());
  // dw ACCUMULATES: start from a known non-zero buffer and compare the increment.
  const std::vector<double> dw0 = conv_random(s.w_size(), rng);
  std::vector<double> dw = dw0;
  if (s.transposed) {
    ds::cpu::conv_transpose2d_backward_data(dx.data(), g.data(), w.data(), s);
    ds::cpu::conv_transpose2d_backward_filter(dw.data(), g.data(), x.data(), s);
  } else {
    ds::cpu::conv2d_backward_data(dx.data(), g.data(), w.data(), s);
    ds::cpu::conv2d_backward_filter(dw.data(), g.data(), x.data(), s);
  }
  std::vector<double> dw_increment(dw.size());
  for (size_t i = 0; i < dw.size(); ++i) dw_increment[i] = dw[i] - dw0[i];

  const std::vector<double> dx_numeric = conv_numeric_gradient(x, x, w, g, s);
  const std::vector<double> dw_numeric = conv_numeric_gradient(w, x, w, g, s);
  for (double v : dx) REQUIRE(std::isfinite(v));
  // 1e-9: the rounding bound above with three orders of margin; any wrong index gives O(1).
  CHECK(max_normalised_error(dx, dx_numeric) < 1e-9);
  CHECK(max_normalised_error(dw_increment, dw_numeric) < 1e-9);

  // Accumulation: a second backward-filter call adds the same increment again.
  if (s.transposed)
    ds::cpu::conv_transpose2d_backward_filter(dw.data(), g.data(), x.data(), s);
  else
    ds::cpu::conv2d_backward_filter(dw.data(), g.data(), x.data(), s);
  double worst = 0;
  for (size_t i = 0; i < dw.size(); ++i) worst = std::max(worst, std::abs(dw[i] - (dw0[i] + 2 * dw_increment[i])));
  CHECK(worst < 1e-12);
}

}  // namespace

TEST_CASE("gradcheck conv2d: dx written and dw accumulated against central differences (double, odd shapes)") {
  using ds::conv2d_shape;
  // The DCGAN stride-2 layer on 5×7 maps (P, Q = 2, 3: padding on every border).
  gradcheck_conv_layer(conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1), 1);
  // Rectangular kernel, stride 1, no padding.
  gradcheck_conv_layer(conv2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0), 2);
  // Floor in the output size: the last input row/columns are never read (their dx must be 0, not NaN).
  gradcheck_conv_layer(conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 0, 0), 3);
  // Different stride and padding per dimension.
  gradcheck_conv_layer(conv2d_shape(2, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0), 4);
  // D's last layer: the kernel covers the whole (non-square) map, output 1×1.
  gradcheck_conv_layer(conv2d_shape(3, 4, 4, 6, 1, 4, 6, 1, 1, 0, 0), 5);
}

TEST_CASE("gradcheck conv_transpose2d: dx written, dw accumulated, against central differences (double)") {
  using ds::conv_transpose2d_shape;
  // The DCGAN stride-2 layer: 5×7 → 10×14.
  gradcheck_conv_layer(conv_transpose2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1), 11);
  // Rectangular kernel, stride 1, no padding: 5×7 → 7×8.
  gradcheck_conv_layer(conv_transpose2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0), 12);
  // G's first layer: 1×1 noise → a non-square 4×6 map.
  gradcheck_conv_layer(conv_transpose2d_shape(3, 5, 1, 1, 2, 4, 6, 1, 1, 0, 0), 13);
  // Different stride and padding per dimension: 5×7 → 9×8.
  gradcheck_conv_layer(conv_transpose2d_shape(2, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0), 14);
  // Stride larger than the kernel: outputs between the stamps get nothing (must be 0).
  gradcheck_conv_layer(conv_transpose2d_shape(2, 2, 3, 4, 3, 2, 2, 3, 3, 0, 0), 15);
}

TEST_CASE("gradcheck conv known answers: cross-correlation (no kernel flip) and the transposed scatter") {
  // PyTorch: F.conv2d(arange(1,10).view(1,1,3,3), [[1,2],[3,4]]) = [[37,47],[67,77]].
  {
    const ConvShape s = ds::conv2d_shape(1, 1, 3, 3, 1, 2, 2, 1, 1, 0, 0);
    const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4};
    std::vector<double> y(4);
    ds::cpu::conv2d_forward(y.data(), x.data(), w.data(), s);
    CHECK(y == std::vector<double>{37, 47, 67, 77});
  }
  // F.conv_transpose2d([[1,2],[3,4]], [[1,10],[100,1000]]): every input pixel stamps x·w at its place.
  {
    const ConvShape s = ds::conv_transpose2d_shape(1, 1, 2, 2, 1, 2, 2, 1, 1, 0, 0);
    const std::vector<double> x = {1, 2, 3, 4}, w = {1, 10, 100, 1000};
    std::vector<double> y(9, -1);
    ds::cpu::conv_transpose2d_forward(y.data(), x.data(), w.data(), s);
    CHECK(y == std::vector<double>{1, 12, 20, 103, 1234, 2040, 300, 3400, 4000});
  }
  // Padding crops the transposed output: pad 1 on the same problem keeps only the centre 1234.
  {
    const ConvShape s = ds::conv_transpose2d_shape(1, 1, 2, 2, 1, 2, 2, 1, 1, 1, 1);
    REQUIRE(s.out_h() == 1);
    const std::vector<double> x = {1, 2, 3, 4}, w = {1, 10, 100, 1000};
    std::vector<double> y(1);
    ds::cpu::conv_transpose2d_forward(y.data(), x.data(), w.data(), s);
    CHECK(y[0] == 1234);
  }
}

TEST_CASE("gradcheck conv transposed = adjoint: ConvTranspose2d forward/backward equal the matching Conv2d's") {
  // The mapping cuDNN's wrappers use: a ConvTranspose2d from C×H×W to K×P×Q is the backward-data of the
  // Conv2d from K×P×Q to C×H×W with the same C×K×R×S weight (C = that Conv2d's out channels).
  std::mt19937_64 rng(99);
  for (const ConvShape& t : {ds::conv_transpose2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1),
                             ds::conv_transpose2d_shape(2, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0),
                             ds::conv_transpose2d_shape(3, 5, 1, 1, 2, 4, 6, 1, 1, 0, 0)}) {
    INFO(describe(t));
    const ConvShape c = ds::conv2d_shape(t.N, t.K, t.out_h(), t.out_w(), t.C, t.R, t.S, t.stride_h, t.stride_w,
                                         t.pad_h, t.pad_w);
    REQUIRE(c.out_h() == t.H);
    REQUIRE(c.out_w() == t.W);
    const std::vector<double> x = conv_random(t.x_size(), rng), w = conv_random(t.w_size(), rng),
                              dy = conv_random(t.y_size(), rng);
    std::vector<double> y_t(t.y_size()), y_c(t.y_size());
    ds::cpu::conv_transpose2d_forward(y_t.data(), x.data(), w.data(), t);
    ds::cpu::conv2d_backward_data(y_c.data(), x.data(), w.data(), c);
    CHECK(max_normalised_error(y_t, y_c) < 1e-14);  // same products, possibly summed in another order

    std::vector<double> dx_t(t.x_size()), dx_c(t.x_size());
    ds::cpu::conv_transpose2d_backward_data(dx_t.data(), dy.data(), w.data(), t);
    ds::cpu::conv2d_forward(dx_c.data(), dy.data(), w.data(), c);
    CHECK(max_normalised_error(dx_t, dx_c) < 1e-14);

    // Weight gradient: Conv2d's backward-filter with x and dy swapped.
    std::vector<double> dw_t(t.w_size(), 0.0), dw_c(t.w_size(), 0.0);
    ds::cpu::conv_transpose2d_backward_filter(dw_t.data(), dy.data(), x.data(), t);
    ds::cpu::conv2d_backward_filter(dw_c.data(), /*dy=*/x.data(), /*x=*/dy.data(), c);
    CHECK(max_normalised_error(dw_t, dw_c) < 1e-14);
  }
}

TEST_CASE("gradcheck conv shape validation names the problem") {
  CHECK_THROWS_AS(ds::conv2d_shape(1, 3, 2, 2, 1, 4, 4, 1, 1, 0, 0).validate(), std::invalid_argument);
  CHECK_THROWS_AS(ds::conv2d_shape(1, 3, 8, 8, 1, 4, 4, 0, 1, 0, 0).validate(), std::invalid_argument);
  CHECK_THROWS_AS(ds::conv_transpose2d_shape(1, 3, 1, 1, 1, 2, 2, 1, 1, 1, 1).validate(), std::invalid_argument);
  CHECK_NOTHROW(ds::conv2d_shape(1, 3, 8, 8, 1, 4, 4, 2, 2, 1, 1).validate());
}
