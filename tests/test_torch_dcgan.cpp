// PyTorch oracle for the whole DCGAN step on the CPU: Generator, Discriminator, loss, Adam and gan_step against
// tests/fixtures/dcgan_tiny.safetensors (six steps of PyTorch's examples/dcgan, made by tests/make_torch_fixture.py).
//
// How the tolerances were chosen: the fixture's six steps were rerun in float64 PyTorch from the fixture's own
// init/real/z (same modules, same Adam), and compared with the float32 record. That difference is what float32
// rounding alone does, i.e. what an equally right float32 implementation with another summation order shows:
//   gradients of step 1    ≤ 2e-6 max-normalised (worst: G main.7.weight)
//   losses of every step   ≤ 2e-7 relative
//   weights after steps 1-6 ≤ 1.6e-7 absolute (0.0008·lr)
//   BN running statistics  ≤ 8e-7 max-normalised (steps 1-6)
// Each bound below is the issue's, or (running statistics, forward values) chosen with ≥ 10× headroom over
// those numbers while still catching the bugs it is meant to catch (see each constant).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/train/checkpoint.h"
#include "engine/nn/dcgan.h"
#include "engine/nn/ops.h"
#include "engine/formats/safetensors.h"
#include "engine/core/tensor.h"
#include "engine/train/trainer.h"

