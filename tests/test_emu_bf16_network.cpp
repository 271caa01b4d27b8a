// The `--precision bf16` network path (engine/nn/bf16_path.h) executed on the CPU: the same Bf16Path
// code the CUDA networks run, over a backend whose kernels are the kernels/ bf16 launchers executed by
// kernels/emu and whose convolutions are a CPU stand-in for cuDNN's bf16 calls (bf16 inputs read
// exactly, float accumulation, the output rounded to bf16 once: what cuDNN's bf16-data, float-compute
// configuration computes, up to the order of its float sums).
//
// Three kinds of check (D's Conv2d and G's ConvTranspose2d stages, train and eval), on awkward sizes (odd channel counts, a non-square image, batch 3):
//  - wiring, op by op: every buffer the step fills equals what the float32 CPU reference op computes
//    from the buffers the path handed it (the weight mirror = bf16(masters) bit for bit, the float
//    output = the last bf16 output exactly, the float master gradient = the float sum of the rounded
//    per-pass conv gradients, batch norm within one rounding of the reference on the same inputs);
//  - the launch log: two consecutive bf16 steps enqueue the same kernels with the same argument bytes
//    (so a CUDA graph replays them), with no host read, allocation or synchronisation (StepScope);
//  - end to end: one whole gan_step against the float32 CPU step, within R·u (tests/bf16_step_check.h).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/rng.h"
#include "engine/nn/bf16_path.h"
#include "engine/nn/conv_cpu_fast.h"
#include "engine/nn/cpu/batchnorm.h"
#include "engine/nn/dcgan.h"
#include "engine/train/trainer.h"
#include "kernels/batchnorm.h"
#include "kernels/bf16_cast.h"
#include "kernels/bf16_kernels.h"
#include "kernels/launch_log.h"
#include "tests/bf16_step_check.h"
#include "tests/bf16_util.h"
#include "tests/test_util.h"

using namespace ds;

