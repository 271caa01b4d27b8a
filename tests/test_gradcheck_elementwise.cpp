// Gradient checks of the element-wise CPU references (engine/nn/cpu/activations.h, engine/nn/cpu/loss.h)
// against central finite differences in double, plus unit checks of their forward values, of Adam
// (engine/nn/cpu/adam.h) and of the image byte mapping (engine/nn/cpu/image.h).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/adam.h"
#include "engine/nn/cpu/image.h"
#include "engine/nn/cpu/loss.h"
#include "tests/test_util.h"

namespace {

constexpr int64_t kCount = 3 * 5 * 7;  // a batch of 3 5×7 maps: odd, not a multiple of anything

using ds::test::max_normalised_error;
using ds::test::random_doubles;

// Values with |x| in [1e-3, 2] and random signs: never at the ReLU kink, some close to it.
std::vector<double> away_from_zero(size_t n, std::mt19937_64& rng) {
  std::vector<double> v = random_doubles(n, 1e-3, 2.0, rng);
  std::bernoulli_distribution negative(0.5);
  for (size_t k = 0; k < n; ++k) {
    if (k % 10 == 0) v[k] = 1e-3 + 1e-3 * double(k) / double(n);  // a few just above the kink
    if (negative(rng)) v[k] = -v[k];
  }
  return v;
}

// ∂loss/∂x by central differences, one coordinate at a time.
std::vector<double> finite_difference(const std::function<double(const std::vector<double>&)>& loss,
                                      std::vector<double> x, double h) {
  std::vector<double> grad(x.size());
  for (size_t k = 0; k < x.size(); ++k) {
    const double saved = x[k];
    x[k] = saved + h;
    const double up = loss(x);
    x[k] = saved - h;
    const double down = loss(x);
    x[k] = saved;
    grad[k] = (up - down) / (2 * h);
  }
  return grad;
}

// An activation as forward(y, x) and backward(dx, dy, y); the scalar loss is Σ w·y, so dy = w.
struct Activation {
  std::function<void(double*, const double*, int64_t)> forward;
  std::function<void(double*, const double*, const double*, int64_t)> backward;
};

// Returns the max-normalised error of the analytic dx against central differences with step h.
double activation_gradient_error(const Activation& act, const std::vector<double>& x, const std::vector<double>& w,
                                 double h) {
  const int64_t n = static_cast<int64_t>(x.size());
  auto loss = [&](const std::vector<double>& input) {
    std::vector<double> y(input.size());
    act.forward(y.data(), input.data(), n);
    double l = 0;
    for (size_t k = 0; k < y.size(); ++k) l += w[k] * y[k];
    return l;
  };
  std::vector<double> y(x.size()), dx(x.size(), std::numeric_limits<double>::quiet_NaN());
  act.forward(y.data(), x.data(), n);
  act.backward(dx.data(), w.data(), y.data(), n);
  return max_normalised_error(dx, finite_difference(loss, x, h));
}

}  // namespace

// Piecewise-linear activations: central differences are exact as long as x ± h stays on one side of
// the kink (h = 1e-6 < 1e-3 ≤ |x|), so the only error is rounding: ~1e-16·|loss| / h with |loss| ≲ 100,
// i.e. ≲ 1e-8 absolute against gradients of size ~1. 1e-7 leaves margin; a wrong branch or slope is off
// by O(1).
TEST_CASE("gradcheck relu backward against central differences (double, 3*5*7 elements)") {
  std::mt19937_64 rng(11);
  const std::vector<double> x = away_from_zero(kCount, rng), w = random_doubles(kCount, -1.0, 1.0, rng);
  const Activation relu{ds::cpu::relu_forward<double>, ds::cpu::relu_backward<double>};
  CHECK(activation_gradient_error(relu, x, w, 1e-6) <= 1e-7);
}

TEST_CASE("gradcheck leaky_relu backward against central differences (double, slope 0.2, 3*5*7 elements)") {
  std::mt19937_64 rng(12);
  const std::vector<double> x = away_from_zero(kCount, rng), w = random_doubles(kCount, -1.0, 1.0, rng);
  const double slope = 0.2;
  const Activation leaky{
      [&](double* y, const double* in, int64_t n) { ds::cpu::leaky_relu_forward(y, in, slope, n); },
      [&](double* dx, const double* dy, const double* y, int64_t n) { ds::cpu::leaky_relu_backward(dx, dy, y, slope, n); }};
  CHECK(activation_gradient_error(leaky, x, w, 1e-6) <= 1e-7);
}

// Smooth: truncation h²·|tanh'''|/6 ≤ 1e-10·2/6 and rounding ~1e-16·|loss|/h ≲ 1e-9 with h = 1e-5;
// against gradients of size ~1, 1e-7 is two orders of margin, and 1 − y² vs 1 − x² or a missing dy is O(1).
TEST_CASE("gradcheck tanh backward against central differences (double, 3*5*7 elements)") {
  std::mt19937_64 rng(13);
  const std::vector<double> x = random_doubles(kCount, -3.0, 3.0, rng), w = random_doubles(kCount, -1.0, 1.0, rng);
  const Activation tanh_op{ds::cpu::tanh_forward<double>, ds::cpu::tanh_backward<double>};
  CHECK(activation_gradient_error(tanh_op, x, w, 1e-5) <= 1e-7);
}

