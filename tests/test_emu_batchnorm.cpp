// Emulated BatchNorm2d kernels (kernels/batchnorm.cu run by kernels/emu), plain and fused with the
// ReLU/LeakyReLU after them, against the CPU reference (engine/nn/cpu/batchnorm.h, then
// engine/nn/cpu/activations.h) on awkward sizes and block splits, every output poisoned with NaN first;
// and the split reduction's determinism (bit-identical reruns) and split-independence.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/batchnorm.h"
#include "kernels/batchnorm.h"
#include "tests/test_util.h"

namespace {

using ds::BnActivation;
using ds::test::count_mismatches;
using ds::test::kNaN;
using ds::test::random_floats;

// max|a−b| / max(1, max|b|); NaN anywhere (an unwritten poisoned element) counts as infinite error.
double normalised_error(const std::vector<float>& got, const std::vector<float>& want) {
  return ds::test::normalised_error(got, want, 1.0);
}

// The kernels and the reference compute the same double sums in a different order (the reference one
// sequential sum per channel; the kernel a block tree per chunk, then Chan's merge of the chunks for the
// forward or a chunk-ordered sum for the backward). Those double results differ in the last double
// bits only (relative ~1e-16·log2 M), far below float resolution, but a per-channel mean/invstd/Σ can
// still round to a neighbouring float, and the element-wise float expressions then differ by a few ulp
// of the output's scale (FLT_EPSILON ≈ 1.2e-7). 1e-6 is ~8 ulp; a wrong index, a missed or doubled
// chunk, a wrong merge weight or a biased/unbiased mix-up is off by far more (a chunk of 1/7 of the
// values counted twice moves the mean by ~0.1 here). The same bound holds between two splits.
constexpr double kTolerance = 1e-6;
constexpr float kSlope = 0.2f;
constexpr double kMomentum = 0.1, kEps = 1e-5;

struct Size {
  int64_t N, C, HW;
};

struct Inputs {
  std::vector<float> x, dy, gamma, beta, running_mean0, running_var0, dgamma0, dbeta0;
};
Inputs make_inputs(Size s, uint32_t seed, float x_offset = 0.0f) {
  std::mt19937 rng(seed);
  const size_t count = static_cast<size_t>(s.N * s.C * s.HW), C = static_cast<size_t>(s.C);
  Inputs in;
  in.x = random_floats(count, -1.0f, 3.0f, rng);
  for (float& v : in.x) v += x_offset;
  in.dy = random_floats(count, -1.0f, 1.0f, rng);
  in.gamma = random_floats(C, 0.5f, 1.5f, rng);
  in.beta = random_floats(C, -0.5f, 0.5f, rng);
  in.running_mean0 = random_floats(C, -0.2f, 0.2f, rng);
  in.running_var0 = random_floats(C, 0.5f, 2.0f, rng);
  in.dgamma0 = random_floats(C, -1.0f, 1.0f, rng);
  in.dbeta0 = random_floats(C, -1.0f, 1.0f, rng);
  return in;
}

void reference_activation_forward(std::vector<float>& y, BnActivation act) {
  const int64_t n = static_cast<int64_t>(y.size());
  if (act == BnActivation::ReLU) ds::cpu::relu_forward(y.data(), y.data(), n);
  if (act == BnActivation::LeakyReLU) ds::cpu::leaky_relu_forward(y.data(), y.data(), kSlope, n);
}
// dz = the activation's backward of dy, from the forward output y.
std::vector<float> reference_activation_backward(const std::vector<float>& dy, const std::vector<float>& y,
                                                 BnActivation act) {
  std::vector<float> dz = dy;
  const int64_t n = static_cast<int64_t>(dy.size());
  if (act == BnActivation::ReLU) ds::cpu::relu_backward(dz.data(), dy.data(), y.data(), n);
  if (act == BnActivation::LeakyReLU) ds::cpu::leaky_relu_backward(dz.data(), dy.data(), y.data(), kSlope, n);
  return dz;
}

// Everything the training forward writes.
struct TrainOutputs {
  std::vector<float> y, saved_mean, saved_invstd, running_mean, running_var;
};
TrainOutputs emu_forward_train(const Inputs& in, Size s, BnActivation act, int splits) {
  const size_t count = in.x.size(), C = in.gamma.size();
  TrainOutputs o{std::vector<float>(count, kNaN), std::vector<float>(C, kNaN), std::vector<float>(C, kNaN),
                 in.running_mean0, in.running_var0};
  std::vector<double> workspace(ds::batchnorm_workspace_bytes(s.C) / sizeof(double),
                                std::numeric_limits<double>::quiet_NaN());
  ds::kemu::batchnorm_act_forward_train(o.y.data(), o.saved_mean.data(), o.saved_invstd.data(), o.running_mean.data(),
                                        o.running_var.data(), workspace.data(), in.x.data(), in.gamma.data(),
                                        in.beta.data(), s.N, s.C, s.HW, kMomentum, kEps, act, kSlope, splits, nullptr);
  return o;
}
TrainOutputs reference_forward_train(const Inputs& in, Size s, BnActivation act) {
  const size_t count = in.x.size(), C = in.gamma.size();
  TrainOutputs o{std::vector<float>(count), std::vector<float>(C), std::vector<float>(C), in.running_mean0,
                 in.running_var0};
  ds::cpu::batchnorm_forward_train(o.y.data(), o.saved_mean.data(), o.saved_invstd.data(), o.running_mean.data(),
                                   o.running_var.data(), in.x.data(), in.gamma.data(), in.beta.data(), s.N, s.C, s.HW,
                                   kMomentum, kEps);
  reference_activation_forward(o.y, act);
  return o;
}

struct BackwardOutputs {
  std::vector<float> dx, dgamma, dbeta;
};
BackwardOutputs emu_backward(const Inputs& in, const TrainOutputs& fwd, Size s, BnActivation act, int splits) {
  BackwardOutputs o{std::vector<float>(in.x.size(), kNaN), in.dgamma0, in.dbeta0};  // dgamma/dbeta accumulate
  std::vector<double> workspace(ds::batchnorm_workspace_bytes(s.C) / sizeof(double),
                                std::numeric_limits<double>::quiet_NaN());
  ds::kemu::batchnorm_act_backward(o.dx.data(), o.dgamma.data(), o.dbeta.data(), workspace.data(), in.dy.data(),
                                   fwd.y.data(), in.x.data(), in.gamma.data(), fwd.saved_mean.data(),
                                   fwd.saved_invstd.data(), s.N, s.C, s.HW, act, kSlope, splits, nullptr);
  return o;
}
BackwardOutputs reference_backward(const Inputs& in, const TrainOutputs& fwd, Size s, BnActivation act) {
  BackwardOutputs o{std::vector<float>(in.x.size()), in.dgamma0, in.dbeta0};
  const std::vector<float> dz = reference_activation_backward(in.dy, fwd.y, act);
  ds::cpu::batchnorm_backward(o.dx.data(), o.dgamma.data(), o.dbeta.data(), dz.data(), in.x.data(), in.gamma.data(),
                              fwd.saved_mean.data(), fwd.saved_invstd.data(), s.N, s.C, s.HW);
  return o;
}

void check_close(const TrainOutputs& got, const TrainOutputs& want) {
  CHECK(normalised_error(got.y, want.y) <= kTolerance);
  CHECK(normalised_error(got.saved_mean, want.saved_mean) <= kTolerance);
  CHECK(normalised_error(got.saved_invstd, want.saved_invstd) <= kTolerance);
  CHECK(normalised_error(got.running_mean, want.running_mean) <= kTolerance);
  CHECK(normalised_error(got.running_var, want.running_var) <= kTolerance);
}
void check_close(const BackwardOutputs& got, const BackwardOutputs& want) {
  CHECK(normalised_error(got.dx, want.dx) <= kTolerance);
  CHECK(normalised_error(got.dgamma, want.dgamma) <= kTolerance);
  CHECK(normalised_error(got.dbeta, want.dbeta) <= kTolerance);
}

// Forward (train and eval) and backward of act(BN(x)) against the reference, for the automatic split and
// each split in `splits`.
void check_against_reference(Size s, uint32_t seed, BnActivation act, std::vector<int> splits, float x_offset = 0.0f) {
  CAPTURE(s.N);
  CAPTURE(s.C);
  CAPTURE(s.HW);
  CAPTURE(static_cast<int>(act));
  const Inputs in = make_inputs(s, seed, x_offset);
  const size_t count = in.x.size(), C = in.gamma.size();

  {  // eval
    std::vector<float> y_ref(count), y(count, kNaN);
    ds::cpu::batchnorm_forward_eval(y_ref.data(), in.x.data(), in.gamma.data(), in.beta.data(),
                                    in.running_mean0.data(), in.running_var0.data(), s.N, s.C, s.HW, kEps);
    reference_activation_forward(y_ref, act);
    ds::kemu::batchnorm_act_forward_eval(y.data(), in.x.data(), in.gamma.data(), in.beta.data(),
                                         in.running_mean0.data(), in.running_var0.data(), s.N, s.C, s.HW, kEps, act,
                                         kSlope, nullptr);
    CHECK(normalised_error(y, y_ref) <= kTolerance);
  }

  TrainOutputs fwd_ref;
  if (s.N * s.HW < 2) {
    // One value per channel: training is refused by both, as by PyTorch; the backward is still
    // defined (x̂ = 0, so dx = 0) and is checked from hand-made statistics.
    CHECK_THROWS_AS(emu_forward_train(in, s, act, 0), std::invalid_argument);
    CHECK_THROWS_AS(reference_forward_train(in, s, act), std::invalid_argument);
    fwd_ref = {std::vector<float>(count), std::vector<float>(C), std::vector<float>(C), {}, {}};
    for (size_t c = 0; c < C; ++c) {
      fwd_ref.saved_mean[c] = in.x[c];  // N = HW = 1: the channel's only value
      fwd_ref.saved_invstd[c] = static_cast<float>(1.0 / std::sqrt(kEps));
      fwd_ref.y[c] = in.beta[c];  // x̂ = 0
    }
    reference_activation_forward(fwd_ref.y, act);
  } else {
    fwd_ref = reference_forward_train(in, s, act);
  }
  const BackwardOutputs bwd_ref = reference_backward(in, fwd_ref, s, act);
  CHECK(normalised_error(bwd_ref.dbeta, in.dbeta0) > kTolerance);  // the accumulation happens (and is checked)

  splits.insert(splits.begin(), 0);  // 0 = batchnorm_splits' choice
  for (int split : splits) {
    CAPTURE(split);
    if (s.N * s.HW >= 2) {
      const TrainOutputs fwd = emu_forward_train(in, s, act, split);
      check_close(fwd, fwd_ref);
      CHECK(normalised_error(fwd.running_var, in.running_var0) > kTolerance);  // the update happened
    }
    check_close(emu_backward(in, fwd_ref, s, act, split), bwd_ref);
  }
}

const std::vector<BnActivation> kActivations = {BnActivation::None, BnActivation::ReLU, BnActivation::LeakyReLU};

}  // namespace

