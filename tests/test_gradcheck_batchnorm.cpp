// Gradient checks of the BatchNorm2d CPU reference (engine/nn/cpu/batchnorm.h) against central finite
// differences in double, plus its accumulation contract and PyTorch's running-statistics update.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "engine/nn/cpu/batchnorm.h"
#include "tests/test_util.h"

namespace {

using ds::test::max_normalised_error;
using ds::test::random_doubles;

// Shapes: x N×C×HW; gamma, beta C.
struct BatchNormProblem {
  int64_t N, C, HW;
  std::vector<double> x, gamma, beta, output_weight;  // loss = Σ output_weight·y

  double loss() const {
    std::vector<double> y(x.size()), mean(C), invstd(C), running_mean(C, 0.0), running_var(C, 1.0);
    ds::cpu::batchnorm_forward_train(y.data(), mean.data(), invstd.data(), running_mean.data(), running_var.data(),
                                     x.data(), gamma.data(), beta.data(), N, C, HW, 0.1, 1e-5);
    double l = 0;
    for (size_t k = 0; k < y.size(); ++k) l += output_weight[k] * y[k];
    return l;
  }
};

std::vector<double> finite_difference(BatchNormProblem& p, std::vector<double>& wrt) {
  // h = 1e-5: truncation error ~h²·|f'''| ≈ 1e-10 and rounding ~1e-16·|loss|/h ≈ 1e-10 on this problem.
  const double h = 1e-5;
  std::vector<double> grad(wrt.size());
  for (size_t k = 0; k < wrt.size(); ++k) {
    const double saved = wrt[k];
    wrt[k] = saved + h;
    const double up = p.loss();
    wrt[k] = saved - h;
    const double down = p.loss();
    wrt[k] = saved;
    grad[k] = (up - down) / (2 * h);
  }
  return grad;
}

}  // namespace

TEST_CASE("gradcheck batchnorm backward: dx, dgamma, dbeta against central differences (double, N=3 C=3 5x7)") {
  std::mt19937_64 rng(20240611);
  BatchNormProblem p{3, 3, 5 * 7, {}, {}, {}, {}};
  const size_t count = static_cast<size_t>(p.N * p.C * p.HW);
  p.x = random_doubles(count, -2.0, 3.0, rng);  // off-centre so the mean term matters
  p.gamma = random_doubles(p.C, 0.5, 1.5, rng);
  p.beta = random_doubles(p.C, -0.5, 0.5, rng);
  p.output_weight = random_doubles(count, -1.0, 1.0, rng);

  // Analytic: dy = output_weight; dgamma/dbeta start from zero (they accumulate).
  std::vector<double> y(count), mean(p.C), invstd(p.C), running_mean(p.C, 0.0), running_var(p.C, 1.0);
  ds::cpu::batchnorm_forward_train(y.data(), mean.data(), invstd.data(), running_mean.data(), running_var.data(),
                                   p.x.data(), p.gamma.data(), p.beta.data(), p.N, p.C, p.HW, 0.1, 1e-5);
  std::vector<double> dx(count, std::numeric_limits<double>::quiet_NaN()), dgamma(p.C, 0.0), dbeta(p.C, 0.0);
  ds::cpu::batchnorm_backward(dx.data(), dgamma.data(), dbeta.data(), p.output_weight.data(), p.x.data(),
                              p.gamma.data(), mean.data(), invstd.data(), p.N, p.C, p.HW);

  // 1e-7: the finite differences are good to ~1e-9 relative (see h); a wrong term (e.g. a dropped
  // mean or projection term in dx) is an O(1) relative error.
  const double tolerance = 1e-7;
  CHECK(max_normalised_error(dx, finite_difference(p, p.x)) < tolerance);
  CHECK(max_normalised_error(dgamma, finite_difference(p, p.gamma)) < tolerance);
  CHECK(max_normalised_error(dbeta, finite_difference(p, p.beta)) < tolerance);
}

TEST_CASE("gradcheck batchnorm backward: dgamma/dbeta accumulate, dx is written") {
  std::mt19937_64 rng(7);
  const int64_t N = 2, C = 3, HW = 6;
  const size_t count = N * C * HW;
  std::vector<double> x = random_doubles(count, -1, 2, rng), dy = random_doubles(count, -1, 1, rng);
  std::vector<double> gamma = random_doubles(C, 0.5, 1.5, rng), beta = random_doubles(C, -1, 1, rng);
  std::vector<double> y(count), mean(C), invstd(C), running_mean(C, 0.0), running_var(C, 1.0);
  ds::cpu::batchnorm_forward_train(y.data(), mean.data(), invstd.data(), running_mean.data(), running_var.data(),
                                   x.data(), gamma.data(), beta.data(), N, C, HW, 0.1, 1e-5);

  std::vector<double> dx_first(count), dgamma(C, 0.0), dbeta(C, 0.0);
  ds::cpu::batchnorm_backward(dx_first.data(), dgamma.data(), dbeta.data(), dy.data(), x.data(), gamma.data(),
                              mean.data(), invstd.data(), N, C, HW);
  const std::vector<double> dgamma_once = dgamma, dbeta_once = dbeta;
  std::vector<double> dx_second(count, 12345.0);  // garbage that a "+=" would keep
  ds::cpu::batchnorm_backward(dx_second.data(), dgamma.data(), dbeta.data(), dy.data(), x.data(), gamma.data(),
                              mean.data(), invstd.data(), N, C, HW);
  for (int64_t c = 0; c < C; ++c) {
    CHECK(dgamma_once[c] != 0.0);
    CHECK(dbeta_once[c] != 0.0);
    CHECK(dgamma[c] == doctest::Approx(2 * dgamma_once[c]).epsilon(1e-14));
    CHECK(dbeta[c] == doctest::Approx(2 * dbeta_once[c]).epsilon(1e-14));
  }
  for (size_t k = 0; k < count; ++k) CHECK(dx_second[k] == dx_first[k]);
}

