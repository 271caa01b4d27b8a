// BatchNorm2d CUDA kernels (ds::kcuda, kernels/batchnorm.cu) on the GPU against the CPU reference
// (engine/nn/cpu/batchnorm.h) on awkward sizes, with every output poisoned with NaN first.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/nn/cpu/batchnorm.h"
#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"
#include "kernels/batchnorm.h"
#include "tests/test_util.h"

namespace {

using ds::test::kNaN;
using ds::test::poisoned;
using ds::test::random_floats;

// max|a−b| / max(1, max|b|); NaN anywhere (an unwritten poisoned element) counts as infinite error.
double normalised_error(const std::vector<float>& got, const std::vector<float>& want) {
  return ds::test::normalised_error(got, want, 1.0);
}

// The kernels and the reference compute the same double sums in a different order, so a per-channel
// mean/invstd/Σ can round to a neighbouring float, and the element-wise float expressions then differ
// by a few ulp of the output's scale (FLT_EPSILON ≈ 1.2e-7); nvcc may also fuse multiply-adds. 1e-6 is ~8 ulp; a wrong index, a missed
// element or a biased/unbiased mix-up is off by far more.
constexpr double kTolerance = 1e-6;

using ds::DeviceBuffer;

using ds::test::download;

struct Size {
  int64_t N, C, HW;
};

void check_batchnorm_against_reference(Size s, uint32_t seed) {
  CAPTURE(s.N);
  CAPTURE(s.C);
  CAPTURE(s.HW);
  std::mt19937 rng(seed);
  const size_t count = static_cast<size_t>(s.N * s.C * s.HW), C = static_cast<size_t>(s.C);
  const std::vector<float> x = random_floats(count, -1.0f, 3.0f, rng);
  const std::vector<float> dy = random_floats(count, -1.0f, 1.0f, rng);
  const std::vector<float> gamma = random_floats(C, 0.5f, 1.5f, rng), beta = random_floats(C, -0.5f, 0.5f, rng);
  const std::vector<float> running_mean0 = random_floats(C, -0.2f, 0.2f, rng);
  const std::vector<float> running_var0 = random_floats(C, 0.5f, 2.0f, rng);
  const std::vector<float> dgamma0 = random_floats(C, -1.0f, 1.0f, rng), dbeta0 = random_floats(C, -1.0f, 1.0f, rng);
  const double momentum = 0.1, eps = 1e-5;
  cudaStream_t stream = ds::CudaContext::get().stream();
  auto d_x = DeviceBuffer<float>::from_host(x), d_gamma = DeviceBuffer<float>::from_host(gamma);
  auto d_beta = DeviceBuffer<float>::from_host(beta);
  auto d_rm0 = DeviceBuffer<float>::from_host(running_mean0), d_rv0 = DeviceBuffer<float>::from_host(running_var0);
  DeviceBuffer<double> d_ws(ds::batchnorm_workspace_bytes(s.C) / sizeof(double));  // the split reduction's partials

  SUBCASE("forward eval") {
    std::vector<float> y_ref(count), y(count, kNaN);
    ds::cpu::batchnorm_forward_eval(y_ref.data(), x.data(), gamma.data(), beta.data(), running_mean0.data(),
                                    running_var0.data(), s.N, s.C, s.HW, eps);
    auto d_y = DeviceBuffer<float>::from_host(y);
    ds::kcuda::batchnorm_forward_eval(d_y.get(), d_x.get(), d_gamma.get(), d_beta.get(), d_rm0.get(), d_rv0.get(),
                                      s.N, s.C, s.HW, eps, stream);
    CHECK(normalised_error(download(d_y), y_ref) <= kTolerance);
  }

  if (s.N * s.HW < 2) {
    // One value per channel: training is refused by both, as by PyTorch; the backward is still
    // defined (x̂ = 0, so dx = 0) and is checked below from hand-made statistics.
    std::vector<float> y(count), mean(C), invstd(C), rm = running_mean0, rv = running_var0;
    DeviceBuffer<float> d_y(count), d_mean(C), d_invstd(C), d_rm(C), d_rv(C);
    CHECK_THROWS_AS(ds::kcuda::batchnorm_forward_train(d_y.get(), d_mean.get(), d_invstd.get(), d_rm.get(),
                                                       d_rv.get(), d_ws.get(), d_x.get(), d_gamma.get(), d_beta.get(), s.N, s.C,
                                                       s.HW, momentum, eps, stream),
                    std::invalid_argument);
    CHECK_THROWS_AS(ds::cpu::batchnorm_forward_train(y.data(), mean.data(), invstd.data(), rm.data(), rv.data(),
                                                     x.data(), gamma.data(), beta.data(), s.N, s.C, s.HW, momentum,
                                                     eps),
                    std::invalid_argument);
  }

  // Statistics for the backward pass: the reference's own when training is defined.
  std::vector<float> saved_mean_ref(C), saved_invstd_ref(C);
  if (s.N * s.HW >= 2) {
    SUBCASE("forward train") {
      std::vector<float> y_ref(count), rm_ref = running_mean0, rv_ref = running_var0;
      ds::cpu::batchnorm_forward_train(y_ref.data(), saved_mean_ref.data(), saved_invstd_ref.data(), rm_ref.data(),
                                       rv_ref.data(), x.data(), gamma.data(), beta.data(), s.N, s.C, s.HW, momentum,
                                       eps);
      auto d_y = poisoned(count, kNaN);
      auto d_mean = poisoned(C, kNaN);
      auto d_invstd = poisoned(C, kNaN);
      auto d_rm = DeviceBuffer<float>::from_host(running_mean0), d_rv = DeviceBuffer<float>::from_host(running_var0);
      ds::kcuda::batchnorm_forward_train(d_y.get(), d_mean.get(), d_invstd.get(), d_rm.get(), d_rv.get(), d_ws.get(), d_x.get(),
                                         d_gamma.get(), d_beta.get(), s.N, s.C, s.HW, momentum, eps, stream);
      const std::vector<float> y = download(d_y), saved_mean = download(d_mean), saved_invstd = download(d_invstd);
      const std::vector<float> rm = download(d_rm), rv = download(d_rv);
      CHECK(normalised_error(y, y_ref) <= kTolerance);
      CHECK(normalised_error(saved_mean, saved_mean_ref) <= kTolerance);
      CHECK(normalised_error(saved_invstd, saved_invstd_ref) <= kTolerance);
      CHECK(normalised_error(rm, rm_ref) <= kTolerance);
      CHECK(normalised_error(rv, rv_ref) <= kTolerance);
      CHECK(normalised_error(rv, running_var0) > kTolerance);  // the update happened
    }
    std::vector<float> y(count), rm = running_mean0, rv = running_var0;
    ds::cpu::batchnorm_forward_train(y.data(), saved_mean_ref.data(), saved_invstd_ref.data(), rm.data(), rv.data(),
                                     x.data(), gamma.data(), beta.data(), s.N, s.C, s.HW, momentum, eps);
  } else {
    for (size_t c = 0; c < C; ++c) {
      saved_mean_ref[c] = x[c];  // N = HW = 1: the channel's only value
      saved_invstd_ref[c] = static_cast<float>(1.0 / std::sqrt(eps));
    }
  }

  SUBCASE("backward") {
    std::vector<float> dx_ref(count), dgamma_ref = dgamma0, dbeta_ref = dbeta0;
    ds::cpu::batchnorm_backward(dx_ref.data(), dgamma_ref.data(), dbeta_ref.data(), dy.data(), x.data(), gamma.data(),
                                saved_mean_ref.data(), saved_invstd_ref.data(), s.N, s.C, s.HW);
    auto d_dx = poisoned(count, kNaN);
    auto d_dgamma = DeviceBuffer<float>::from_host(dgamma0), d_dbeta = DeviceBuffer<float>::from_host(dbeta0);
    auto d_dy = DeviceBuffer<float>::from_host(dy);
    auto d_mean = DeviceBuffer<float>::from_host(saved_mean_ref);
    auto d_invstd = DeviceBuffer<float>::from_host(saved_invstd_ref);
    ds::kcuda::batchnorm_backward(d_dx.get(), d_dgamma.get(), d_dbeta.get(), d_ws.get(), d_dy.get(), d_x.get(), d_gamma.get(),
                                  d_mean.get(), d_invstd.get(), s.N, s.C, s.HW, stream);
    const std::vector<float> dx = download(d_dx), dgamma = download(d_dgamma), dbeta = download(d_dbeta);
    CHECK(normalised_error(dx, dx_ref) <= kTolerance);
    CHECK(normalised_error(dgamma, dgamma_ref) <= kTolerance);
    CHECK(normalised_error(dbeta, dbeta_ref) <= kTolerance);
    CHECK(normalised_error(dbeta, dbeta0) > kTolerance);  // the accumulation happened
  }
}

}  // namespace

