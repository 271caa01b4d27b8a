// DCGAN generator/discriminator: architecture from the image size, buffers, forward and the
// hand-derived backward chain (each op's backward lives in engine/ops).
#include "engine/nn/dcgan.h"

#include <cmath>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/core/precision.h"
#include "engine/core/rng.h"
#include "engine/nn/bf16_path.h"

namespace ds {


bool is_four_times_power_of_two(int64_t v) {
  if (v < 4 || v % 4 != 0) return false;
  const int64_t q = v / 4;
  return (q & (q - 1)) == 0;
}

int64_t ModelConfig::layers() const {
  int64_t m = std::min(height, width), l = 0;
  while (m > 4) {
    m /= 2;
    ++l;
  }
  return l;
}

void ModelConfig::validate() const {
  if (!is_four_times_power_of_two(height) || !is_four_times_power_of_two(width))
    throw std::invalid_argument("image size " + std::to_string(height) + "x" + std::to_string(width) +
                                ": each side must be 4*2^k (4, 8, 16, 32, 64, 128, 256, 512, ...)");
  if (layers() < 1)
    throw std::invalid_argument("image size " + std::to_string(height) + "x" + std::to_string(width) +
                                ": the smaller side must be at least 8");
  if (channels != 1 && channels != 3)
    throw std::invalid_argument("channels = " + std::to_string(channels) + ": expected 1 or 3");
  if (nz < 1) throw std::invalid_argument("--nz must be >= 1");
  if (ngf < 1) throw std::invalid_argument("--ngf must be >= 1");
  if (ndf < 1) throw std::invalid_argument("--ndf must be >= 1");
}

std::string ModelConfig::to_json() const {
  nlohmann::json j = {{"height", height}, {"width", width}, {"channels", channels},
                      {"nz", nz},         {"ngf", ngf},     {"ndf", ndf}};
  return j.dump();
}

ModelConfig ModelConfig::from_json(const std::string& text) {
  const auto j = nlohmann::json::parse(text);
  ModelConfig c;
  c.height = j.at("height");
  c.width = j.at("width");
  c.channels = j.at("channels");
  c.nz = j.at("nz");
  c.ngf = j.at("ngf");
  c.ndf = j.at("ndf");
  return c;
}

Network::Network(Device device, int64_t batch, Bf16BackendFactory bf16)
    : device_(device), batch_(batch), bf16_factory_(std::move(bf16)) {}
Network::~Network() = default;

void Network::use_bf16(std::unique_ptr<Bf16Backend> backend) {
  release_float_activations();
  bf16_ = std::make_unique<Bf16Path>(std::move(backend), stages_, params_.numel());
}

void Network::release_float_activations() {
  for (size_t i = 0; i < stages_.size(); ++i) {
    Stage& s = stages_[i];
    const Shape shape = conv_output_shape(s.geometry);
    const bool last = i + 1 == stages_.size();
    s.conv.reset();  // its cuDNN float32 plans (CUDA) go with it
    if (!last) s.out = Tensor::view(nullptr, shape, device_);
    s.pre = s.has_bn ? Tensor::view(nullptr, shape, device_) : s.out;
    s.dout = Tensor::view(nullptr, shape, device_);
    s.dpre = s.dout;
  }
}

void Network::add_stage(const ConvShape& g, bool bn, Activation act, int seq_conv, int seq_bn) {
  Stage s;
  s.geometry = g;
  s.has_bn = bn;
  s.activation = act;
  s.seq_conv = seq_conv;
  s.seq_bn = seq_bn;
  stages_.push_back(std::move(s));
}

void Network::finish() {
  // Parameter order = PyTorch's parameters(): per module in Sequential order, weight then bias, each
  // at the next multiple of kParamAlignFloats.
  auto padded = [](int64_t n) { return (n + kParamAlignFloats - 1) / kParamAlignFloats * kParamAlignFloats; };
  int64_t total = 0;
  for (const Stage& s : stages_) {
    total += padded(shape_numel(conv_weight_shape(s.geometry)));
    if (s.has_bn) total += 2 * padded(s.geometry.K);
  }
  params_ = Tensor::zeros({total}, device_);  // zeros: the padding starts (and stays) zero
  grads_ = Tensor::zeros({total}, device_);
  int64_t off = 0;
  auto take = [&](const Shape& shape, const std::string& name, Tensor& p, Tensor& g) {
    p = Tensor::view(params_.data() + off, shape, device_);
    g = Tensor::view(grads_.data() + off, shape, device_);
    parameters_.push_back({name, p});
    offsets_.push_back(off);
    off += padded(shape_numel(shape));
  };
  for (Stage& s : stages_) {
    const ConvShape& g = s.geometry;
    take(conv_weight_shape(g), "main." + std::to_string(s.seq_conv) + ".weight", s.weight, s.dweight);
    if (s.has_bn) {
      const std::string bn = "main." + std::to_string(s.seq_bn) + ".";
      take({g.K}, bn + "weight", s.gamma, s.dgamma);
      take({g.K}, bn + "bias", s.beta, s.dbeta);
      s.running_mean = Tensor::zeros({int64_t(g.K)}, device_);
      s.running_var = Tensor::zeros({int64_t(g.K)}, device_);
      s.running_var.fill(1.f);
      s.saved_mean = Tensor::zeros({int64_t(g.K)}, device_);
      s.saved_invstd = Tensor::zeros({int64_t(g.K)}, device_);
    }
  }
  if (!bf16_factory_ && device_ == Device::CUDA && bf16_networks()) bf16_factory_ = make_cuda_bf16_backend;
  if (bf16_factory_) {
    // `--precision bf16`: the path keeps its activations in bf16 and builds its own bf16 plans and
    // workspace; of the float32 buffers only the output (the float boundary) is allocated.
    // The batch-norm workspace is reserved by the CUDA backend itself.
    stages_.back().out = Tensor::zeros(conv_output_shape(stages_.back().geometry), device_);
    release_float_activations();
    bf16_ = std::make_unique<Bf16Path>(bf16_factory_(stages_), stages_, params_.numel());
    return;
  }
  for (Stage& s : stages_) {
    const ConvShape& g = s.geometry;
    s.conv = std::make_unique<ConvOp>(g, device_);
    if (s.has_bn) reserve_batchnorm_workspace(g.K, device_);  // the BN reduction's partials: never grown in a step
    s.pre = Tensor::zeros(conv_output_shape(g), device_);
    s.dout = Tensor::zeros(conv_output_shape(g), device_);
    if (s.has_bn) {
      s.out = Tensor::zeros(conv_output_shape(g), device_);
      s.dpre = Tensor::zeros(conv_output_shape(g), device_);
    } else {
      s.out = s.pre;
      s.dpre = s.dout;
    }
  }
}

int64_t Network::packed_parameter_count() const {
  int64_t n = 0;
  for (const NamedTensor& p : parameters_) n += p.tensor.numel();
  return n;
}

std::vector<float> Network::packed(const Tensor& flat) const {
  if (flat.numel() != params_.numel())
    throw std::invalid_argument("Network::packed: " + shape_str(flat.shape()) + " is not laid out like the parameters " +
                                shape_str(params_.shape()));
  const std::vector<float> all = flat.to_host();
  std::vector<float> out;
  out.reserve(static_cast<size_t>(packed_parameter_count()));
  for (size_t i = 0; i < parameters_.size(); ++i)
    out.insert(out.end(), all.begin() + offsets_[i], all.begin() + offsets_[i] + parameters_[i].tensor.numel());
  return out;
}

void Network::unpack(Tensor& flat, const float* packed, int64_t count) const {
  if (flat.numel() != params_.numel() || count != packed_parameter_count())
    throw std::invalid_argument("Network::unpack: " + std::to_string(count) + " packed values into " +
                                shape_str(flat.shape()) + ", expected " + std::to_string(packed_parameter_count()) +
                                " into " + shape_str(params_.shape()));
  int64_t from = 0;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const int64_t n = parameters_[i].tensor.numel();
    Tensor::view(flat.data() + offsets_[i], {n}, flat.device()).copy_from_host(packed + from, n);
    from += n;
  }
}

