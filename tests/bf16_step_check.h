// One `--precision bf16` training step against the float32 CPU reference, shared by the emulated test
// (tests/test_emu_bf16_network.cpp: the bf16 path on kernels/emu) and the GPU one
// (tests/gpu/test_gpu_bf16_step.cpp: the CUDA bf16 path).
//
// The bound, u = 2^-8 (one rounding to bf16, relative; see tests/test_emu_bf16.cpp). The bf16 path
// rounds a value whenever it stores one: per stage in the forward pass the layer input (or the previous
// stage's output), the weight copy, the conv output and the batch-norm/activation output (4), in the
// backward pass the incoming gradient, the batch-norm backward output and the conv's data or weight
// gradient (3). A compared quantity that R roundings feed is held to R·u in the max-normalised measure
// (normalised_error: max|got − want| / max|want|; the O(1) losses and mean probabilities against 1):
// each rounding counted once at its full u, added linearly (independent roundings add far less in
// practice, as a random walk). This is a first-order budget, NOT a proven worst case: it assumes the
// layers do not amplify relative perturbations, and batch norm's backward does (it subtracts the
// channel means of dy and of dy·x̂, so a small dx is computed from a rounded, larger dy: measured on the
// emulated 16×32 D, one pass, batch 3: 0.4–1.1 % per tensor in the 2-norm, up to 2.1 % max-normalised;
// batch 16: up to 2.3 % and 6.6 %). Measured for the whole step (test_emu_bf16_network, batch 3):
// statistics 3.4e-4 of the 0.094 budget, D gradient 0.083 of 0.129, G gradient 0.133 of 0.164.
// The float32 reference itself differs from exact arithmetic by ~1e-6, negligible beside these.
// A wiring error (a stale weight copy, a gradient not accumulated, a buffer read before written, the
// wrong activation) moves these quantities by O(1) of their scale; the wiring itself is checked op by
// op, tightly, in test_emu_bf16_network.
#pragma once
#include <doctest/doctest.h>

#include <vector>

#include "engine/nn/dcgan.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

namespace ds::test {

constexpr double kBf16Unit = 1.0 / 256.0;  // u = 2^-8

struct Bf16StepResult {
  double stats_error = 0, grad_error[2] = {0, 0};  // [0] D, [1] G
  double stats_bound = 0, grad_bound[2] = {0, 0};
};

// One gan_step on (Gc, Dc) (float32, CPU) and on (Gb, Db) (the bf16 path, any device), both from the
// state of (Gc, Dc) and zero Adam moments; returns the errors of the statistics slots and of the
// gradients Adam is handed, with their bounds (above). The four networks share one ModelConfig and batch.
inline Bf16StepResult bf16_step_against_float(Generator& Gc, Discriminator& Dc, Generator& Gb, Discriminator& Db,
                                              const std::vector<float>& real, const std::vector<float>& z) {
  REQUIRE(Gb.bf16());
  REQUIRE(Db.bf16());
  REQUIRE(!Gc.bf16());
  REQUIRE(!Dc.bf16());
  Gb.copy_state_from(Gc);
  Db.copy_state_from(Dc);
  GanStepState sc(Gc, Dc), sb(Gb, Db);
  Tensor rc = Tensor::from_host(real, conv_input_shape(Dc.stages().front().geometry), Device::CPU);
  Tensor zc = Tensor::from_host(z, conv_input_shape(Gc.stages().front().geometry), Device::CPU);
  Tensor rb = Tensor::from_host(real, rc.shape(), Db.device());
  Tensor zb = Tensor::from_host(z, zc.shape(), Gb.device());
  std::vector<float> grad_c[2], grad_b[2];
  auto catcher = [](std::vector<float>* out, Network& D, Network& G) {
    return [out, &D, &G](const char* net) {
      const bool is_g = net[0] == 'G';
      out[is_g] = (is_g ? G : D).grads().to_host();
    };
  };
  const AdamConfig adam;
  gan_step(Gc, Dc, sc, rc, zc, adam, catcher(grad_c, Dc, Gc));
  gan_step(Gb, Db, sb, rb, zb, adam, catcher(grad_b, Db, Gb));
  const double LG = double(Gc.stages().size()), LD = double(Dc.stages().size());
  Bf16StepResult r;
  // The losses and probabilities: the forward passes of G and D (errD_fake and errG read D(G(z))).
  r.stats_error = normalised_error(sb.stats.to_host(), sc.stats.to_host(), 1.0);
  r.stats_bound = 4 * (LG + LD) * kBf16Unit;
  // D's gradient: the fake pass reads G's forward, then D's backward.
  r.grad_error[0] = normalised_error(grad_b[0], grad_c[0], 0.0);
  r.grad_bound[0] = (4 * (LG + LD) + 3 * LD) * kBf16Unit;
  // G's gradient: both forwards, D's backward, then G's backward.
  r.grad_error[1] = normalised_error(grad_b[1], grad_c[1], 0.0);
  r.grad_bound[1] = (4 * (LG + LD) + 3 * (LD + LG)) * kBf16Unit;
  return r;
}

inline void check_bf16_step(const Bf16StepResult& r) {
  INFO("statistics: " << r.stats_error << " (bound " << r.stats_bound << "); D gradient: " << r.grad_error[0]
                      << " (bound " << r.grad_bound[0] << "); G gradient: " << r.grad_error[1] << " (bound "
                      << r.grad_bound[1] << ")");
  CHECK(r.stats_error <= r.stats_bound);
  CHECK(r.grad_error[0] <= r.grad_bound[0]);
  CHECK(r.grad_error[1] <= r.grad_bound[1]);
}

}  // namespace ds::test
