// The training-step benchmark: one D+G step of PyTorch's examples/dcgan (engine/train/trainer.h gan_step) timed
// after warm-up, its analytic FLOP count with every input of the formula, and a per-layer table of
// forward / backward-data / backward-weight and the element-wise parts, each op timed alone on the
// network's own buffers and multiplied by how often one step runs it.
#include <algorithm>
#include <stdexcept>

#include "bench/bench.h"
#include "engine/core/allocation_stats.h"
#include "engine/core/cuda_context.h"
#include "engine/nn/dcgan.h"
#include "engine/core/rng.h"
#include "engine/train/step_graph.h"
#include "engine/train/trainer.h"

namespace ds::bench {

namespace {

std::vector<float> normal_values(int64_t n, uint32_t stream) {
  std::vector<float> v(static_cast<size_t>(n));
  Philox(3, stream).fill_normal(v.data(), 0.f, 1.f, n);
  return v;
}

// Multiply-adds of one pass (forward, backward-data or backward-weight: all three are the same product)
// for one image: every output of the Conv2d (for a ConvTranspose2d: every input of the Conv2d it is the
// adjoint of, i.e. its own input positions) sums C·R·S (resp. K·R·S) products.
int64_t macs_per_image(const ConvShape& g) {
  const int64_t positions = g.transposed ? int64_t(g.H) * g.W : int64_t(g.out_h()) * g.out_w();
  return int64_t(g.K) * g.C * g.R * g.S * positions;
}

// How often one gan_step runs each part of a stage (see gan_step: D forward on real, on G(z) and
// again for G's loss; D's weight gradients in the first two; D's input gradient only in G's pass).
struct PassCounts {
  int forward, backward_data, backward_filter, bn_forward, bn_backward, act_forward, act_backward;
};
PassCounts pass_counts(bool discriminator, size_t stage, bool has_bn, bool has_act) {
  PassCounts c{};
  if (discriminator) {
    c.forward = 3;
    c.backward_filter = 2;
    c.backward_data = stage == 0 ? 1 : 3;
    c.bn_forward = c.bn_backward = has_bn ? 3 : 0;
    c.act_forward = c.act_backward = has_act ? 3 : 0;
  } else {
    c.forward = 1;
    c.backward_filter = 1;
    c.backward_data = stage == 0 ? 0 : 1;
    c.bn_forward = c.bn_backward = has_bn ? 1 : 0;
    c.act_forward = c.act_backward = has_act ? 1 : 0;
  }
  return c;
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::ReLU: return "relu";
    case Activation::LeakyReLU: return "leaky_relu";
    case Activation::Tanh: return "tanh";
    case Activation::None: break;
  }
  return "none";
}

std::string shape_text(const ConvShape& g) {
  return std::string(g.transposed ? "ConvTranspose2d" : "Conv2d") + " " + std::to_string(g.C) + "->" +
         std::to_string(g.K) + " " + std::to_string(g.R) + "x" + std::to_string(g.S) + "/" +
         std::to_string(g.stride_h) + " pad " + std::to_string(g.pad_h) + ", " + std::to_string(g.H) + "x" +
         std::to_string(g.W) + " -> " + std::to_string(g.out_h()) + "x" + std::to_string(g.out_w());
}

struct Totals {
  double conv_forward = 0, conv_backward_data = 0, conv_backward_filter = 0, batchnorm = 0, activations = 0;
};

// The per-layer rows of one network; adds each part's per-step milliseconds to `totals`.
nlohmann::json layer_table(Network& net, bool discriminator, const Tensor& input, Tensor& input_grad, int reps,
                           const std::function<void()>& sync, Totals& totals) {
  nlohmann::json rows = nlohmann::json::array();
  auto& stages = net.stages();
  for (size_t i = 0; i < stages.size(); ++i) {
    Stage& s = stages[i];
    const Tensor& x = i == 0 ? input : stages[i - 1].out;
    Tensor& dx = i == 0 ? input_grad : stages[i - 1].dout;
    const bool has_act = s.activation != Activation::None;
    const PassCounts c = pass_counts(discriminator, i, s.has_bn, has_act);
    const double flops = 2.0 * double(macs_per_image(s.geometry)) * s.geometry.N;
    auto t = [&](const std::function<void()>& fn) { return time_runs(1, reps, fn, sync).median_ms; };
    const double fwd = t([&] { s.conv->forward(s.pre, x, s.weight); });
    const double bwd_data = t([&] { s.conv->backward_data(dx, s.dpre, s.weight); });
    const double bwd_filter = t([&] { s.conv->backward_filter(s.dweight, s.dpre, x); });
    nlohmann::json row = {
        {"net", discriminator ? "D" : "G"},
        {"stage", i},
        {"layer", shape_text(s.geometry)},
        {"batch", s.geometry.N},
        {"flops_per_pass", flops},
        {"forward_ms", fwd},
        {"backward_data_ms", bwd_data},
        {"backward_filter_ms", bwd_filter},
        {"forward_flop_per_s", flops / (fwd * 1e-3)},
        {"backward_data_flop_per_s", flops / (bwd_data * 1e-3)},
        {"backward_filter_flop_per_s", flops / (bwd_filter * 1e-3)},
        {"activation", activation_name(s.activation)},
        {"runs_per_step", {{"forward", c.forward}, {"backward_data", c.backward_data},
                           {"backward_filter", c.backward_filter}, {"batchnorm_forward", c.bn_forward},
                           {"batchnorm_backward", c.bn_backward}, {"activation_forward", c.act_forward},
                           {"activation_backward", c.act_backward}}},
    };
    totals.conv_forward += c.forward * fwd;
    totals.conv_backward_data += c.backward_data * bwd_data;
    totals.conv_backward_filter += c.backward_filter * bwd_filter;
    if (s.has_bn) {
      // The step runs batch norm and its activation as one op (fused kernels on CUDA): timed as such,
      // and the activation is not timed again below for these stages.
      const BnActivation act = s.activation == Activation::ReLU        ? BnActivation::ReLU
                               : s.activation == Activation::LeakyReLU ? BnActivation::LeakyReLU
                                                                       : BnActivation::None;
      const double bn_f = t([&] {
        batchnorm_activation_forward_train(s.out, s.saved_mean, s.saved_invstd, s.running_mean, s.running_var, s.pre,
                                           s.gamma, s.beta, kBnMomentum, kBnEps, act, kLeakySlope);
      });
      const double bn_b = t([&] {  // dout is the op's scratch: its values drift between runs, its cost does not
        batchnorm_activation_backward(s.dpre, s.dgamma, s.dbeta, s.dout, s.out, s.pre, s.gamma, s.saved_mean,
                                      s.saved_invstd, act, kLeakySlope);
      });
      row["batchnorm_forward_ms"] = bn_f;
      row["batchnorm_backward_ms"] = bn_b;
      row["batchnorm_includes_activation"] = activation_name(s.activation);
      totals.batchnorm += c.bn_forward * bn_f + c.bn_backward * bn_b;
    }
    if (has_act && !s.has_bn) {
      const double a_f = t([&] { activation_forward(s.activation, s.out); });
      const double a_b = t([&] { activation_backward(s.activation, s.dout, s.dout, s.out); });
      row["activation_forward_ms"] = a_f;
      row["activation_backward_ms"] = a_b;
      totals.activations += c.act_forward * a_f + c.act_backward * a_b;
    }
    rows.push_back(row);
  }
  return rows;
}

// The FLOP count's inputs, printed and stored: per conv layer the multiply-adds per image of one pass
// and how many passes of each kind a step runs.
nlohmann::json flop_count(Network& G, Network& D, int64_t batch, double& flops_per_step) {
  nlohmann::json layers = nlohmann::json::array();
  flops_per_step = 0;
  for (int net = 0; net < 2; ++net) {
    Network& n = net == 0 ? D : G;
    for (size_t i = 0; i < n.stages().size(); ++i) {
      const Stage& s = n.stages()[i];
      const PassCounts c = pass_counts(net == 0, i, s.has_bn, s.activation != Activation::None);
      const int passes = c.forward + c.backward_data + c.backward_filter;
      const int64_t macs = macs_per_image(s.geometry);
      flops_per_step += 2.0 * double(macs) * double(batch) * passes;
      layers.push_back({{"net", net == 0 ? "D" : "G"}, {"stage", i}, {"layer", shape_text(s.geometry)},
                        {"macs_per_image_per_pass", macs}, {"passes_per_step", passes}});
    }
  }
  return {{"formula",
           "sum over conv layers of 2 * batch * macs_per_image_per_pass * passes_per_step; macs_per_image = "
           "K*C*R*S*(output positions of a Conv2d, input positions of a ConvTranspose2d); passes = forward + "
           "backward-data + backward-weight runs in one D+G step; element-wise work (BN, activations, loss, "
           "Adam) not counted"},
          {"batch", batch},
          {"layers", layers}};
}

}  // namespace

