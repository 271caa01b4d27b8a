// The fast CPU training batch norm + activation forward (engine/nn/batchnorm_cpu_fast.h) against the
// reference (engine/nn/cpu/batchnorm.h followed by the activation, as the unfused CPU path ran them), for
// ReLU, LeakyReLU and none, on odd plane sizes (the four-way partial sums' remainders), one value per
// plane, and a size above the parallel threshold; inputs with a large mean (|mean| ≫ std).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/nn/batchnorm_cpu_fast.h"
#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/batchnorm.h"
#include "tests/test_util.h"

namespace {

using ds::BnActivation;

void reference_forward(std::vector<float>& y, std::vector<float>& mean, std::vector<float>& invstd,
                       std::vector<float>& rmean, std::vector<float>& rvar, const std::vector<float>& x,
                       const std::vector<float>& gamma, const std::vector<float>& beta, int64_t N, int64_t C,
                       int64_t HW, BnActivation act, float slope) {
  ds::cpu::batchnorm_forward_train(y.data(), mean.data(), invstd.data(), rmean.data(), rvar.data(), x.data(),
                                   gamma.data(), beta.data(), N, C, HW, 0.1, 1e-5);
  if (act == BnActivation::ReLU) ds::cpu::relu_forward(y.data(), y.data(), int64_t(y.size()));
  if (act == BnActivation::LeakyReLU) ds::cpu::leaky_relu_forward(y.data(), y.data(), slope, int64_t(y.size()));
}

void check_case(int64_t N, int64_t C, int64_t HW, BnActivation act) {
  INFO("N=" << N << " C=" << C << " HW=" << HW << " act=" << int(act));
  const float slope = 0.2f;
  const double u = std::ldexp(1.0, -24);
  std::mt19937_64 rng(uint64_t(N * 1000003 + C * 1009 + HW * 7 + int(act)));
  const size_t n = size_t(N * C * HW);
  std::vector<float> x = ds::test::random_floats(n, 2.0f, 4.0f, rng);  // mean ≈ 3 ≫ std ≈ 0.6
  std::vector<float> gamma = ds::test::random_floats(size_t(C), 0.5f, 1.5f, rng);
  std::vector<float> beta = ds::test::random_floats(size_t(C), -0.5f, 0.5f, rng);
  
  // Forward.
  std::vector<float> y_ref(n), m_ref(C), s_ref(C), rm_ref(C, 0.f), rv_ref(C, 1.f);
  std::vector<float> y_fast(n), m_fast(C), s_fast(C), rm_fast(C, 0.f), rv_fast(C, 1.f);
  reference_forward(y_ref, m_ref, s_ref, rm_ref, rv_ref, x, gamma, beta, N, C, HW, act, slope);
  ds::cpu_fast::batchnorm_activation_forward_train(y_fast.data(), m_fast.data(), s_fast.data(), rm_fast.data(),
                                                   rv_fast.data(), x.data(), gamma.data(), beta.data(), N, C, HW, 0.1,
                                                   1e-5, act, slope);
  // The statistics: the same double sums in another order (relative difference ≲ M·2⁻⁵³ ≈ 1e-12 here), so
  // after rounding to float they are equal or one float rounding apart: within 2u relative.
  size_t bad = 0;
  for (int64_t c = 0; c < C; ++c) {
    if (!(std::abs(double(m_fast[c]) - m_ref[c]) <= 2 * u * std::abs(double(m_ref[c])))) ++bad;
    if (!(std::abs(double(s_fast[c]) - s_ref[c]) <= 2 * u * std::abs(double(s_ref[c])))) ++bad;
    if (!(std::abs(double(rm_fast[c]) - rm_ref[c]) <= 2 * u * std::abs(double(rm_ref[c])))) ++bad;
    if (!(std::abs(double(rv_fast[c]) - rv_ref[c]) <= 2 * u * std::abs(double(rv_ref[c])))) ++bad;
  }
  CHECK(bad == 0);
  // y = (x − m)·s·γ + β in float: with m and s each perturbed by ≤ 2u relative and four float roundings,
  // |Δy| ≤ 8u·((|x| + |m|)·s·|γ| + |β|). A wrong statistic (biased/unbiased, a missing term) is off by
  // far more (≥ 1/M relative of the whole value).
  bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t c = int64_t(i / size_t(HW)) % C;
    const double bound =
        8 * u * ((std::abs(double(x[i])) + std::abs(double(m_ref[c]))) * s_ref[c] * std::abs(gamma[c]) + std::abs(beta[c]));
    if (!(std::abs(double(y_fast[i]) - y_ref[i]) <= bound)) ++bad;
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("unit batchnorm fast training forward with the activation matches the reference") {
  for (BnActivation act : {BnActivation::None, BnActivation::ReLU, BnActivation::LeakyReLU}) {
    check_case(3, 5, 17, act);   // remainders of the four-way sums
    check_case(2, 3, 1, act);    // one value per plane
    check_case(4, 7, 6, act);
    check_case(5, 33, 256, act);  // above the parallel threshold
  }
}