namespace {

using ds::Device;
using ds::Tensor;

// The fixture's model and run (its metadata says the same; checked in the first test).
constexpr int64_t kBatch = 4;
constexpr int kSteps = 6;

// Losses, D(x), D(G(z)) and parameter gradients: the bound, max-normalised relative error. Float32
// rounding gives ≤ 2e-6 (header); a wrong formula (a missing term, a transposed kernel, a wrong BN backward)
// is O(1) on the tensor it touches.
constexpr double kLossGradTolerance = 1e-4;
// Forward values of step 1 (G(z), D's logits): the same class of float32 computation as the losses, same bound.
constexpr double kForwardTolerance = 1e-4;
// Adam alone, max-normalised per tensor (max|engine − torch| / max|torch|; per-element relative error is only
// reported: weights that land near zero make it meaningless). The update lr·m̂/(√v̂+ε) computed in another
// operation order differs by a few ulp of the update, and the final rounding to a float32 weight costs ≤ ½ ulp
// of the weight: a few 1e-7 at most (BN biases start at 0, so after one step every element is ≈ ±lr and the
// max-normalised error is a per-element one, a few ulp). The 1e-6 is ~8 float32 ulp; a missing bias
// correction halves the step-1 update, and ε ten times too large (or inside the square root) already shows
// ≥ 2e-5 on the BN biases.
constexpr double kAdamTolerance = 1e-6;
// Weights after each step, absolute: the 0.05·lr. Gradients of conv weights that feed batch norm are
// nearly zero (BN removes their mean/scale direction), i.e. near Adam's ε, where the update's sign and size
// follow rounding noise; a bound tighter than a fraction of one lr-sized step is not physical.
constexpr double kWeightToleranceInLr = 0.05;
// BN running mean/var, max-normalised per tensor. Float32 rounding gives ≤ 8e-7 over six steps (header).
// 1e-5 still catches the classic bugs: biased instead of unbiased running variance shows 5e-5 (D main.6) at
// step 1 and 1.4e-5 (G main.1) at step 2; momentum 0.01 instead of 0.1 shows ≥ 0.1; a wrong update count O(1).
constexpr double kRunningStatTolerance = 1e-5;

const std::string& fixture_path() {
  static const std::string path = std::string(DS_SOURCE_DIR) + "/tests/fixtures/dcgan_tiny.safetensors";
  return path;
}

const ds::SafeTensorsFile& fixture() {
  static const ds::SafeTensorsFile file = ds::read_safetensors(fixture_path());
  return file;
}

ds::ModelConfig tiny_config() {
  ds::ModelConfig cfg;
  cfg.height = 32;
  cfg.width = 32;
  cfg.channels = 3;
  cfg.nz = 8;
  cfg.ngf = 4;
  cfg.ndf = 4;
  return cfg;
}

std::vector<float> fixture_floats(const std::string& name, const ds::Shape& shape) {
  return fixture().get(name, ds::DType::F32, shape).to_float();
}

int64_t fixture_int64(const std::string& name) {
  const ds::SafeTensor& t = fixture().get(name, ds::DType::I64, {});
  int64_t v = 0;
  std::memcpy(&v, t.data.data(), sizeof v);
  return v;
}

Tensor fixture_tensor(const std::string& name, const ds::Shape& shape) {
  return Tensor::from_host(fixture_floats(name, shape), shape, Device::CPU);
}

std::string sci(double v) {
  std::ostringstream s;
  s.precision(3);
  s << std::scientific << v;
  return s.str();
}

// Enough digits to tell two floats apart.
std::string exact(float v) {
  std::ostringstream s;
  s.precision(9);
  s << v;
  return s.str();
}

// max|a − b| with where it happens, and max|b| (b is PyTorch's), for one tensor.
struct Difference {
  double max_abs = 0, max_ref = 0;
  size_t worst = 0;
  float engine_at_worst = 0, torch_at_worst = 0;
  double normalised() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
  std::string describe(const std::string& what) const {
    return what + ": max|engine - torch| = " + sci(max_abs) + " at flat index " + std::to_string(worst) +
           " (engine " + exact(engine_at_worst) + ", torch " + exact(torch_at_worst) +
           "), max|torch| = " + sci(max_ref) + ", max-normalised " + sci(normalised());
  }
};

Difference difference(const std::vector<float>& engine, const std::vector<float>& torch) {
  REQUIRE(engine.size() == torch.size());
  Difference d;
  for (size_t i = 0; i < engine.size(); ++i) {
    const double e = std::fabs(double(engine[i]) - double(torch[i]));
    // NaN compares false everywhere; make it the worst element instead of invisible.
    if (e > d.max_abs || std::isnan(e)) {
      d.max_abs = std::isnan(e) ? INFINITY : e;
      d.worst = i;
      d.engine_at_worst = engine[i];
      d.torch_at_worst = torch[i];
    }
    d.max_ref = std::max(d.max_ref, std::fabs(double(torch[i])));
  }
  return d;
}

// Tracks the worst value of one check over many tensors, for one summary line per check.
struct Worst {
  explicit Worst(std::string what) : label(std::move(what)) {}
  std::string label;
  double value = 0;
  std::string where;
  void see(double v, const std::string& w) {
    if (v >= value) {
      value = v;
      where = w;
    }
  }
  void report() const { MESSAGE(label << ": worst " << sci(value) << " (" << where << ")"); }
};

// The host copy of parameter `p`'s gradient: its view in grads() sits at the same offset as in params().
std::vector<float> parameter_gradient(const ds::Network& net, const ds::NamedTensor& p) {
  const std::vector<float> all = net.grads().to_host();
  const ptrdiff_t offset = p.tensor.data() - net.params().data();
  REQUIRE(offset >= 0);
  REQUIRE(offset + p.tensor.numel() <= net.grads().numel());
  return std::vector<float>(all.begin() + offset, all.begin() + offset + p.tensor.numel());
}

// A network of the fixture's architecture loaded from `prefix` ("init.netG." …).
template <class Net>
std::unique_ptr<Net> loaded(const std::string& prefix) {
  auto net = std::make_unique<Net>(tiny_config(), kBatch, Device::CPU);
  ds::load_network(*net, fixture(), prefix, fixture_path());
  return net;
}

struct StatSlot {
  int slot;
  const char* fixture_name;
};
constexpr StatSlot kStatSlots[] = {{ds::kErrDReal, "errD_real"}, {ds::kDx, "D_x"},     {ds::kErrDFake, "errD_fake"},
                                   {ds::kDGz1, "D_G_z1"},        {ds::kErrG, "errG"}, {ds::kDGz2, "D_G_z2"}};

const ds::Shape kImageShape = {kBatch, 3, 32, 32};
const ds::Shape kNoiseShape = {kBatch, 8, 1, 1};
const ds::Shape kLogitShape = {kBatch};

}  // namespace