std::vector<std::string> config_names() { return {"dcgan64", "mel128", "mel128x512"}; }

GanConfig named_config(const std::string& name) {
  GanConfig c;
  c.name = name;
  if (name == "dcgan64") {  // PyTorch's examples/dcgan defaults
    c.height = c.width = 64;
    c.channels = 3;
  } else if (name == "mel128") {  // the seed layout: 128 mel bands resized to 128 frames
    c.height = c.width = 128;
    c.channels = 1;
  } else if (name == "mel128x512") {  // the default mel layout: 128 bands × 512 frames
    c.height = 128;
    c.width = 512;
    c.channels = 1;
  } else {
    throw std::invalid_argument("--config " + name + ": expected one of dcgan64, mel128, mel128x512");
  }
  return c;
}

nlohmann::json bench_gan(const GanConfig& cfg, const GanRunOptions& opt) {
  const Device dev = opt.device;
  ModelConfig mc;
  mc.height = cfg.height;
  mc.width = cfg.width;
  mc.channels = cfg.channels;
  mc.nz = cfg.nz;
  mc.ngf = cfg.ngf;
  mc.ndf = cfg.ndf;
  mc.validate();
  std::function<void()> sync;
  size_t free_before = 0, free_after = 0, total = 0;
  if (dev == Device::CUDA) {
    CudaContext& ctx = CudaContext::get();
    sync = [&ctx] { ctx.synchronize(); };
    ctx.synchronize();
    DS_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
  } else {
    reset_peak_rss();
  }
  reset_allocation_peak(dev);
  const int64_t engine_before = allocation_stats(dev).live;

  Generator G(mc, cfg.batch, dev);
  Discriminator D(mc, cfg.batch, dev);
  G.init_weights(1, 0);
  D.init_weights(1, 1);
  GanStepState st(G, D);
  // Real batch: uniform-ish values in [−1, 1] shaped like a dataset batch (the step's cost does not
  // depend on them); z: the standard normal noise of the example.
  std::vector<float> real_host = normal_values(cfg.batch * cfg.channels * cfg.height * cfg.width, 7);
  for (float& v : real_host) v = std::clamp(v * 0.5f, -1.f, 1.f);
  Tensor real = Tensor::from_host(real_host, {cfg.batch, cfg.channels, cfg.height, cfg.width}, dev);
  Tensor z = Tensor::from_host(normal_values(cfg.batch * cfg.nz, 8), {cfg.batch, cfg.nz, 1, 1}, dev);
  const AdamConfig adam;

  // CUDA: as train runs it, the step captured once (the first warm-up step eager, the second captured)
  // and replayed; the buffers never move here, so the fingerprint is empty (the workspace is still checked).
  CudaStepGraph graph(dev == Device::CUDA && opt.cuda_graph, false);
  auto one_step = [&] {
    if (dev == Device::CUDA)
      graph.run([&] { gan_step(G, D, st, real, z, adam); }, G, D, st, {});
    else
      gan_step(G, D, st, real, z, adam);
  };
  const Timing step = time_runs(opt.warmup_steps, opt.timed_steps, one_step, sync);
  const double step_s = step.median_ms * 1e-3;

  nlohmann::json memory;
  // What the engine itself asked for (engine/core/allocation_stats.h): with bf16 this is the bf16 path's
  // buffers and the float32 masters, gradients, Adam state and boundary tensors, no float32 activations.
  const int64_t engine_peak = allocation_stats(dev).peak - engine_before;
  if (dev == Device::CUDA) {
    DS_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
    // Every buffer is allocated when the model is built, so what the process took since is its peak.
    memory = {{"peak_device_bytes", int64_t(free_before) - int64_t(free_after)},
              {"what", "cudaMemGetInfo free before building G and D minus free after the timed steps"},
              {"engine_peak_bytes", engine_peak},
              {"engine_what", "the most the engine's tensors, device buffers and workspace held at once from "
                              "building G and D to the end of the timed steps (no library handles)"}};
  } else {
    memory = {{"peak_rss_bytes", peak_rss_bytes()},
              {"what", "VmHWM of the process, reset before building G and D, read after the timed steps"},
              {"engine_peak_bytes", engine_peak},
              {"engine_what", "the most the engine's tensors held at once from building G and D to the end of "
                              "the timed steps"}};
  }

  double flops_per_step = 0;
  nlohmann::json flops = flop_count(G, D, cfg.batch, flops_per_step);

  // Per-layer table, on the buffers the step just filled (skipped with layer_reps 0, and for bf16
  // networks: they have no float32 conv plans or activation buffers to time).
  Totals totals;
  nlohmann::json layers = nlohmann::json::array(), breakdown;
  const std::string layers_skipped =
      opt.layer_reps > 0 && G.bf16()
          ? "bf16: the table times float32 conv plans and buffers, which a bf16 network does not build"
          : "";
  if (opt.layer_reps > 0 && !G.bf16()) {
    Tensor d_input_grad = Tensor::zeros(real.shape(), dev), g_input_grad = Tensor::zeros(z.shape(), dev);
    layers = layer_table(D, true, real, d_input_grad, opt.layer_reps, sync, totals);
    for (auto& row : layer_table(G, false, z, g_input_grad, opt.layer_reps, sync, totals)) layers.push_back(row);
    auto t = [&](const std::function<void()>& fn) { return time_runs(1, opt.layer_reps, fn, sync).median_ms; };
    Tensor loss = Tensor::zeros({1}, dev), prob = Tensor::zeros({1}, dev);
    const double loss_ms = t([&] { bce_with_logits(st.dlogits, loss, prob, D.output(), 1.f); });
    const double adam_d_ms = t([&] { adam_step(D.params(), st.mD, st.vD, D.grads(), adam, st.stepD); });
    const double adam_g_ms = t([&] { adam_step(G.params(), st.mG, st.vG, G.grads(), adam, st.stepG); });
    const double zero_grad_ms = t([&] { D.zero_grad(); G.zero_grad(); });
    const double parts = totals.conv_forward + totals.conv_backward_data + totals.conv_backward_filter +
                         totals.batchnorm + totals.activations + 3 * loss_ms + adam_d_ms + adam_g_ms + zero_grad_ms;
    breakdown = {{"what", "each op timed alone (median of layer_reps) times its runs per step"},
                 {"layer_reps", opt.layer_reps},
                 {"conv_forward", totals.conv_forward},
                 {"conv_backward_data", totals.conv_backward_data},
                 {"conv_backward_filter", totals.conv_backward_filter},
                 {"batchnorm", totals.batchnorm},
                 {"activations", totals.activations},
                 {"loss", 3 * loss_ms},
                 {"adam", adam_d_ms + adam_g_ms},
                 {"zero_grad", zero_grad_ms},
                 {"sum_of_parts", parts},
                 {"measured_step", step.median_ms}};
  }

  const double achieved = flops_per_step / step_s;
  nlohmann::json out = {
      {"name", cfg.name},
      {"device", device_name(dev)},
      {"cuda_graph", dev == Device::CUDA && opt.cuda_graph && !graph.failed()},
      {"threads", opt.threads},
      {"batch", cfg.batch},
      {"height", cfg.height},
      {"width", cfg.width},
      {"channels", cfg.channels},
      {"nz", cfg.nz},
      {"ngf", cfg.ngf},
      {"ndf", cfg.ndf},
      {"warmup_steps", opt.warmup_steps},
      {"timed_steps", opt.timed_steps},
      {"images_per_s", double(cfg.batch) / step_s},
      {"step_ms", step.to_json()},
      {"flops_per_step", flops_per_step},
      {"flops_per_image", flops_per_step / double(cfg.batch)},
      {"flop_count", flops},
      {"achieved_flop_per_s", achieved},
      {"matrix_peak_flop_per_s", opt.matrix_peak_flops},
      {"fraction_of_matrix_peak", opt.matrix_peak_flops > 0 ? achieved / opt.matrix_peak_flops : 0.0},
      {"memory", memory},
      {"layers", layers},
      {"step_breakdown_ms", breakdown},
      {"layers_skipped", layers_skipped},
  };
  return out;
}

}  // namespace ds::bench