// Hand-computed: N=2, C=2, H·W=2 (x[n][c][i]); channel 0 holds {1,2,3,6}, channel 1 holds {10,10,10,14}.
//   channel 0: mean 3, Σ(x−μ)² = 4+1+0+9 = 14, biased var 3.5, unbiased 14/3
//   channel 1: mean 11, Σ(x−μ)² = 1+1+1+9 = 12, biased var 3, unbiased 4
// From PyTorch's initial running stats (mean 0, var 1) with momentum 0.1:
//   running_mean = 0.9·0 + 0.1·mean = {0.3, 1.1}
//   running_var  = 0.9·1 + 0.1·unbiased = {0.9 + 14/30, 1.3}   (the biased variance would give 1.25 / 1.2)
TEST_CASE_TEMPLATE("gradcheck batchnorm forward: running statistics follow PyTorch (unbiased variance)", T, float,
                   double) {
  const std::vector<T> x = {1, 2, 10, 10, 3, 6, 10, 14};
  const std::vector<T> gamma = {2, 1}, beta = {0.5, 0};
  std::vector<T> y(8), mean(2), invstd(2), running_mean = {0, 0}, running_var = {1, 1};
  ds::cpu::batchnorm_forward_train(y.data(), mean.data(), invstd.data(), running_mean.data(), running_var.data(),
                                   x.data(), gamma.data(), beta.data(), int64_t{2}, int64_t{2}, int64_t{2}, 0.1, 1e-5);
  // float: each value is one or two roundings of an exact expression, so 1e-6 relative suffices.
  const double eps = std::is_same_v<T, float> ? 1e-6 : 1e-14;
  CHECK(double(mean[0]) == doctest::Approx(3.0).epsilon(eps));
  CHECK(double(mean[1]) == doctest::Approx(11.0).epsilon(eps));
  CHECK(double(invstd[0]) == doctest::Approx(1.0 / std::sqrt(3.5 + 1e-5)).epsilon(eps));
  CHECK(double(invstd[1]) == doctest::Approx(1.0 / std::sqrt(3.0 + 1e-5)).epsilon(eps));
  CHECK(double(running_mean[0]) == doctest::Approx(0.3).epsilon(eps));
  CHECK(double(running_mean[1]) == doctest::Approx(1.1).epsilon(eps));
  CHECK(double(running_var[0]) == doctest::Approx(0.9 + 14.0 / 30.0).epsilon(eps));
  CHECK(double(running_var[1]) == doctest::Approx(1.3).epsilon(eps));
  // y = γ·(x−μ)/sqrt(var_biased+eps) + β; x[n=1][c=0][i=1] = 6 and x[n=1][c=1][i=1] = 14.
  CHECK(double(y[5]) == doctest::Approx(2.0 * 3.0 / std::sqrt(3.5 + 1e-5) + 0.5).epsilon(eps));
  CHECK(double(y[7]) == doctest::Approx(3.0 / std::sqrt(3.0 + 1e-5)).epsilon(eps));

  // A second step moves them again from the updated values (exponential average, not a reset).
  ds::cpu::batchnorm_forward_train(y.data(), mean.data(), invstd.data(), running_mean.data(), running_var.data(),
                                   x.data(), gamma.data(), beta.data(), int64_t{2}, int64_t{2}, int64_t{2}, 0.1, 1e-5);
  CHECK(double(running_mean[0]) == doctest::Approx(0.9 * 0.3 + 0.3).epsilon(eps));
  CHECK(double(running_var[1]) == doctest::Approx(0.9 * 1.3 + 0.4).epsilon(eps));

  // Eval mode uses the running statistics: y = γ·(x − rm)/sqrt(rv + eps) + β.
  std::vector<T> y_eval(8);
  const std::vector<T> rm = {1, -2}, rv = {4, 0.25};
  ds::cpu::batchnorm_forward_eval(y_eval.data(), x.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                                  int64_t{2}, int64_t{2}, int64_t{2}, 1e-5);
  CHECK(double(y_eval[5]) == doctest::Approx(2.0 * (6.0 - 1.0) / std::sqrt(4.0 + 1e-5) + 0.5).epsilon(eps));
  CHECK(double(y_eval[7]) == doctest::Approx((14.0 + 2.0) / std::sqrt(0.25 + 1e-5)).epsilon(eps));
}

TEST_CASE("gradcheck batchnorm forward: one value per channel in training is refused, as in PyTorch") {
  std::vector<double> x = {1, 2}, y(2), mean(2), invstd(2), rm(2, 0.0), rv(2, 1.0), gamma(2, 1.0), beta(2, 0.0);
  CHECK_THROWS_AS(ds::cpu::batchnorm_forward_train(y.data(), mean.data(), invstd.data(), rm.data(), rv.data(), x.data(),
                                                   gamma.data(), beta.data(), int64_t{1}, int64_t{2}, int64_t{1}, 0.1,
                                                   1e-5),
                  std::invalid_argument);
}