namespace {

constexpr double kU = 1.0 / 256.0;

// kernels/emu for every element-wise kernel; host memory for every buffer.
class EmuBf16Backend final : public Bf16Backend {
 public:
  explicit EmuBf16Backend(const std::vector<Stage>& stages) {
    size_t ws = 0;
    for (const Stage& s : stages) {
      shapes_.push_back(s.geometry);
      ws = std::max(ws, batchnorm_workspace_bytes(s.geometry.K));
    }
    workspace_.assign(ws / sizeof(double) + 1, 0.0);
  }
  bf16* allocate(int64_t n) override {
    storage_.emplace_back(static_cast<size_t>(n), bf16{0});
    return storage_.back().data();
  }
  void cast_float_to_bf16(bf16* out, const float* in, int64_t n) override { kemu::cast_float_to_bf16(out, in, n, nullptr); }
  void cast_bf16_to_float(float* out, const bf16* in, int64_t n) override { kemu::cast_bf16_to_float(out, in, n, nullptr); }
  void accumulate_bf16_into_float(float* acc, const bf16* in, int64_t n) override {
    kemu::accumulate_bf16_into_float(acc, in, n, nullptr);
  }
  void activation_forward(Activation a, bf16* y, int64_t n) override {
    if (a == Activation::ReLU) kemu::relu_forward(y, y, n, nullptr);
    if (a == Activation::LeakyReLU) kemu::leaky_relu_forward(y, y, kLeakySlope, n, nullptr);
    if (a == Activation::Tanh) kemu::tanh_forward(y, y, n, nullptr);
  }
  void activation_backward(Activation a, bf16* d, const bf16* y, int64_t n) override {
    if (a == Activation::ReLU) kemu::relu_backward(d, d, y, n, nullptr);
    if (a == Activation::LeakyReLU) kemu::leaky_relu_backward(d, d, y, kLeakySlope, n, nullptr);
    if (a == Activation::Tanh) kemu::tanh_backward(d, d, y, n, nullptr);
  }
  void batchnorm_act_forward_train(bf16* y, Stage& s, const bf16* x, BnActivation act) override {
    const ConvShape& g = s.geometry;
    kemu::batchnorm_act_forward_train(y, s.saved_mean.data(), s.saved_invstd.data(), s.running_mean.data(),
                                      s.running_var.data(), workspace_.data(), x, s.gamma.data(), s.beta.data(), g.N,
                                      g.K, int64_t(g.out_h()) * g.out_w(), kBnMomentum, kBnEps, act, kLeakySlope, 0,
                                      nullptr);
  }
  void batchnorm_act_forward_eval(bf16* y, const Stage& s, const bf16* x, BnActivation act) override {
    const ConvShape& g = s.geometry;
    kemu::batchnorm_act_forward_eval(y, x, s.gamma.data(), s.beta.data(), s.running_mean.data(), s.running_var.data(),
                                     g.N, g.K, int64_t(g.out_h()) * g.out_w(), kBnEps, act, kLeakySlope, nullptr);
  }
  void batchnorm_act_backward(bf16* dx, Stage& s, const bf16* dy, const bf16* y, const bf16* x,
                              BnActivation act) override {
    const ConvShape& g = s.geometry;
    kemu::batchnorm_act_backward(dx, s.dgamma.data(), s.dbeta.data(), workspace_.data(), dy, y, x, s.gamma.data(),
                                 s.saved_mean.data(), s.saved_invstd.data(), g.N, g.K, int64_t(g.out_h()) * g.out_w(),
                                 act, kLeakySlope, 0, nullptr);
  }
  // The cuDNN stand-in: float convolution of the exact bf16 values, one rounding of the result.
  void conv_forward(size_t i, bf16* y, const bf16* x, const bf16* w) override {
    const ConvShape& g = shapes_.at(i);
    std::vector<float> out(shape_numel(conv_output_shape(g)));
    const std::vector<float> xf = widen(x, shape_numel(conv_input_shape(g))), wf = widen(w, weight_numel(g));
    if (g.transposed)
      cpu_fast::conv_transpose2d_forward(out.data(), xf.data(), wf.data(), g);
    else
      cpu_fast::conv2d_forward(out.data(), xf.data(), wf.data(), g);
    narrow(y, out);
  }
  void conv_backward_data(size_t i, bf16* dx, const bf16* dy, const bf16* w) override {
    const ConvShape& g = shapes_.at(i);
    std::vector<float> out(shape_numel(conv_input_shape(g)));
    const std::vector<float> dyf = widen(dy, shape_numel(conv_output_shape(g))), wf = widen(w, weight_numel(g));
    if (g.transposed)
      cpu_fast::conv_transpose2d_backward_data(out.data(), dyf.data(), wf.data(), g);
    else
      cpu_fast::conv2d_backward_data(out.data(), dyf.data(), wf.data(), g);
    narrow(dx, out);
  }
  void conv_backward_filter(size_t i, bf16* dw, const bf16* dy, const bf16* x) override {
    const ConvShape& g = shapes_.at(i);
    std::vector<float> out(weight_numel(g), 0.f);  // the CPU op accumulates; the bf16 call writes
    const std::vector<float> dyf = widen(dy, shape_numel(conv_output_shape(g)));
    const std::vector<float> xf = widen(x, shape_numel(conv_input_shape(g)));
    if (g.transposed)
      cpu_fast::conv_transpose2d_backward_filter(out.data(), dyf.data(), xf.data(), g);
    else
      cpu_fast::conv2d_backward_filter(out.data(), dyf.data(), xf.data(), g);
    narrow(dw, out);
    ++filter_calls;
  }
  int filter_calls = 0;

 private:
  static int64_t weight_numel(const ConvShape& g) { return shape_numel(conv_weight_shape(g)); }
  static std::vector<float> widen(const bf16* v, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) out[k] = bf16_to_float(v[k]);
    return out;
  }
  static void narrow(bf16* out, const std::vector<float>& v) {
    for (size_t k = 0; k < v.size(); ++k) out[k] = float_to_bf16(v[k]);
  }
  std::vector<ConvShape> shapes_;
  std::deque<std::vector<bf16>> storage_;  // deque: earlier buffers never move
  std::vector<double> workspace_;
};