TEST_CASE("unit activations run in place (forward y == x, backward dx == dy)") {
  std::mt19937_64 rng(14);
  const std::vector<double> x = away_from_zero(kCount, rng), dy = random_doubles(kCount, -1.0, 1.0, rng);
  std::vector<double> y(kCount), dx(kCount);
  ds::cpu::leaky_relu_forward(y.data(), x.data(), 0.2, kCount);
  ds::cpu::leaky_relu_backward(dx.data(), dy.data(), y.data(), 0.2, kCount);
  std::vector<double> inplace = x, grad = dy;
  ds::cpu::leaky_relu_forward(inplace.data(), inplace.data(), 0.2, kCount);
  ds::cpu::leaky_relu_backward(grad.data(), grad.data(), inplace.data(), 0.2, kCount);
  CHECK(inplace == y);
  CHECK(grad == dx);
}

// BCE: smooth in x; h = 1e-5 gives truncation ~h²·|ℓ'''| ≤ 1e-10 and rounding ~1e-16·|loss|/h ≈ 1e-10 on a
// loss of size ~10; gradients are ~1/n ≈ 1e-2 here, so the normalised error is ≲ 1e-7 and 1e-6 has margin.
// A missing 1/n, a sign error or σ(−x) for σ(x) is off by O(1). Checked for both targets and with a
// dloss ≠ 1 (the gradient is linear in it). Logits up to ±8 cover both σ branches and saturation.
TEST_CASE("gradcheck bce_with_logits backward against central differences (double, n = 3*5*7, t = 0 and 1)") {
  std::mt19937_64 rng(15);
  const std::vector<double> logits = random_doubles(kCount, -8.0, 8.0, rng);
  for (double target : {0.0, 1.0}) {
    for (double dloss : {1.0, -0.7}) {
      CAPTURE(target);
      CAPTURE(dloss);
      auto loss = [&](const std::vector<double>& x) {
        double p;
        return dloss * ds::cpu::bce_with_logits_forward(&p, x.data(), target, kCount);
      };
      std::vector<double> dlogits(kCount, std::numeric_limits<double>::quiet_NaN());
      ds::cpu::bce_with_logits_backward(dlogits.data(), logits.data(), target, dloss, kCount);
      CHECK(max_normalised_error(dlogits, finite_difference(loss, logits, 1e-5)) <= 1e-6);
    }
  }
}

// The stable form against the textbook −[t·log σ + (1−t)·log(1−σ)] where the latter is still accurate
// in double (|x| ≤ 8: σ is ≥ 3e-4 away from 0 and 1, so the logs lose ≲ 1e-12 relative); beyond, the
// textbook form overflows/loses everything while the stable one must stay exact: ℓ(±100, t) is known.
TEST_CASE("unit bce_with_logits forward: stable form, mean probability, extreme logits, n = 0 refused") {
  std::mt19937_64 rng(16);
  const std::vector<double> logits = random_doubles(kCount, -8.0, 8.0, rng);
  for (double target : {0.0, 1.0}) {
    double loss_sum = 0, probability_sum = 0;
    for (double x : logits) {
      const double s = 1.0 / (1.0 + std::exp(-x));
      loss_sum += -(target * std::log(s) + (1 - target) * std::log(1 - s));
      probability_sum += s;
    }
    double mean_probability = 0;
    const double loss = ds::cpu::bce_with_logits_forward(&mean_probability, logits.data(), target, kCount);
    CHECK(loss == doctest::Approx(loss_sum / kCount).epsilon(1e-12).scale(0));
    CHECK(mean_probability == doctest::Approx(probability_sum / kCount).epsilon(1e-12).scale(0));
  }
  // ℓ(100, 0) = 100 + log1p(e^-100) and ℓ(−100, 1) = 100 + log1p(e^-100): both 100 in float.
  const float big[2] = {100.0f, -100.0f};
  float p = -1;
  CHECK(ds::cpu::bce_with_logits_forward(&p, big, 0.0f, 1) == 100.0f);
  CHECK(p == 1.0f);
  CHECK(ds::cpu::bce_with_logits_forward(&p, big + 1, 1.0f, 1) == 100.0f);
  // σ(−100) = e^−100/(1 + e^−100) ≈ 3.7e-44, a float denormal that the e/(1+e) branch keeps (1 − σ(100)
  // would give 0); likewise ℓ(100, 1) = log1p(e^−100), tiny but not 0.
  CHECK(p > 0.0f);
  CHECK(p < 1e-43f);
  const float confident_right = ds::cpu::bce_with_logits_forward(&p, big, 1.0f, 1);
  CHECK(confident_right > 0.0f);
  CHECK(confident_right < 1e-43f);
  float d[2];
  ds::cpu::bce_with_logits_backward(d, big, 0.5f, 1.0f, 2);  // (σ − t)/n = ±0.25 exactly
  CHECK(d[0] == 0.25f);
  CHECK(d[1] == -0.25f);
  CHECK_THROWS_AS(ds::cpu::bce_with_logits_forward(&p, big, 1.0f, 0), std::invalid_argument);
}

