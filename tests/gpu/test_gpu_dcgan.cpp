// The whole CUDA training step against the CPU one (exact math; gradients before Adam, weights after it
// within what those gradients explain), and the DCGAN's convolutions in the
// default math mode users train with (TF32 allowed), on a GPU only.
#include <doctest/doctest.h>

#include <vector>

#include "engine/core/compare.h"
#include "engine/core/cuda_context.h"
#include "engine/nn/dcgan.h"
#include "engine/nn/ops.h"
#include "engine/core/rng.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

using namespace ds;
using ds::test::normalised_error;

namespace {

std::vector<float> normals(int64_t n, uint32_t stream, float stddev) {
  std::vector<float> v(n);
  Philox(2026, stream).fill_normal(v.data(), 0.f, stddev, n);
  return v;
}

// Restores the suite's exact (FMA-only) math when a test that switched it off ends.
struct DefaultMathScope {
  DefaultMathScope() { CudaContext::get().set_exact_math(false); }
  ~DefaultMathScope() { CudaContext::get().set_exact_math(true); }
};

}  // namespace

TEST_CASE("gpu dcgan: three CUDA training steps equal the CPU's (exact math)") {
  ModelConfig mc;
  mc.height = 32;
  mc.width = 64;  // non-square: G starts from a 4×8 map
  mc.channels = 3;
  mc.nz = 16;
  mc.ngf = mc.ndf = 8;
  const int64_t B = 5;
  Generator Gc(mc, B, Device::CPU), Gg(mc, B, Device::CUDA);
  Discriminator Dc(mc, B, Device::CPU), Dg(mc, B, Device::CUDA);
  Gc.init_weights(3, 0);
  Dc.init_weights(3, 1);
  GanStepState sc(Gc, Dc), sg(Gg, Dg);
  const std::vector<float> real = normals(B * 3 * 32 * 64, 7, 0.5f), z = normals(B * 16, 8, 1.f);
  Tensor rc = Tensor::from_host(real, {B, 3, 32, 64}, Device::CPU), rg = Tensor::from_host(real, {B, 3, 32, 64}, Device::CUDA);
  Tensor zc = Tensor::from_host(z, {B, 16, 1, 1}, Device::CPU), zg = Tensor::from_host(z, {B, 16, 1, 1}, Device::CUDA);
  const AdamConfig adam;
  // The gradients each side hands to Adam, caught by gan_step's hook.
  std::vector<float> grad_c[2], grad_g[2];  // [0] = D, [1] = G
  auto catcher = [](std::vector<float>* out, Network& D, Network& G) {
    return [out, &D, &G](const char* net) {
      const bool is_g = net[0] == 'G';
      out[is_g] = (is_g ? G : D).grads().to_host();
    };
  };
  for (int step = 1; step <= 3; ++step) {
    CAPTURE(step);
    // Each step starts the CUDA side from the CPU's state (weights, BN statistics, Adam moments), so a
    // difference a step makes is judged alone instead of being carried into the next step.
    Gg.copy_state_from(Gc);
    Dg.copy_state_from(Dc);
    sg.mG.copy_from(sc.mG);
    sg.vG.copy_from(sc.vG);
    sg.mD.copy_from(sc.mD);
    sg.vD.copy_from(sc.vD);
    gan_step(Gc, Dc, sc, rc, zc, adam, catcher(grad_c, Dc, Gc));
    gan_step(Gg, Dg, sg, rg, zg, adam, catcher(grad_g, Dg, Gg));
    // Losses/statistics: float sums in another order (cuDNN algorithms, block reductions): ~1e-5.
    CHECK(normalised_error(sg.stats.to_host(), sc.stats.to_host(), 0.0) < 1e-4);
    for (int net = 0; net < 2; ++net) {
      CAPTURE(net);
      Network& gpu = net ? static_cast<Network&>(Gg) : Dg;
      Network& cpu = net ? static_cast<Network&>(Gc) : Dc;
      // The gradients Adam was given: the same bound as the losses (float sums in another order).
      CHECK(normalised_error(grad_g[net], grad_c[net], 0.0) < 1e-4);
      // Weights after the step, each element within what its own gradient difference explains
      // (engine/core/compare.h: 0.05·lr where the gradients agree, up to 2.5·lr where a near-zero gradient's
      // sign differs); such sign flips must stay rare, or the gradients are simply wrong.
      const AdamWeightComparison w =
          compare_weights_after_adam(gpu.params().to_host(), cpu.params().to_host(), grad_g[net], grad_c[net], adam.lr);
      INFO("worst element " << w.worst_index << ": " << w.worst_excess_in_lr << " lr over its bound; " << w.sign_flips
                            << " sign flips of " << w.compared);
      CHECK(w.ok());
      CHECK(w.sign_flips * 1000 <= w.compared);
    }
  }
}