TEST_CASE("emu batchnorm: N=3 C=5 HW=35 (M=105, not a multiple of 32), splits 2, 7, 64") {
  for (BnActivation act : kActivations) check_against_reference({3, 5, 35}, 1, act, {2, 7, 64});
}
TEST_CASE("emu batchnorm: N=7 C=3 HW=4099 (large planes: the automatic split is 7 blocks per channel)") {
  CHECK(ds::batchnorm_splits(3, 7 * 4099) == 7);
  check_against_reference({7, 3, 4099}, 2, BnActivation::ReLU, {1, 5});
}
TEST_CASE("emu batchnorm: N=1 C=3 HW=7 (M below one warp), splits 3") {
  for (BnActivation act : kActivations) check_against_reference({1, 3, 7}, 3, act, {3});
}
TEST_CASE("emu batchnorm: N=2 C=4 HW=16 (M exactly one warp), splits 2") {
  check_against_reference({2, 4, 16}, 4, BnActivation::LeakyReLU, {2});
}
TEST_CASE("emu batchnorm: N=4 C=2 HW=300 (HW above the block size), chunks crossing images") {
  check_against_reference({4, 2, 300}, 5, BnActivation::None, {3, 4});
}
TEST_CASE("emu batchnorm: N=300 C=2 HW=1 (1x1 planes), splits 7") {
  for (BnActivation act : kActivations) check_against_reference({300, 2, 1}, 6, act, {7});
}
TEST_CASE("emu batchnorm: N=1 C=1 HW=2 (smallest trainable), splits 64 clamped to 2") {
  check_against_reference({1, 1, 2}, 7, BnActivation::ReLU, {64});
}
TEST_CASE("emu batchnorm: N=1 C=2 HW=1 (one value per channel: training refused)") {
  for (BnActivation act : kActivations) check_against_reference({1, 2, 1}, 8, act, {});
}
TEST_CASE("emu batchnorm: N=5 C=37 HW=81 (channels not a multiple of anything), splits 3") {
  check_against_reference({5, 37, 81}, 9, BnActivation::LeakyReLU, {3});
}

