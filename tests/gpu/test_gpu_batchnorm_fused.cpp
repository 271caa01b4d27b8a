// Fused batch norm + activation on the GPU (ds::kcuda, kernels/batchnorm.cu; and the ops of
// engine/nn/ops.h on CUDA tensors) against the CPU reference (batch norm then activation), with the
// split reduction at several splits and its determinism (two GPU runs bit-identical).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"
#include "engine/core/tensor.h"
#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/batchnorm.h"
#include "engine/nn/ops.h"
#include "kernels/batchnorm.h"
#include "tests/test_util.h"

namespace {

using ds::BnActivation;
using ds::DeviceBuffer;
using ds::test::count_mismatches;
using ds::test::download;
using ds::test::kNaN;
using ds::test::poisoned;
using ds::test::random_floats;

// As tests/test_emu_batchnorm.cpp: the same double sums in another order (block trees, Chan's merge of
// the chunks) round a per-channel statistic to a neighbouring float at worst, a few ulp of the output
// scale; nvcc may also contract the element expressions into FMAs (one rounding fewer). 1e-6 ≈ 8 ulp.
constexpr double kTolerance = 1e-6;
constexpr float kSlope = 0.2f;
constexpr double kMomentum = 0.1, kEps = 1e-5;

double normalised_error(const std::vector<float>& got, const std::vector<float>& want) {
  return ds::test::normalised_error(got, want, 1.0);
}

void check_fused(int64_t N, int64_t C, int64_t HW, BnActivation act, int splits, uint32_t seed) {
  CAPTURE(N);
  CAPTURE(C);
  CAPTURE(HW);
  CAPTURE(splits);
  CAPTURE(static_cast<int>(act));
  std::mt19937 rng(seed);
  const size_t count = static_cast<size_t>(N * C * HW), Cs = static_cast<size_t>(C);
  const std::vector<float> x = random_floats(count, -1.0f, 3.0f, rng), dy = random_floats(count, -1.0f, 1.0f, rng);
  const std::vector<float> gamma = random_floats(Cs, 0.5f, 1.5f, rng), beta = random_floats(Cs, -0.5f, 0.5f, rng);
  const std::vector<float> rm0 = random_floats(Cs, -0.2f, 0.2f, rng), rv0 = random_floats(Cs, 0.5f, 2.0f, rng);
  const std::vector<float> dgamma0 = random_floats(Cs, -1.0f, 1.0f, rng), dbeta0 = random_floats(Cs, -1.0f, 1.0f, rng);

  // Reference: batch norm, then the activation in place; backward: activation backward, then batch norm's.
  std::vector<float> y_ref(count), mean_ref(Cs), invstd_ref(Cs), rm_ref = rm0, rv_ref = rv0;
  ds::cpu::batchnorm_forward_train(y_ref.data(), mean_ref.data(), invstd_ref.data(), rm_ref.data(), rv_ref.data(),
                                   x.data(), gamma.data(), beta.data(), N, C, HW, kMomentum, kEps);
  std::vector<float> dz = dy;
  if (act == BnActivation::ReLU) {
    ds::cpu::relu_forward(y_ref.data(), y_ref.data(), static_cast<int64_t>(count));
    ds::cpu::relu_backward(dz.data(), dy.data(), y_ref.data(), static_cast<int64_t>(count));
  } else if (act == BnActivation::LeakyReLU) {
    ds::cpu::leaky_relu_forward(y_ref.data(), y_ref.data(), kSlope, static_cast<int64_t>(count));
    ds::cpu::leaky_relu_backward(dz.data(), dy.data(), y_ref.data(), kSlope, static_cast<int64_t>(count));
  }
  std::vector<float> dx_ref(count), dgamma_ref = dgamma0, dbeta_ref = dbeta0;
  ds::cpu::batchnorm_backward(dx_ref.data(), dgamma_ref.data(), dbeta_ref.data(), dz.data(), x.data(), gamma.data(),
                              mean_ref.data(), invstd_ref.data(), N, C, HW);

  cudaStream_t stream = ds::CudaContext::get().stream();
  auto d_x = DeviceBuffer<float>::from_host(x), d_gamma = DeviceBuffer<float>::from_host(gamma);
  auto d_beta = DeviceBuffer<float>::from_host(beta), d_dy = DeviceBuffer<float>::from_host(dy);
  DeviceBuffer<double> d_ws(ds::batchnorm_workspace_bytes(C) / sizeof(double));
  std::vector<float> first_y;
  for (int run = 0; run < 2; ++run) {
    auto d_y = poisoned(count, kNaN), d_mean = poisoned(Cs, kNaN), d_invstd = poisoned(Cs, kNaN);
    auto d_rm = DeviceBuffer<float>::from_host(rm0), d_rv = DeviceBuffer<float>::from_host(rv0);
    ds::kcuda::batchnorm_act_forward_train(d_y.get(), d_mean.get(), d_invstd.get(), d_rm.get(), d_rv.get(), d_ws.get(),
                                           d_x.get(), d_gamma.get(), d_beta.get(), N, C, HW, kMomentum, kEps, act,
                                           kSlope, splits, stream);
    const std::vector<float> y = download(d_y);
    CHECK(normalised_error(y, y_ref) <= kTolerance);
    CHECK(normalised_error(download(d_mean), mean_ref) <= kTolerance);
    CHECK(normalised_error(download(d_invstd), invstd_ref) <= kTolerance);
    CHECK(normalised_error(download(d_rm), rm_ref) <= kTolerance);
    CHECK(normalised_error(download(d_rv), rv_ref) <= kTolerance);
    if (run == 0) first_y = y;
    else CHECK(count_mismatches(y, first_y) == 0);  // deterministic: the same bits on a rerun
  }
  // Backward from the reference's forward (so both see the same mask and statistics).
  auto d_yref = DeviceBuffer<float>::from_host(y_ref), d_mean = DeviceBuffer<float>::from_host(mean_ref);
  auto d_invstd = DeviceBuffer<float>::from_host(invstd_ref);
  std::vector<float> first_dx;
  for (int run = 0; run < 2; ++run) {
    auto d_dx = poisoned(count, kNaN);
    auto d_dgamma = DeviceBuffer<float>::from_host(dgamma0), d_dbeta = DeviceBuffer<float>::from_host(dbeta0);
    ds::kcuda::batchnorm_act_backward(d_dx.get(), d_dgamma.get(), d_dbeta.get(), d_ws.get(), d_dy.get(), d_yref.get(),
                                      d_x.get(), d_gamma.get(), d_mean.get(), d_invstd.get(), N, C, HW, act, kSlope,
                                      splits, stream);
    const std::vector<float> dx = download(d_dx);
    CHECK(normalised_error(dx, dx_ref) <= kTolerance);
    CHECK(normalised_error(download(d_dgamma), dgamma_ref) <= kTolerance);
    CHECK(normalised_error(download(d_dbeta), dbeta_ref) <= kTolerance);
    if (run == 0) first_dx = dx;
    else CHECK(count_mismatches(dx, first_dx) == 0);
  }
}

}  // namespace

