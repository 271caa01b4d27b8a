// Whole-network gradient check: the parameter gradients of a tiny DCGAN's D loss and G loss, as the
// training step computes them (Network::backward through every layer), against central finite
// differences of the same losses. The networks are float (as trained), so this is a float check:
// see the tolerance note below. Every op's own backward is checked in double elsewhere.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "engine/nn/dcgan.h"
#include "engine/nn/ops.h"
#include "engine/core/rng.h"

using namespace ds;

namespace {

struct TinyGan {
  ModelConfig cfg;
  Generator G;
  Discriminator D;
  Tensor real, z, dlogits, dfake, loss, prob;
  static ModelConfig config() {
    ModelConfig c;
    c.height = c.width = 16;  // two stride-2 layers: D has one batch norm, G two
    c.channels = 3;
    c.nz = 5;
    c.ngf = 3;
    c.ndf = 3;
    return c;
  }
  TinyGan()
      : cfg(config()), G(cfg, 3, Device::CPU), D(cfg, 3, Device::CPU),
        real(Tensor::zeros({3, 3, 16, 16}, Device::CPU)), z(Tensor::zeros({3, 5, 1, 1}, Device::CPU)),
        dlogits(Tensor::zeros({3, 1, 1, 1}, Device::CPU)), dfake(Tensor::zeros({3, 3, 16, 16}, Device::CPU)),
        loss(Tensor::zeros({1}, Device::CPU)), prob(Tensor::zeros({1}, Device::CPU)) {
    // Larger weights than DCGAN's N(0, 0.02) so every gradient is well above float rounding.
    // Drawn into the packed layout and placed in each parameter's view: the alignment padding between
    // views stays zero, as in training.
    Philox rng(11, 0);
    for (Network* net : {static_cast<Network*>(&G), static_cast<Network*>(&D)}) {
      std::vector<float> p(static_cast<size_t>(net->packed_parameter_count()));
      rng.fill_normal(p.data(), 0.f, 0.3f, static_cast<int64_t>(p.size()));
      net->unpack(net->params(), p.data(), static_cast<int64_t>(p.size()));
    }
    // BN gamma near 1 and beta near 0, as in training: a channel with gamma ≈ 0 would park all its
    // values on the ReLU kink, where a ±h step changes which side they are on and the central
    // difference no longer measures the derivative.
    for (Network* net : {static_cast<Network*>(&G), static_cast<Network*>(&D)})
      for (Stage& s : net->stages())
        if (s.has_bn) {
          std::vector<float> gamma(s.gamma.numel()), beta(s.beta.numel());
          rng.fill_normal(gamma.data(), 1.f, 0.2f, s.gamma.numel());
          rng.fill_normal(beta.data(), 0.f, 0.1f, s.beta.numel());
          s.gamma.copy_from_host(gamma.data(), s.gamma.numel());
          s.beta.copy_from_host(beta.data(), s.beta.numel());
        }
    std::vector<float> x(real.numel());
    rng.fill_uniform(x.data(), static_cast<int64_t>(x.size()));
    for (float& v : x) v = 2 * v - 1;
    real.copy_from_host(x.data(), real.numel());
    x.resize(z.numel());
    rng.fill_normal(x.data(), 0.f, 1.f, static_cast<int64_t>(x.size()));
    z.copy_from_host(x.data(), z.numel());
  }
  // errD = BCE(D(real), 1) + BCE(D(G(z)), 0), separate batch statistics; with gradients if asked.
  double loss_d(bool backward) {
    if (backward) D.zero_grad();
    D.forward(real, true);
    bce_with_logits(dlogits, loss, prob, D.output(), 1.f);
    double total = loss.data()[0];
    if (backward) D.backward(dlogits, nullptr, true);
    G.forward(z, true);
    D.forward(G.output(), true);
    bce_with_logits(dlogits, loss, prob, D.output(), 0.f);
    total += loss.data()[0];
    if (backward) D.backward(dlogits, nullptr, true);
    return total;
  }
  // errG = BCE(D(G(z)), 1) through D into G.
  double loss_g(bool backward) {
    if (backward) G.zero_grad();
    G.forward(z, true);
    D.forward(G.output(), true);
    bce_with_logits(dlogits, loss, prob, D.output(), 1.f);
    if (backward) {
      D.backward(dlogits, &dfake, false);
      G.backward(dfake, nullptr, true);
    }
    return loss.data()[0];
  }
};

// Central differences on every parameter of `net`; returns max|analytic − numeric| / max|numeric|
// over the parameters where the loss is smooth at the scale of the step.
// Float tolerance: the losses are float sums of O(1) terms (rounding ~1e-7 absolute), so with
// h = 1e-3 the difference quotient carries ~1e-4 absolute noise; truncation O(h²) is smaller.
// Relative to the largest gradient (~0.1–1 here) that is ≤ 1e-3, and the bound is 1e-2, while a wrong
// sign, a missing term or a wrong index gives O(1) errors.
// Kinks: ReLU/LeakyReLU are not differentiable at 0, and a ±h step that moves a pre-activation across
// 0 measures an average of two slopes. Such parameters are found by comparing the quotients at h and
// h/4 (they disagree by far more than the noise) and left out; the test requires them to be few.
struct FdResult {
  double error = 0;
  int64_t checked = 0, kinked = 0;
};
// Every element of params() is visited, the alignment padding between views too: nothing reads it, so
// its numeric derivative is 0 and its analytic gradient must be 0 as well.
FdResult check_network(Network& net, const std::vector<float>& analytic, const std::function<double()>& loss) {
  const int64_t n = net.params().numel();
  float* p = net.params().data();
  auto quotient = [&](int64_t i, float h) {
    const float saved = p[i];
    p[i] = saved + h;
    const double up = loss();
    p[i] = saved - h;
    const double down = loss();
    p[i] = saved;
    return (up - down) / (2.0 * static_cast<double>(h));
  };
  const float h = 1e-3f;
  FdResult r;
  double err = 0, scale = 0;
  int64_t worst = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double numeric = quotient(i, h), quarter = quotient(i, h / 4);
    scale = std::max(scale, std::fabs(numeric));
    if (std::fabs(numeric - quarter) > 1e-3 + 1e-2 * std::fabs(numeric)) {  // a kink within ±h
      ++r.kinked;
      continue;
    }
    ++r.checked;
    if (std::fabs(numeric - analytic[i]) > err) {
      err = std::fabs(numeric - analytic[i]);
      worst = i;
    }
  }
  if (worst >= 0) MESSAGE("worst parameter ", worst, ": analytic ", analytic[worst], " numeric ", quotient(worst, h));
  r.error = err / scale;
  return r;
}

}  // namespace

TEST_CASE("gradcheck dcgan step: D's parameter gradients of errD_real + errD_fake") {
  TinyGan gan;
  gan.loss_d(true);
  const std::vector<float> analytic = gan.D.grads().to_host();
  const FdResult r = check_network(gan.D, analytic, [&] { return gan.loss_d(false); });
  MESSAGE("D: max-normalised error ", r.error, " over ", r.checked, " parameters (", r.kinked, " at kinks)");
  CHECK(r.error < 1e-2);
  CHECK(r.kinked * 20 < r.checked);
}

TEST_CASE("gradcheck dcgan step: G's parameter gradients of errG through D") {
  TinyGan gan;
  gan.loss_g(true);
  const std::vector<float> analytic = gan.G.grads().to_host();
  const FdResult r = check_network(gan.G, analytic, [&] { return gan.loss_g(false); });
  MESSAGE("G: max-normalised error ", r.error, " over ", r.checked, " parameters (", r.kinked, " at kinks)");
  CHECK(r.error < 1e-2);
  CHECK(r.kinked * 20 < r.checked);
}