TEST_CASE("torch dcgan fixture describes the model this test builds") {
  const auto& meta = fixture().metadata;
  CHECK(meta.at("nz") == "8");
  CHECK(meta.at("ngf") == "4");
  CHECK(meta.at("ndf") == "4");
  CHECK(meta.at("nc") == "3");
  CHECK(meta.at("height") == "32");
  CHECK(meta.at("width") == "32");
  CHECK(meta.at("batch") == std::to_string(kBatch));
  CHECK(meta.at("steps") == std::to_string(kSteps));
  const ds::AdamConfig adam;
  CHECK(std::stod(meta.at("lr")) == doctest::Approx(adam.lr).epsilon(1e-7));
  CHECK(std::stod(meta.at("beta1")) == doctest::Approx(adam.beta1).epsilon(1e-7));
  CHECK(std::stod(meta.at("beta2")) == doctest::Approx(adam.beta2).epsilon(1e-7));
  CHECK(std::stod(meta.at("eps")) == doctest::Approx(adam.eps).epsilon(1e-7));
  // The value the script printed when the fixture was made (pins that this is the file it describes).
  CHECK(fixture_floats("step1.errD_real", {1})[0] == 0.6313104629516602f);
  CHECK(fixture_floats("step1.errG", {1})[0] == 0.7729319334030151f);
  // Every state_dict entry PyTorch wrote is one the engine's networks have, and the other way round.
  for (const char* net : {"netG", "netD"}) {
    const std::string prefix = std::string("init.") + net + ".";
    size_t in_fixture = 0;
    for (const auto& [name, t] : fixture().tensors)
      if (name.rfind(prefix, 0) == 0) ++in_fixture;
    std::unique_ptr<ds::Network> engine;
    if (std::string(net) == "netG")
      engine = std::make_unique<ds::Generator>(tiny_config(), kBatch, Device::CPU);
    else
      engine = std::make_unique<ds::Discriminator>(tiny_config(), kBatch, Device::CPU);
    CHECK_MESSAGE(engine->state_tensors().size() + engine->batches_tracked().size() == in_fixture, net);
  }
}

// Step 1's forward values, each network on PyTorch's own inputs, so a mismatch points at G or at D.
TEST_CASE("torch dcgan step 1 forward: G(z) and D's logits, each network alone") {
  Worst worst{"step 1 forward, max-normalised"};
  const Tensor real = fixture_tensor("real", kImageShape);
  const Tensor z = fixture_tensor("z.1", kNoiseShape);
  const Tensor torch_fake = fixture_tensor("step1.fake", kImageShape);

  auto G = loaded<ds::Generator>("init.netG.");
  G->forward(z, true);
  const Difference fake = difference(G->output().to_host(), torch_fake.to_host());
  worst.see(fake.normalised(), "fake");
  CHECK_MESSAGE(fake.normalised() <= kForwardTolerance, fake.describe("G(z.1) (step1.fake), generator at init"));

  auto D = loaded<ds::Discriminator>("init.netD.");
  D->forward(real, true);
  const Difference logits_real = difference(D->output().to_host(), fixture_floats("step1.logits_real", kLogitShape));
  worst.see(logits_real.normalised(), "logits_real");
  CHECK_MESSAGE(logits_real.normalised() <= kForwardTolerance,
                logits_real.describe("D(real) (step1.logits_real), discriminator at init"));
  // PyTorch's fake, not the engine's, so this isolates D.
  D->forward(torch_fake, true);
  const Difference logits_fake = difference(D->output().to_host(), fixture_floats("step1.logits_fake", kLogitShape));
  worst.see(logits_fake.normalised(), "logits_fake");
  CHECK_MESSAGE(logits_fake.normalised() <= kForwardTolerance,
                logits_fake.describe("D(torch's fake) (step1.logits_fake), discriminator at init"));
  worst.report();
}