ModelConfig awkward_config() {
  ModelConfig mc;
  mc.height = 16;
  mc.width = 32;  // non-square: G starts from a 4×8 map; 3 stages in each network
  mc.channels = 3;
  mc.nz = 7;
  mc.ngf = 5;  // odd channel counts: 10, 5 in G; 5, 10 in D
  mc.ndf = 5;
  return mc;
}
constexpr int64_t kBatch = 3;

std::vector<float> normals(int64_t n, uint32_t stream, float stddev) {
  std::vector<float> v(static_cast<size_t>(n));
  Philox(77, stream).fill_normal(v.data(), 0.f, stddev, n);
  return v;
}

template <class Net>
std::unique_ptr<Net> bf16_network(const ModelConfig& mc, EmuBf16Backend** backend = nullptr) {
  auto net = std::make_unique<Net>(mc, kBatch, Device::CPU);
  auto b = std::make_unique<EmuBf16Backend>(net->stages());
  if (backend) *backend = b.get();
  net->use_bf16(std::move(b));
  return net;
}

std::vector<float> widen(const bf16* v, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) out[k] = bf16_to_float(v[k]);
  return out;
}

}  // namespace

TEST_CASE("emu bf16 network: each buffer of D's forward and backward is what its op makes of the buffers it was handed") {
  const ModelConfig mc = awkward_config();
  EmuBf16Backend* backend = nullptr;
  auto D = bf16_network<Discriminator>(mc, &backend);
  D->init_weights(5, 1);
  const Bf16Path& path = *D->bf16_path();
  const std::vector<float> real = normals(kBatch * 3 * 16 * 32, 2, 0.5f);
  const Tensor x = Tensor::from_host(real, {kBatch, 3, 16, 32}, Device::CPU);
  D->zero_grad();
  D->forward(x, true);
  // The weight mirror and the input: bf16 of the float values, bit for bit.
  const std::vector<float> masters = D->params().to_host();
  CHECK(test::count_mismatches(widen(path.weights(), D->params().numel()), test::to_float(test::to_bf16(masters))) == 0);
  CHECK(test::count_mismatches(widen(path.input(), x.numel()), test::to_float(test::to_bf16(real))) == 0);
  // The float output is the last stage's bf16 output, exactly.
  std::vector<Stage>& st = D->stages();
  const auto& buf = path.buffers();
  CHECK(test::count_mismatches(D->output().to_host(), widen(buf.back().out, D->output().numel())) == 0);
  // Batch norm + LeakyReLU of the middle stage against the float reference on the same bf16 input:
  // one rounding of the stored output (≤ u·|ref|) plus the float-level difference of the split
  // reduction (the float emu tests' 1e-5 of the output's scale, carried through that rounding).
  {
    const Stage& s = st[1];
    REQUIRE(s.has_bn);
    const ConvShape& g = s.geometry;
    const int64_t n = s.out.numel(), HW = int64_t(g.out_h()) * g.out_w();
    const std::vector<float> pre = widen(buf[1].pre, n);
    std::vector<float> ref(n), mean(g.K), invstd(g.K), rm(g.K, 0.f), rv(g.K, 1.f);
    cpu::batchnorm_forward_train(ref.data(), mean.data(), invstd.data(), rm.data(), rv.data(), pre.data(),
                                 s.gamma.to_host().data(), s.beta.to_host().data(), g.N, g.K, HW, kBnMomentum, kBnEps);
    double scale = 0;
    for (float& v : ref) {
      v = v > 0 ? v : kLeakySlope * v;
      scale = std::max(scale, double(std::fabs(v)));
    }
    const std::vector<float> got = widen(buf[1].out, n);
    int64_t bad = 0;
    for (int64_t k = 0; k < n; ++k)
      bad += !(std::fabs(double(got[k]) - ref[k]) <= kU * std::fabs(ref[k]) + (1 + kU) * 1e-5 * scale);
    CHECK(bad == 0);
    CHECK(test::normalised_error(s.saved_mean.to_host(), mean, 1.0) < 1e-6);  // float statistics
  }
  // Backward with D's parameter gradients and d/d(input).
  const std::vector<float> dlog = normals(kBatch, 3, 0.3f);
  const Tensor dlogits = Tensor::from_host(dlog, D->output().shape(), Device::CPU);
  Tensor dinput = Tensor::zeros(x.shape(), Device::CPU);
  const int calls_before = backend->filter_calls;
  D->backward(dlogits, &dinput, true);
  CHECK(backend->filter_calls - calls_before == int(st.size()));  // one weight gradient per stage
  // The last stage has no activation: its dpre is bf16(dlogits).
  CHECK(test::count_mismatches(widen(buf.back().dpre, kBatch), test::to_float(test::to_bf16(dlog))) == 0);
  // Each master weight gradient = the float value of the bf16 gradient cuDNN would write from the
  // stage's dpre and input buffers (accumulated into zeros: exactly that value).
  for (size_t i = 0; i < st.size(); ++i) {
    CAPTURE(i);
    const ConvShape& g = st[i].geometry;
    const int64_t nw = st[i].dweight.numel();
    const std::vector<float> dy = widen(buf[i].dpre, st[i].out.numel());
    const std::vector<float> xi = i == 0 ? widen(path.input(), x.numel()) : widen(buf[i - 1].out, st[i - 1].out.numel());
    std::vector<float> dw(nw, 0.f);
    cpu_fast::conv2d_backward_filter(dw.data(), dy.data(), xi.data(), g);
    CHECK(test::count_mismatches(st[i].dweight.to_host(), test::to_float(test::to_bf16(dw))) == 0);
  }
  // d/d(input): the float copy of a bf16 gradient (every value representable).
  const std::vector<float> din = dinput.to_host();
  CHECK(test::count_mismatches(din, test::to_float(test::to_bf16(din))) == 0);
  double din_max = 0;
  for (float v : din) din_max = std::max(din_max, double(std::fabs(v)));
  CHECK(din_max > 0);
  // A second pass ACCUMULATES into the float master gradient: doubled, in float (exact: v + v).
  const std::vector<float> once = D->grads().to_host();
  D->forward(x, true);
  D->backward(dlogits, nullptr, true);
  const std::vector<float> twice = D->grads().to_host();
  std::vector<float> doubled(once.size());
  for (size_t k = 0; k < once.size(); ++k) doubled[k] = once[k] + once[k];
  // Conv gradients double exactly (same inputs, same rounding); BN's dgamma/dbeta too (same sums added twice).
  CHECK(test::count_mismatches(twice, doubled) == 0);
}