TEST_CASE("unit count_nonfinite / all_finite") {
  std::vector<float> x(37, 1.5f);
  CHECK(ds::cpu::all_finite(x.data(), 37));
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[36] = -std::numeric_limits<float>::infinity();
  x[20] = std::numeric_limits<float>::max();  // large but finite
  CHECK(ds::cpu::count_nonfinite(x.data(), 37) == 2);
  CHECK_FALSE(ds::cpu::all_finite(x.data(), 37));
}

// PyTorch's formula rearranged is the paper's: p −= lr·m̂/(sqrt(v̂) + eps) with m̂ = m/(1−β1^t),
// v̂ = v/(1−β2^t). In double both agree to ~1e-15 relative per step; 5 steps at 1e-12 leaves margin, while
// a missing bias correction, eps inside the sqrt or a step off by one changes the update by ≥ 1e-4.
TEST_CASE("unit adam_step: the paper's form in double over 5 steps, and the first step is -lr*sign(g)") {
  std::mt19937_64 rng(17);
  const int64_t n = 29;
  const double lr = 2e-4, beta1 = 0.5, beta2 = 0.999, eps = 1e-8;
  std::vector<double> p = random_doubles(n, -1, 1, rng), m(n, 0.0), v(n, 0.0);
  std::vector<double> p_paper = p, m_paper(n, 0.0), v_paper(n, 0.0);
  for (int64_t step = 1; step <= 5; ++step) {
    const std::vector<double> g = random_doubles(n, -1e-2, 1e-2, rng);
    const std::vector<double> p_before = p;
    ds::cpu::adam_step(p.data(), m.data(), v.data(), g.data(), n, lr, beta1, beta2, eps, step);
    for (int64_t i = 0; i < n; ++i) {
      m_paper[i] = beta1 * m_paper[i] + (1 - beta1) * g[i];
      v_paper[i] = beta2 * v_paper[i] + (1 - beta2) * g[i] * g[i];
      const double m_hat = m_paper[i] / (1 - std::pow(beta1, double(step)));
      const double v_hat = v_paper[i] / (1 - std::pow(beta2, double(step)));
      p_paper[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
      CHECK(p[i] == doctest::Approx(p_paper[i]).epsilon(1e-12).scale(0));
      CHECK(m[i] == doctest::Approx(m_paper[i]).epsilon(1e-12).scale(0));
      CHECK(v[i] == doctest::Approx(v_paper[i]).epsilon(1e-12).scale(0));
      // Step 1: m̂ = g and sqrt(v̂) = |g|, so the update is −lr·g/(|g| + eps) ≈ −lr·sign(g).
      if (step == 1) CHECK(p[i] - p_before[i] == doctest::Approx(-lr * g[i] / (std::abs(g[i]) + eps)).epsilon(1e-9).scale(0));
    }
  }
}

TEST_CASE("unit image byte mapping: 0 -> -1, 255 -> 1, every byte survives the round trip, gather by index") {
  CHECK(ds::cpu::u8_to_unit_range<float>(0) == -1.0f);
  CHECK(ds::cpu::u8_to_unit_range<float>(255) == 1.0f);
  std::vector<uint8_t> all(256);
  for (int b = 0; b < 256; ++b) all[b] = static_cast<uint8_t>(b);
  std::vector<float> values(256);
  const int32_t row0 = 0;
  ds::cpu::images_u8_to_float(values.data(), all.data(), &row0, 1, 256);
  std::vector<uint8_t> back(256);
  ds::cpu::float_to_u8(back.data(), values.data(), 256);
  CHECK(back == all);
  // Clamping, rounding half up, NaN.
  const float odd[5] = {-3.0f, 7.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f, 1.0f / 255.0f};
  uint8_t bytes[5];
  ds::cpu::float_to_u8(bytes, odd, 5);
  CHECK(bytes[0] == 0);
  CHECK(bytes[1] == 255);
  CHECK(bytes[2] == 0);
  CHECK(bytes[3] == 128);  // 127.5 rounds up
  CHECK(bytes[4] == 128);  // (1 + 1/255)·127.5 = 128
  // Gather: rows picked by index, in the order of the indices.
  const uint8_t images[3 * 2] = {0, 10, 20, 30, 40, 50};  // 3 images of 2 bytes
  const int32_t indices[4] = {2, 0, 2, 1};
  float out[8];
  ds::cpu::images_u8_to_float(out, images, indices, 4, 2);
  const uint8_t expected[8] = {40, 50, 0, 10, 40, 50, 20, 30};
  for (int k = 0; k < 8; ++k) CHECK(out[k] == ds::cpu::u8_to_unit_range<float>(expected[k]));
}