TEST_CASE("torch dcgan step 1 through gan_step: losses, D(x), D(G(z)) and every parameter gradient") {
  auto G = loaded<ds::Generator>("init.netG.");
  auto D = loaded<ds::Discriminator>("init.netD.");
  ds::GanStepState st(*G, *D);
  const Tensor real = fixture_tensor("real", kImageShape);
  const Tensor z = fixture_tensor("z.1", kNoiseShape);

  Worst worst_grad{"step 1 gradients, max-normalised"};
  Worst worst_forward{"step 1 forward inside gan_step, max-normalised"};
  bool saw_d = false, saw_g = false;
  auto check_gradients = [&](const ds::Network& net, const std::string& net_name) {
    for (const ds::NamedTensor& p : net.parameters()) {
      const std::string name = "step1.grad." + net_name + "." + p.name;
      const Difference d = difference(parameter_gradient(net, p), fixture_floats(name, p.tensor.shape()));
      worst_grad.see(d.normalised(), name);
      CHECK_MESSAGE(d.normalised() <= kLossGradTolerance, d.describe(name));
    }
  };
  auto check_forward = [&](const Tensor& engine, const std::string& name, const ds::Shape& shape) {
    const Difference d = difference(engine.to_host(), fixture_floats(name, shape));
    worst_forward.see(d.normalised(), name);
    CHECK_MESSAGE(d.normalised() <= kForwardTolerance, d.describe(name + " (inside gan_step)"));
  };
  ds::gan_step(*G, *D, st, real, z, ds::AdamConfig{}, [&](const char* net) {
    if (std::string(net) == "D") {
      saw_d = true;
      // D's last forward was on G(z).detach(); both are still in place.
      check_forward(G->output(), "step1.fake", kImageShape);
      check_forward(D->output(), "step1.logits_fake", kLogitShape);
      check_gradients(*D, "netD");
    } else {
      saw_g = true;
      check_forward(D->output(), "step1.logits_fake_after", kLogitShape);
      check_gradients(*G, "netG");
    }
  });
  CHECK(saw_d);
  CHECK(saw_g);

  Worst worst_loss{"step 1 losses and D outputs, relative"};
  const std::vector<float> stats = st.stats.to_host();
  for (const StatSlot& s : kStatSlots) {
    const std::string name = std::string("step1.") + s.fixture_name;
    const double torch = fixture_floats(name, {1})[0];
    const double rel = std::fabs(stats.at(s.slot) - torch) / std::fabs(torch);
    worst_loss.see(rel, name);
    CHECK_MESSAGE(rel <= kLossGradTolerance,
                  name << ": engine " << stats.at(s.slot) << ", torch " << torch << ", relative " << sci(rel));
  }
  worst_forward.report();
  worst_grad.report();
  worst_loss.report();
}

// Adam alone: PyTorch's own step-1 gradients applied to the init weights must give PyTorch's step-1 weights.
TEST_CASE("torch dcgan Adam alone: the fixture's step-1 gradients from init give the step-1 weights") {
  Worst worst{"Adam alone, max-normalised"};
  Worst worst_elementwise{"Adam alone, per-element relative (reported, not asserted)"};
  auto check_net = [&](ds::Network& net, const std::string& net_name) {
    Tensor grads = Tensor::zeros(net.params().shape(), Device::CPU);
    std::vector<float> host(static_cast<size_t>(grads.numel()), 0.f);
    for (const ds::NamedTensor& p : net.parameters()) {
      const std::vector<float> g = fixture_floats("step1.grad." + net_name + "." + p.name, p.tensor.shape());
      std::copy(g.begin(), g.end(), host.begin() + (p.tensor.data() - net.params().data()));
    }
    grads.copy_from_host(host.data(), grads.numel());
    Tensor m = Tensor::zeros(net.params().shape(), Device::CPU);
    Tensor v = Tensor::zeros(net.params().shape(), Device::CPU);
    ds::AdamCounter counter(Device::CPU);  // advanced to PyTorch's state['step'] = 1 by adam_step
    ds::adam_step(net.params(), m, v, grads, ds::AdamConfig{}, counter);
    CHECK(counter.step() == 1);
    for (const ds::NamedTensor& p : net.parameters()) {
      const std::string name = "step1." + net_name + "." + p.name;
      const std::vector<float> torch = fixture_floats(name, p.tensor.shape());
      const std::vector<float> engine = p.tensor.to_host();
      const Difference d = difference(engine, torch);
      worst.see(d.normalised(), name);
      CHECK_MESSAGE(d.normalised() <= kAdamTolerance, d.describe(name + " after Adam on torch's gradients"));
      for (size_t i = 0; i < engine.size(); ++i)
        if (torch[i] != 0.f)
          worst_elementwise.see(std::fabs(double(engine[i]) - torch[i]) / std::fabs(double(torch[i])), name);
      // The step must have moved the weights at all (an Adam that does nothing would pass against init otherwise
      // only by luck: init and step1 differ by ~lr everywhere).
      const Difference moved = difference(engine, fixture_floats("init." + net_name + "." + p.name, p.tensor.shape()));
      CHECK_MESSAGE(moved.max_abs > 0.5 * ds::AdamConfig{}.lr, name << " did not move from init");
    }
  };
  auto G = loaded<ds::Generator>("init.netG.");
  auto D = loaded<ds::Discriminator>("init.netD.");
  check_net(*G, "netG");
  check_net(*D, "netD");
  worst.report();
  worst_elementwise.report();
}