TEST_CASE("emu batchnorm: N=4 C=3 HW=517, values 1000 plus U(-1, 3) so the mean is far above the std, splits 7") {
  // The one-pass shifted sums and Chan's merge must not cancel: the mean is ~870 standard deviations.
  check_against_reference({4, 3, 517}, 10, BnActivation::ReLU, {7}, 1000.0f);
}

TEST_CASE("emu batchnorm: the split reduction is bit for bit deterministic, and splits agree within tolerance") {
  // The emulator shuffles thread order per launch, so two runs see different schedules.
  const Size s{3, 4, 2053};  // M = 6159: chunks of 880 (7 splits) and 97 (64 splits) cross images
  const Inputs in = make_inputs(s, 11);
  for (BnActivation act : {BnActivation::ReLU, BnActivation::LeakyReLU}) {
    CAPTURE(static_cast<int>(act));
    const TrainOutputs one = emu_forward_train(in, s, act, 1);
    for (int split : {7, 64}) {
      CAPTURE(split);
      const TrainOutputs a = emu_forward_train(in, s, act, split), b = emu_forward_train(in, s, act, split);
      CHECK(count_mismatches(a.y, b.y) == 0);
      CHECK(count_mismatches(a.saved_mean, b.saved_mean) == 0);
      CHECK(count_mismatches(a.saved_invstd, b.saved_invstd) == 0);
      CHECK(count_mismatches(a.running_var, b.running_var) == 0);
      check_close(a, one);
      const BackwardOutputs da = emu_backward(in, a, s, act, split), db = emu_backward(in, a, s, act, split);
      CHECK(count_mismatches(da.dx, db.dx) == 0);
      CHECK(count_mismatches(da.dgamma, db.dgamma) == 0);
      CHECK(count_mismatches(da.dbeta, db.dbeta) == 0);
      check_close(da, emu_backward(in, a, s, act, 1));
    }
  }
}