TEST_CASE("emu bf16 network: two bf16 steps enqueue the same launches with the same arguments, no host access inside") {
  const ModelConfig mc = awkward_config();
  auto G = bf16_network<Generator>(mc);
  auto D = bf16_network<Discriminator>(mc);
  G->init_weights(5, 0);
  D->init_weights(5, 1);
  GanStepState st(*G, *D);
  const Tensor real = Tensor::from_host(normals(kBatch * 3 * 16 * 32, 4, 0.5f), {kBatch, 3, 16, 32}, Device::CPU);
  const Tensor z = Tensor::from_host(normals(kBatch * 7, 5, 1.f), {kBatch, 7, 1, 1}, Device::CPU);
  const AdamConfig adam;
  launch_log::LaunchLog logs[2];
  for (int k = 0; k < 2; ++k) {
    launch_log::LaunchLogScope record(logs[k]);
    launch_log::StepScope no_host_access;
    gan_step(*G, *D, st, real, z, adam);
  }
  REQUIRE(!logs[0].records.empty());
  INFO(launch_log::first_difference(logs[0], logs[1]));
  CHECK(logs[0].records == logs[1].records);
  // The bf16 step is made of the bf16 kernels: one master → mirror cast per network use (D: 3, G: 1),
  // one accumulation per conv weight gradient (D: 2 passes, G: 1, three stages each).
  int casts = 0, accumulations = 0;
  for (const auto& r : logs[0].records) {
    casts += r.what.find("cast_float_to_bf16") != std::string::npos;
    accumulations += r.what.find("accumulate_bf16_into_float") != std::string::npos;
  }
  // Casts: per forward the mirror and the input (4 forwards: 8), per backward the incoming gradient (4).
  CHECK(casts == 12);
  CHECK(accumulations == 3 * 2 + 3 * 1);
}

