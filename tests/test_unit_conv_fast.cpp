// The fast CPU convolution (engine/nn/conv_cpu_fast.h: im2col + OpenBLAS, float) against the reference
// (engine/nn/cpu/conv.h) run in double on the same float inputs: all six ops, odd shapes, several ways of
// cutting the batch into chunks, and DCGAN-sized layers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/nn/conv_cpu_fast.h"
#include "engine/nn/conv_shape.h"
#include "engine/nn/cpu/conv.h"
#include "tests/test_util.h"

namespace {

using ds::ConvShape;

// Inputs uniform in [-1, 1).
std::vector<float> fast_random(size_t n, std::mt19937_64& rng) { return ds::test::random_floats(n, -1.0f, 1.0f, rng); }
std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
std::vector<double> magnitude(const std::vector<float>& v) {
  std::vector<double> m(v.size());
  for (size_t i = 0; i < v.size(); ++i) m[i] = std::abs(double(v[i]));
  return m;
}

// Error bound: every output is a sum of at most `terms` products of float inputs (plus the prior dw for
// the accumulating op). Whatever the order of summation (GEMM blocking, col2im, chunks), the computed
// float value obeys |fl − exact| ≤ γ_n · Σ|products| with γ_n = n·u/(1 − n·u), u = 2⁻²⁴ and
// n = terms + 1 roundings per path (Higham, Accuracy and Stability of Numerical Algorithms, §3.1, eq. 3.5 for dot
// products). Σ|products| is the reference run on |inputs|; the double reference's own error is ~1e-16
// relative and negligible. A wrong index, a missing or a doubled term breaks it by orders of magnitude
// (a term is typically ~Σ|products|/terms, the bound is ~Σ|products|·terms·6e-8).
void check_within_float_bound(const std::vector<float>& fast, const std::vector<double>& exact,
                              const std::vector<double>& sum_of_magnitudes, size_t terms, const char* what) {
  const double u = std::ldexp(1.0, -24);
  const double n = double(terms + 1);
  const double gamma = n * u / (1 - n * u);
  double worst_ratio = 0;
  size_t bad = 0;
  for (size_t i = 0; i < fast.size(); ++i) {
    const double err = std::abs(double(fast[i]) - exact[i]);
    const double bound = gamma * sum_of_magnitudes[i];
    if (!(err <= bound)) ++bad;  // NaN (an unwritten output) counts as bad
    if (bound > 0) worst_ratio = std::max(worst_ratio, err / bound);
  }
  INFO(what << ": worst error / bound = " << worst_ratio);
  CHECK(bad == 0);
}

std::string fast_describe(const ConvShape& s) {
  return std::string(s.transposed ? "ConvTranspose2d" : "Conv2d") + " N=" + std::to_string(s.N) +
         " C=" + std::to_string(s.C) + " " + std::to_string(s.H) + "x" + std::to_string(s.W) +
         " K=" + std::to_string(s.K) + " kernel " + std::to_string(s.R) + "x" + std::to_string(s.S) + " stride " +
         std::to_string(s.stride_h) + "x" + std::to_string(s.stride_w) + " pad " + std::to_string(s.pad_h) + "x" +
         std::to_string(s.pad_w);
}

void check_fast_layer(const ConvShape& s, unsigned seed) {
  INFO(fast_describe(s));
  s.validate();
  std::mt19937_64 rng(seed);
  const std::vector<float> x = fast_random(s.x_size(), rng), w = fast_random(s.w_size(), rng),
                           dy = fast_random(s.y_size(), rng), dw0 = fast_random(s.w_size(), rng);
  const std::vector<double> xd = widen(x), wd = widen(w), dyd = widen(dy), dw0d = widen(dw0);
  const std::vector<double> xm = magnitude(x), wm = magnitude(w), dym = magnitude(dy), dw0m = magnitude(dw0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const size_t P = size_t(s.out_h()), Q = size_t(s.out_w());

  std::vector<float> y(s.y_size(), nan), dx(s.x_size(), nan), dw = dw0;
  std::vector<double> y_ref(s.y_size()), y_mag(s.y_size()), dx_ref(s.x_size()), dx_mag(s.x_size());
  std::vector<double> dw_ref = dw0d, dw_mag = dw0m;
  size_t forward_terms, data_terms, filter_terms;
  if (!s.transposed) {
    ds::cpu_fast::conv2d_forward(y.data(), x.data(), w.data(), s);
    ds::cpu_fast::conv2d_backward_data(dx.data(), dy.data(), w.data(), s);
    ds::cpu_fast::conv2d_backward_filter(dw.data(), dy.data(), x.data(), s);
    ds::cpu::conv2d_forward(y_ref.data(), xd.data(), wd.data(), s);
    ds::cpu::conv2d_forward(y_mag.data(), xm.data(), wm.data(), s);
    ds::cpu::conv2d_backward_data(dx_ref.data(), dyd.data(), wd.data(), s);
    ds::cpu::conv2d_backward_data(dx_mag.data(), dym.data(), wm.data(), s);
    ds::cpu::conv2d_backward_filter(dw_ref.data(), dyd.data(), xd.data(), s);
    ds::cpu::conv2d_backward_filter(dw_mag.data(), dym.data(), xm.data(), s);
    forward_terms = size_t(s.C) * s.R * s.S;
    data_terms = size_t(s.K) * s.R * s.S;
    filter_terms = size_t(s.N) * P * Q + 1;
  } else {
    ds::cpu_fast::conv_transpose2d_forward(y.data(), x.data(), w.data(), s);
    ds::cpu_fast::conv_transpose2d_backward_data(dx.data(), dy.data(), w.data(), s);
    ds::cpu_fast::conv_transpose2d_backward_filter(dw.data(), dy.data(), x.data(), s);
    ds::cpu::conv_transpose2d_forward(y_ref.data(), xd.data(), wd.data(), s);
    ds::cpu::conv_transpose2d_forward(y_mag.data(), xm.data(), wm.data(), s);
    ds::cpu::conv_transpose2d_backward_data(dx_ref.data(), dyd.data(), wd.data(), s);
    ds::cpu::conv_transpose2d_backward_data(dx_mag.data(), dym.data(), wm.data(), s);
    ds::cpu::conv_transpose2d_backward_filter(dw_ref.data(), dyd.data(), xd.data(), s);
    ds::cpu::conv_transpose2d_backward_filter(dw_mag.data(), dym.data(), xm.data(), s);
    forward_terms = size_t(s.C) * s.R * s.S;
    data_terms = size_t(s.K) * s.R * s.S;
    filter_terms = size_t(s.N) * s.H * s.W + 1;
  }
  check_within_float_bound(y, y_ref, y_mag, forward_terms, "forward");
  check_within_float_bound(dx, dx_ref, dx_mag, data_terms, "backward_data (written)");
  check_within_float_bound(dw, dw_ref, dw_mag, filter_terms, "backward_filter (accumulated onto dw0)");
}

// Runs the check with the whole batch in one chunk, one image per chunk (the path that skips the
// matrix copies), and two images per chunk (N = 3 leaves a remainder chunk of one).
void check_fast_layer_all_chunkings(const ConvShape& s, unsigned seed) {
  // Per-image floats of a chunk, as conv_cpu_fast.cpp counts them: (columns rows + matrix rows)·positions.
  const size_t per_image = s.transposed ? (size_t(s.K) * s.R * s.S + s.C) * s.H * s.W
                                        : (size_t(s.C) * s.R * s.S + s.K) * s.out_h() * s.out_w();
  for (size_t budget : {size_t(1) << 30, size_t(1), 2 * per_image}) {
    const size_t previous = ds::cpu_fast::set_chunk_budget_floats(budget);
    INFO("chunk budget " << budget << " floats");
    check_fast_layer(s, seed);
    ds::cpu_fast::set_chunk_budget_floats(previous);
  }
}

}  // namespace

TEST_CASE("unit conv fast conv2d: im2col + sgemm matches the reference within the float bound (odd shapes)") {
  using ds::conv2d_shape;
  check_fast_layer_all_chunkings(conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1), 21);
  check_fast_layer_all_chunkings(conv2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0), 22);
  check_fast_layer_all_chunkings(conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 0, 0), 23);
  check_fast_layer_all_chunkings(conv2d_shape(3, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0), 24);
  check_fast_layer_all_chunkings(conv2d_shape(3, 4, 4, 6, 1, 4, 6, 1, 1, 0, 0), 25);
}