TEST_CASE("gpu batchnorm: N=3 C=5 HW=35 (M=105, not a multiple of 32)") { check_batchnorm_against_reference({3, 5, 35}, 1); }
TEST_CASE("gpu batchnorm: N=7 C=3 HW=4099 (many elements per thread)") { check_batchnorm_against_reference({7, 3, 4099}, 2); }
TEST_CASE("gpu batchnorm: N=1 C=3 HW=7 (M below one warp)") { check_batchnorm_against_reference({1, 3, 7}, 3); }
TEST_CASE("gpu batchnorm: N=2 C=4 HW=16 (M exactly one warp)") { check_batchnorm_against_reference({2, 4, 16}, 4); }
TEST_CASE("gpu batchnorm: N=4 C=2 HW=300 (HW above the block size)") { check_batchnorm_against_reference({4, 2, 300}, 5); }
TEST_CASE("gpu batchnorm: N=300 C=2 HW=1 (one value per image)") { check_batchnorm_against_reference({300, 2, 1}, 6); }
TEST_CASE("gpu batchnorm: N=1 C=1 HW=2 (smallest trainable)") { check_batchnorm_against_reference({1, 1, 2}, 7); }
TEST_CASE("gpu batchnorm: N=1 C=2 HW=1 (one value per channel: training refused)") {
  check_batchnorm_against_reference({1, 2, 1}, 8);
}