// Six whole steps of the engine's own trajectory (never re-synchronised with PyTorch), compared after each one.
TEST_CASE("torch dcgan six steps: weights, BN running statistics, num_batches_tracked and losses") {
  auto G = loaded<ds::Generator>("init.netG.");
  auto D = loaded<ds::Discriminator>("init.netD.");
  ds::GanStepState st(*G, *D);
  const Tensor real = fixture_tensor("real", kImageShape);
  const ds::AdamConfig adam;
  const double weight_tolerance = kWeightToleranceInLr * adam.lr;

  Worst worst_weight{"weights after steps 1-6, max absolute error in units of lr"};
  Worst worst_stat{"BN running stats after steps 1-6, max-normalised"};
  Worst worst_loss{"losses and D outputs of steps 1-6, relative"};
  for (int t = 1; t <= kSteps; ++t) {
    const std::string step = "step" + std::to_string(t);
    const Tensor z = fixture_tensor("z." + std::to_string(t), kNoiseShape);
    ds::gan_step(*G, *D, st, real, z, adam);
    CHECK(st.stepD.step() == t);
    CHECK(st.stepG.step() == t);

    const std::vector<float> stats = st.stats.to_host();
    for (const StatSlot& s : kStatSlots) {
      const std::string name = step + "." + s.fixture_name;
      const double torch = fixture_floats(name, {1})[0];
      const double rel = std::fabs(stats.at(s.slot) - torch) / std::fabs(torch);
      worst_loss.see(rel, name);
      CHECK_MESSAGE(rel <= kLossGradTolerance,
                    name << ": engine " << stats.at(s.slot) << ", torch " << torch << ", relative " << sci(rel));
    }

    for (auto [net, net_name] : {std::pair<ds::Network*, std::string>{G.get(), "netG"}, {D.get(), "netD"}}) {
      for (const ds::NamedTensor& p : net->parameters()) {
        const std::string name = step + "." + net_name + "." + p.name;
        const Difference d = difference(p.tensor.to_host(), fixture_floats(name, p.tensor.shape()));
        worst_weight.see(d.max_abs, name);
        CHECK_MESSAGE(d.max_abs <= weight_tolerance,
                      (d.describe(name) + " (bound " + sci(weight_tolerance) + " absolute = 0.05 lr)"));
      }
      for (const ds::NamedTensor& s : net->state_tensors()) {
        if (s.name.find("running_") == std::string::npos) continue;
        const std::string name = step + "." + net_name + "." + s.name;
        const Difference d = difference(s.tensor.to_host(), fixture_floats(name, s.tensor.shape()));
        worst_stat.see(d.normalised(), name);
        CHECK_MESSAGE(d.normalised() <= kRunningStatTolerance, d.describe(name));
      }
      // D's batch norms see three batches per step (real, fake for D, fake for G), G's one.
      const int64_t per_step = net_name == "netD" ? 3 : 1;
      for (auto& [bn_name, count] : net->batches_tracked()) {
        const std::string name = step + "." + net_name + "." + bn_name;
        CHECK_MESSAGE(*count == fixture_int64(name), name << ": engine " << *count << ", torch " << fixture_int64(name));
        CHECK_MESSAGE(*count == per_step * t, name << ": engine " << *count << ", expected " << per_step * t);
      }
    }
  }
  worst_weight.value /= adam.lr;  // reported in units of lr
  worst_weight.report();
  worst_stat.report();
  worst_loss.report();
}