TEST_CASE("unit conv fast conv_transpose2d: col2im + sgemm matches the reference within the float bound (odd shapes)") {
  using ds::conv_transpose2d_shape;
  check_fast_layer_all_chunkings(conv_transpose2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1), 31);
  check_fast_layer_all_chunkings(conv_transpose2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0), 32);
  check_fast_layer_all_chunkings(conv_transpose2d_shape(3, 5, 1, 1, 2, 4, 6, 1, 1, 0, 0), 33);
  check_fast_layer_all_chunkings(conv_transpose2d_shape(3, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0), 34);
  check_fast_layer_all_chunkings(conv_transpose2d_shape(3, 2, 3, 4, 3, 2, 2, 3, 3, 0, 0), 35);
}

TEST_CASE("unit conv fast stride-2 column paths: odd widths, pad 0 to 2, stride 2 only along the width") {
  // The stride-2 im2col gather and the split-row col2im (conv2d backward-data, conv_transpose2d forward):
  // odd and even image widths, taps whose first column is left of the image by 0, 1 and 2 (both
  // parities, negative shifts), kernels wider than the stride, and stride (1, 2).
  using ds::conv2d_shape;
  using ds::conv_transpose2d_shape;
  check_fast_layer_all_chunkings(conv_transpose2d_shape(3, 3, 4, 5, 2, 3, 3, 2, 2, 1, 1), 51);  // y 7×9
  check_fast_layer_all_chunkings(conv_transpose2d_shape(2, 3, 4, 5, 2, 5, 5, 2, 2, 2, 2), 52);  // y 7×9
  check_fast_layer_all_chunkings(conv_transpose2d_shape(3, 2, 3, 3, 3, 4, 4, 2, 2, 1, 1), 53);  // y 6×6
  check_fast_layer_all_chunkings(conv2d_shape(2, 2, 6, 9, 3, 5, 5, 2, 2, 2, 2), 54);
  check_fast_layer_all_chunkings(conv2d_shape(3, 2, 5, 8, 3, 3, 4, 1, 2, 1, 1), 55);
  check_fast_layer_all_chunkings(conv2d_shape(3, 2, 7, 7, 3, 4, 4, 2, 2, 1, 1), 56);
}