TEST_CASE("gpu batchnorm fused: ReLU, LeakyReLU and none at awkward sizes and splits, deterministic") {
  for (BnActivation act : {BnActivation::None, BnActivation::ReLU, BnActivation::LeakyReLU}) {
    check_fused(3, 5, 35, act, 0, 21);
    check_fused(3, 5, 35, act, 7, 22);
    check_fused(300, 2, 1, act, 7, 23);     // 1×1 planes
    check_fused(5, 37, 81, act, 3, 24);     // channels not a multiple of anything
    check_fused(16, 3, 16411, act, 0, 25);  // large planes: the automatic split is 64 blocks per channel
  }
}

TEST_CASE("gpu batchnorm fused: G's last BN at 128x512 (batch 16, C=64, 64x256) with the automatic split") {
  check_fused(16, 64, 64 * 256, BnActivation::ReLU, 0, 26);
}

TEST_CASE("gpu batchnorm fused: the ops on CUDA tensors equal the ops on CPU tensors") {
  std::mt19937 rng(27);
  const int64_t N = 4, C = 6, H = 9, W = 7;
  const size_t count = static_cast<size_t>(N * C * H * W);
  const std::vector<float> x = random_floats(count, -1.0f, 3.0f, rng), dy = random_floats(count, -1.0f, 1.0f, rng);
  const std::vector<float> gamma = random_floats(6, 0.5f, 1.5f, rng), beta = random_floats(6, -0.5f, 0.5f, rng);
  struct Side {
    ds::Tensor x, y, mean, invstd, rm, rv, gamma, beta, dy, dx, dgamma, dbeta;
  };
  auto make = [&](ds::Device d) {
    Side s;
    s.x = ds::Tensor::zeros({N, C, H, W}, d);
    s.x.copy_from_host(x.data(), s.x.numel());
    s.dy = ds::Tensor::zeros({N, C, H, W}, d);
    s.dy.copy_from_host(dy.data(), s.dy.numel());
    s.y = ds::Tensor::zeros({N, C, H, W}, d);
    s.dx = ds::Tensor::zeros({N, C, H, W}, d);
    for (ds::Tensor* t : {&s.mean, &s.invstd, &s.rm, &s.rv, &s.gamma, &s.beta, &s.dgamma, &s.dbeta})
      *t = ds::Tensor::zeros({C}, d);
    s.rv.fill(1.f);
    s.gamma.copy_from_host(gamma.data(), C);
    s.beta.copy_from_host(beta.data(), C);
    return s;
  };
  Side cpu = make(ds::Device::CPU), gpu = make(ds::Device::CUDA);
  for (Side* s : {&cpu, &gpu}) {
    ds::batchnorm_activation_forward_train(s->y, s->mean, s->invstd, s->rm, s->rv, s->x, s->gamma, s->beta, kMomentum,
                                           kEps, BnActivation::LeakyReLU, kSlope);
    ds::batchnorm_activation_backward(s->dx, s->dgamma, s->dbeta, s->dy, s->y, s->x, s->gamma, s->mean, s->invstd,
                                      BnActivation::LeakyReLU, kSlope);
  }
  CHECK(normalised_error(gpu.y.to_host(), cpu.y.to_host()) <= kTolerance);
  CHECK(normalised_error(gpu.rv.to_host(), cpu.rv.to_host()) <= kTolerance);
  CHECK(normalised_error(gpu.dx.to_host(), cpu.dx.to_host()) <= kTolerance);
  CHECK(normalised_error(gpu.dgamma.to_host(), cpu.dgamma.to_host()) <= kTolerance);
  CHECK(normalised_error(gpu.dbeta.to_host(), cpu.dbeta.to_host()) <= kTolerance);
}