TEST_CASE("emu bf16 network: one gan_step against the float32 CPU step, within R roundings of 2^-8") {
  const ModelConfig mc = awkward_config();
  Generator Gc(mc, kBatch, Device::CPU);
  Discriminator Dc(mc, kBatch, Device::CPU);
  Gc.init_weights(9, 0);
  Dc.init_weights(9, 1);
  auto Gb = bf16_network<Generator>(mc);
  auto Db = bf16_network<Discriminator>(mc);
  const test::Bf16StepResult r = test::bf16_step_against_float(
      Gc, Dc, *Gb, *Db, normals(kBatch * 3 * 16 * 32, 6, 0.5f), normals(kBatch * 7, 7, 1.f));
  MESSAGE("bf16 step vs float32: statistics " << r.stats_error << " (bound " << r.stats_bound << "), D gradient "
                                               << r.grad_error[0] << " (" << r.grad_bound[0] << "), G gradient "
                                               << r.grad_error[1] << " (" << r.grad_bound[1] << ")");
  test::check_bf16_step(r);
  // And not trivially: bf16 does change the gradients (a path that silently ran float32 would not).
  CHECK(r.grad_error[0] > 0);
  CHECK(r.grad_error[1] > 0);
}

TEST_CASE("emu bf16 network: G's transposed convolutions are wired the same way, and its eval forward (samples) too") {
  const ModelConfig mc = awkward_config();
  auto G = bf16_network<Generator>(mc);
  G->init_weights(5, 0);
  Generator Gc(mc, kBatch, Device::CPU);
  const Bf16Path& path = *G->bf16_path();
  const auto& buf = path.buffers();
  std::vector<Stage>& st = G->stages();
  const Tensor z = Tensor::from_host(normals(kBatch * 7, 11, 1.f), {kBatch, 7, 1, 1}, Device::CPU);
  G->zero_grad();
  G->forward(z, true);
  const Tensor dimg = Tensor::from_host(normals(G->output().numel(), 12, 0.1f), G->output().shape(), Device::CPU);
  G->backward(dimg, nullptr, true);
  for (size_t i = 0; i < st.size(); ++i) {
    CAPTURE(i);
    const std::vector<float> dy = widen(buf[i].dpre, st[i].out.numel());
    const std::vector<float> xi = i == 0 ? widen(path.input(), z.numel()) : widen(buf[i - 1].out, st[i - 1].out.numel());
    std::vector<float> dw(st[i].dweight.numel(), 0.f);
    cpu_fast::conv_transpose2d_backward_filter(dw.data(), dy.data(), xi.data(), st[i].geometry);
    CHECK(test::count_mismatches(st[i].dweight.to_host(), test::to_float(test::to_bf16(dw))) == 0);
  }
  // Eval (running statistics, as the sample grids use): the float output against the float32 network's
  // within the forward budget of tests/bf16_step_check.h (4 roundings per stage), max-normalised (the
  // freshly initialised G's images are small, so a floor of 1 would judge nothing).
  Gc.copy_state_from(*G);  // the running statistics G's training forward just moved
  G->forward(z, false);
  Gc.forward(z, false);
  const double err = test::normalised_error(G->output().to_host(), Gc.output().to_host(), 0.0);
  MESSAGE("bf16 G eval forward vs float32: " << err << " (budget " << 4 * st.size() * kU << ")");
  CHECK(err <= 4 * double(st.size()) * kU);
  CHECK(err > 0);
}