TEST_CASE("unit conv fast DCGAN-sized layers (ngf = ndf = 64 channel counts, small batch for the reference's sake)") {
  // G's first layer (nz = 100 → 8·ngf, 1×1 → 4×4) and a middle layer (2·ngf → ngf, 16×16 → 32×32);
  // D's second layer (ndf → 2·ndf, 32×32 → 16×16) and last layer (8·ndf → 1, 4×4 → 1×1).
  check_fast_layer(ds::conv_transpose2d_shape(8, 100, 1, 1, 512, 4, 4, 1, 1, 0, 0), 41);
  check_fast_layer(ds::conv_transpose2d_shape(4, 128, 16, 16, 64, 4, 4, 2, 2, 1, 1), 42);
  check_fast_layer(ds::conv2d_shape(4, 64, 32, 32, 128, 4, 4, 2, 2, 1, 1), 43);
  check_fast_layer(ds::conv2d_shape(8, 512, 4, 4, 1, 4, 4, 1, 1, 0, 0), 44);
  // The non-square generator start (128×512 images): 1×1 → 4×16.
  check_fast_layer(ds::conv_transpose2d_shape(4, 100, 1, 1, 64, 4, 16, 1, 1, 0, 0), 45);
}

TEST_CASE("unit conv fast GEMM cut into pieces along N and along M, with an uneven last piece") {
  // parallel_sgemm cuts a GEMM along its longer side into up to 8 pieces (a power of two) of at least 256
  // rows or columns, on multiples of 16, the last piece taking the rest. Each shape below makes some of
  // the three products cut unevenly; the budgets of check_fast_layer_all_chunkings vary the columns.
  using ds::conv2d_shape;
  using ds::conv_transpose2d_shape;
  // Conv2d with 33×41 = 1353 positions per image: forward (M = K = 5) and backward-data (M = C·R·S = 27)
  // cut along N, for one image into 352, 352, 352, 297 columns (other cuts for whole-batch groups).
  check_fast_layer_all_chunkings(conv2d_shape(2, 3, 35, 43, 5, 3, 3, 1, 1, 0, 0), 61);
  // ConvTranspose2d 2×3 → 4×6, C = 530, K = 37: forward has M = K·R·S = 592 rows against N = 6 per image
  // (row pieces 304, 288); backward-data has M = C = 530 (row pieces 272, 258).
  check_fast_layer_all_chunkings(conv_transpose2d_shape(3, 530, 2, 3, 37, 4, 4, 2, 2, 1, 1), 62);
  // Conv2d with K = 600 on 4×4 outputs: forward and backward-filter (beta 1 onto dw) have M = 600 rows
  // against N ≤ 32 (row pieces 304, 296).
  check_fast_layer_all_chunkings(conv2d_shape(2, 2, 9, 9, 600, 4, 4, 2, 2, 1, 1), 63);
}