TEST_CASE("gpu dcgan: G's first and D's last convolutions in default (TF32) math") {
  DefaultMathScope scope;
  // TF32 keeps 10 mantissa bits: each product is rounded to ~2^-11 relative, so a sum of K random-sign
  // products of unit-scale inputs is off by ~2^-11·sqrt(K)·scale; normalised by the largest output
  // that stays below ~5e-3 for these sizes (K ≤ 1024·16).
  const ConvShape shapes[] = {make_conv_shape(16, 100, 1, 1, 512, 4, 4, 1, 0, true),   // G main.0
                              make_conv_shape(16, 64, 8, 8, 32, 4, 4, 2, 1, true),     // G middle
                              make_conv_shape(16, 128, 8, 8, 256, 4, 4, 2, 1, false),  // D middle
                              make_conv_shape(16, 512, 4, 4, 1, 4, 4, 1, 0, false)};   // D last (K = 1)
  for (const ConvShape& s : shapes) {
    CAPTURE(s.C);
    CAPTURE(s.K);
    ConvOp cpu(s, Device::CPU), gpu(s, Device::CUDA);
    const std::vector<float> x = normals(s.x_size(), 1, 1.f), w = normals(s.w_size(), 2, 0.05f),
                             dy = normals(s.y_size(), 3, 1.f);
    Tensor xc = Tensor::from_host(x, conv_input_shape(s), Device::CPU), xg = Tensor::from_host(x, conv_input_shape(s), Device::CUDA);
    Tensor wc = Tensor::from_host(w, conv_weight_shape(s), Device::CPU), wg = Tensor::from_host(w, conv_weight_shape(s), Device::CUDA);
    Tensor dyc = Tensor::from_host(dy, conv_output_shape(s), Device::CPU), dyg = Tensor::from_host(dy, conv_output_shape(s), Device::CUDA);
    Tensor yc = Tensor::zeros(conv_output_shape(s), Device::CPU), yg = Tensor::zeros(conv_output_shape(s), Device::CUDA);
    cpu.forward(yc, xc, wc);
    gpu.forward(yg, xg, wg);
    CHECK(normalised_error(yg.to_host(), yc.to_host(), 0.0) < 5e-3);
    Tensor dxc = Tensor::zeros(conv_input_shape(s), Device::CPU), dxg = Tensor::zeros(conv_input_shape(s), Device::CUDA);
    cpu.backward_data(dxc, dyc, wc);
    gpu.backward_data(dxg, dyg, wg);
    CHECK(normalised_error(dxg.to_host(), dxc.to_host(), 0.0) < 5e-3);
    Tensor dwc = Tensor::zeros(conv_weight_shape(s), Device::CPU), dwg = Tensor::zeros(conv_weight_shape(s), Device::CUDA);
    cpu.backward_filter(dwc, dyc, xc);
    gpu.backward_filter(dwg, dyg, xg);
    CHECK(normalised_error(dwg.to_host(), dwc.to_host(), 0.0) < 5e-3);
  }
}