TEST_CASE("unit batchnorm_splits: fills the GPU from the channel count and N*H*W, within its bounds") {
  CHECK(ds::batchnorm_splits(64, 64 * 64 * 256) == 16);  // G's last BN at 128x512, batch 64: 1024 blocks
  CHECK(ds::batchnorm_splits(512, 64 * 16) == 1);        // 4x4 maps: too few values to split
  CHECK(ds::batchnorm_splits(1, int64_t(1) << 30) == ds::kBatchNormMaxSplits);
  CHECK(ds::batchnorm_splits(8, 3 * 4096) == 3);  // bounded by values per block
  CHECK(ds::batchnorm_splits(0, 100) == 1);
}

TEST_CASE("emu batchnorm: bad splits and a non-positive LeakyReLU slope are refused") {
  const Size s{2, 1, 8};
  const Inputs in = make_inputs(s, 12);
  CHECK_THROWS_AS(emu_forward_train(in, s, BnActivation::ReLU, ds::kBatchNormMaxSplits + 1), std::invalid_argument);
  CHECK_THROWS_AS(emu_forward_train(in, s, BnActivation::ReLU, -1), std::invalid_argument);
  std::vector<float> y(in.x.size());
  CHECK_THROWS_AS(ds::kemu::batchnorm_act_forward_eval(y.data(), in.x.data(), in.gamma.data(), in.beta.data(),
                                                       in.running_mean0.data(), in.running_var0.data(), s.N, s.C, s.HW,
                                                       kEps, BnActivation::LeakyReLU, 0.0f, nullptr),
                  std::invalid_argument);
}