std::vector<NamedTensor> Network::state_tensors() const {
  std::vector<NamedTensor> out;
  for (const Stage& s : stages_) {
    out.push_back({"main." + std::to_string(s.seq_conv) + ".weight", s.weight});
    if (s.has_bn) {
      const std::string bn = "main." + std::to_string(s.seq_bn) + ".";
      out.push_back({bn + "weight", s.gamma});
      out.push_back({bn + "bias", s.beta});
      out.push_back({bn + "running_mean", s.running_mean});
      out.push_back({bn + "running_var", s.running_var});
    }
  }
  return out;
}

std::vector<std::pair<std::string, int64_t*>> Network::batches_tracked() {
  std::vector<std::pair<std::string, int64_t*>> out;
  for (Stage& s : stages_)
    if (s.has_bn) out.push_back({"main." + std::to_string(s.seq_bn) + ".num_batches_tracked", &s.num_batches_tracked});
  return out;
}

void Network::init_weights(uint64_t seed, uint32_t stream) {
  Philox rng(seed, stream);
  for (Stage& s : stages_) {
    std::vector<float> w(s.weight.numel());
    rng.fill_normal(w.data(), 0.f, 0.02f, static_cast<int64_t>(w.size()));
    s.weight.copy_from_host(w.data(), s.weight.numel());
    if (s.has_bn) {
      std::vector<float> gamma(s.gamma.numel());
      rng.fill_normal(gamma.data(), 1.f, 0.02f, static_cast<int64_t>(gamma.size()));
      s.gamma.copy_from_host(gamma.data(), s.gamma.numel());
      s.beta.fill(0.f);
      s.running_mean.fill(0.f);
      s.running_var.fill(1.f);
      s.num_batches_tracked = 0;
    }
  }
}

void Network::copy_state_from(Network& other) {
  if (other.params_.numel() != params_.numel() || other.stages_.size() != stages_.size())
    throw std::invalid_argument("copy_state_from: networks of different architectures");
  params_.copy_from(other.params_);
  for (size_t i = 0; i < stages_.size(); ++i) {
    if (!stages_[i].has_bn) continue;
    stages_[i].running_mean.copy_from(other.stages_[i].running_mean);
    stages_[i].running_var.copy_from(other.stages_[i].running_var);
    stages_[i].num_batches_tracked = other.stages_[i].num_batches_tracked;
  }
}

void activation_forward(Activation a, Tensor& y) {
  switch (a) {
    case Activation::ReLU: relu_forward(y, y); break;
    case Activation::LeakyReLU: leaky_relu_forward(y, y, kLeakySlope); break;
    case Activation::Tanh: tanh_forward(y, y); break;
    case Activation::None: break;
  }
}
// DCGAN: ReLU in G, LeakyReLU in D.
BnActivation bn_activation(Activation a) {
  switch (a) {
    case Activation::ReLU: return BnActivation::ReLU;
    case Activation::LeakyReLU: return BnActivation::LeakyReLU;
    case Activation::None: return BnActivation::None;
    case Activation::Tanh: break;
  }
  throw std::invalid_argument("a batch-norm stage with Tanh: no fused kernel for it");
}
// dx written from dy and the forward output y; returns the tensor that holds d/d(act input).
Tensor activation_backward(Activation a, Tensor& dx, const Tensor& dy, const Tensor& y) {
  switch (a) {
    case Activation::ReLU: relu_backward(dx, dy, y); return dx;
    case Activation::LeakyReLU: leaky_relu_backward(dx, dy, y, kLeakySlope); return dx;
    case Activation::Tanh: tanh_backward(dx, dy, y); return dx;
    case Activation::None: break;
  }
  return dy;
}

void Network::forward(const Tensor& input, bool train) {
  if (input.shape() != conv_input_shape(stages_.front().geometry))
    throw std::invalid_argument("network input " + shape_str(input.shape()) + ", expected " +
                                shape_str(conv_input_shape(stages_.front().geometry)));
  input_ = &input;
  if (bf16_) {
    if (observer_)
      throw std::invalid_argument("train --dump: the per-module dump needs --precision tf32 or fp32 (bf16 fuses "
                                  "every batch norm with its activation)");
    bf16_->forward(stages_, params_.data(), input, train);
    return;
  }
  if (observer_) {
    observer_->begin(*this, false);
    observer_->observe(*this, 0, StageModule::Input, false, input);
  }
  const Tensor* x = &input;
  for (size_t i = 0; i < stages_.size(); ++i) {
    Stage& s = stages_[i];
    s.conv->forward(s.pre, *x, s.weight);
    if (observer_) observer_->observe(*this, int(i), StageModule::Conv, false, s.pre);
    if (s.has_bn && !observer_) {  // batch norm and its activation in one op (fused kernels on CUDA)
      if (train) {
        batchnorm_activation_forward_train(s.out, s.saved_mean, s.saved_invstd, s.running_mean, s.running_var, s.pre,
                                           s.gamma, s.beta, kBnMomentum, kBnEps, bn_activation(s.activation),
                                           kLeakySlope);
        ++s.num_batches_tracked;
      } else {
        batchnorm_activation_forward_eval(s.out, s.pre, s.gamma, s.beta, s.running_mean, s.running_var, kBnEps,
                                          bn_activation(s.activation), kLeakySlope);
      }
    } else {  // one op at a time: an observer (train --dump) sees batch norm's output before the activation
      if (s.has_bn) {
        if (train) {
          batchnorm_forward_train(s.out, s.saved_mean, s.saved_invstd, s.running_mean, s.running_var, s.pre, s.gamma,
                                  s.beta, kBnMomentum, kBnEps);
          ++s.num_batches_tracked;
        } else {
          batchnorm_forward_eval(s.out, s.pre, s.gamma, s.beta, s.running_mean, s.running_var, kBnEps);
        }
        if (observer_) observer_->observe(*this, int(i), StageModule::BatchNorm, false, s.out);
      }
      activation_forward(s.activation, s.out);
      if (observer_ && s.activation != Activation::None)
        observer_->observe(*this, int(i), StageModule::Activation, false, s.out);
    }
    x = &s.out;
  }
}

void Network::backward(const Tensor& doutput, Tensor* dinput, bool param_grads) {
  if (bf16_) {
    bf16_->backward(stages_, params_.data(), doutput, dinput, param_grads);
    return;
  }
  if (observer_) observer_->begin(*this, true);
  for (size_t i = stages_.size(); i-- > 0;) {
    Stage& s = stages_[i];
    const Tensor& dy = (i + 1 == stages_.size()) ? doutput : s.dout;
    Tensor dpre;
    if (s.has_bn && !observer_) {  // activation backward + batch-norm backward in one op (fused kernels on CUDA)
      if (&dy != &s.dout) s.dout.copy_from(dy);  // the op uses dy as scratch (never the case in a DCGAN)
      batchnorm_activation_backward(s.dpre, s.dgamma, s.dbeta, s.dout, s.out, s.pre, s.gamma, s.saved_mean,
                                    s.saved_invstd, bn_activation(s.activation), kLeakySlope);
      dpre = s.dpre;
    } else {  // one op at a time, as in forward, so an observer sees d/d(batch norm's output)
      if (observer_)  // d/d(the stage's last module's output), before the activation's backward overwrites it
        observer_->observe(*this, int(i), s.activation != Activation::None ? StageModule::Activation
                                          : s.has_bn                       ? StageModule::BatchNorm
                                                                           : StageModule::Conv,
                           true, dy);
      Tensor dact = activation_backward(s.activation, s.dout, dy, s.out);
      if (observer_ && s.activation != Activation::None)
        observer_->observe(*this, int(i), s.has_bn ? StageModule::BatchNorm : StageModule::Conv, true, dact);
      dpre = dact;
      if (s.has_bn) {
        batchnorm_backward(s.dpre, s.dgamma, s.dbeta, dact, s.pre, s.gamma, s.saved_mean, s.saved_invstd);
        dpre = s.dpre;
        if (observer_) observer_->observe(*this, int(i), StageModule::Conv, true, dpre);
      }
    }
    const Tensor& x = i == 0 ? *input_ : stages_[i - 1].out;
    if (param_grads) s.conv->backward_filter(s.dweight, dpre, x);
    if (i > 0) {
      s.conv->backward_data(stages_[i - 1].dout, dpre, s.weight);
    } else if (dinput) {
      s.conv->backward_data(*dinput, dpre, s.weight);
      if (observer_) observer_->observe(*this, 0, StageModule::Input, true, *dinput);
    }
  }
}

Generator::Generator(const ModelConfig& cfg, int64_t batch, Device device, const Bf16BackendFactory& bf16)
    : Network(device, batch, bf16) {
  cfg.validate();
  const int64_t L = cfg.layers();
  int64_t ch = cfg.ngf << (L - 1);
  // main.0: ConvTranspose2d(nz, ngf·2^(L-1), kernel = start map, 1, 0) from 1×1 to the start map.
  add_stage(make_conv_shape(batch, cfg.nz, 1, 1, ch, cfg.start_h(), cfg.start_w(), 1, 0, true), true, Activation::ReLU, 0, 1);
  int64_t h = cfg.start_h(), w = cfg.start_w();
  for (int64_t j = 1; j < L; ++j) {
    add_stage(make_conv_shape(batch, ch, h, w, ch / 2, 4, 4, 2, 1, true), true, Activation::ReLU, int(3 * j), int(3 * j + 1));
    ch /= 2;
    h *= 2;
    w *= 2;
  }
  add_stage(make_conv_shape(batch, ch, h, w, cfg.channels, 4, 4, 2, 1, true), false, Activation::Tanh, int(3 * L), -1);
  finish();
}

Discriminator::Discriminator(const ModelConfig& cfg, int64_t batch, Device device, const Bf16BackendFactory& bf16)
    : Network(device, batch, bf16) {
  cfg.validate();
  const int64_t L = cfg.layers();
  int64_t h = cfg.height, w = cfg.width, ch = cfg.ndf;
  add_stage(make_conv_shape(batch, cfg.channels, h, w, ch, 4, 4, 2, 1, false), false, Activation::LeakyReLU, 0, -1);
  h /= 2;
  w /= 2;
  for (int64_t j = 1; j < L; ++j) {
    add_stage(make_conv_shape(batch, ch, h, w, ch * 2, 4, 4, 2, 1, false), true, Activation::LeakyReLU, int(2 + 3 * (j - 1)),
              int(3 + 3 * (j - 1)));
    ch *= 2;
    h /= 2;
    w /= 2;
  }
  // Last: Conv2d(ndf·2^(L-1), 1, kernel = the remaining map, 1, 0) → one logit per image.
  add_stage(make_conv_shape(batch, ch, h, w, 1, h, w, 1, 0, false), false, Activation::None, int(2 + 3 * (L - 1)), -1);
  finish();
}

}  // namespace ds
