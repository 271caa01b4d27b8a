// The DCGAN of Radford et al. as in PyTorch's examples/dcgan, generalised to any H×W with each side
// 4·2^k and to nc = 1 or 3. Each network is a chain of stages (conv → optional BN → activation) with
// every buffer allocated at construction, parameters/gradients in one contiguous buffer each, and the
// PyTorch Sequential index of every module so tensor names match `main.N.weight`.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layer_observer.h"
#include "engine/nn/ops.h"
#include "engine/core/tensor.h"

namespace ds {

struct ModelConfig {
  int64_t height = 64, width = 64, channels = 3;
  int64_t nz = 100, ngf = 64, ndf = 64;
  // Stride-2 layers and the starting map of G (= the last map of D): min side → 4.
  int64_t layers() const;
  int64_t start_h() const { return height >> layers(); }
  int64_t start_w() const { return width >> layers(); }
  void validate() const;  // throws std::invalid_argument naming what is wrong
  std::string to_json() const;
  static ModelConfig from_json(const std::string& json);
};

bool is_four_times_power_of_two(int64_t v);

// Every parameter tensor starts at a multiple of 16 floats (64 bytes) of the flat parameter buffer
// (and of the gradient and Adam buffers laid out like it), so every view is as aligned as the buffer
// for vectorised kernels and the libraries' alignment preferences, whatever the channel counts (an odd
// BN width would otherwise leave the next view only 8-byte aligned). The padding between tensors is
// zero in every such buffer and stays zero: no op reads or writes it, its gradient is zeroed with the
// rest, and Adam's update of a zero gradient with zero moments is zero.
constexpr int64_t kParamAlignFloats = 16;

class Bf16Backend;  // engine/nn/bf16_path.h: `--precision bf16`
class Bf16Path;

struct NamedTensor {
  std::string name;  // PyTorch state_dict name, e.g. "main.3.weight"
  Tensor tensor;
};

enum class Activation { ReLU, LeakyReLU, Tanh, None };
// The example's constants (PyTorch keeps BN's momentum and eps as doubles); the bench uses them too.
constexpr double kBnMomentum = 0.1;
constexpr double kBnEps = 1e-5;
constexpr float kLeakySlope = 0.2f;

// A stage's activation in place on y (LeakyReLU with DCGAN's slope 0.2); None does nothing.
void activation_forward(Activation a, Tensor& y);
// dx written from dy and the forward output y (dx may alias dy); returns the tensor that holds
// d/d(activation input): dx, or dy itself for None.
Tensor activation_backward(Activation a, Tensor& dx, const Tensor& dy, const Tensor& y);
// The activation a batch-norm stage fuses into its batch-norm kernels (throws for Tanh: none exists).
BnActivation bn_activation(Activation a);

struct Stage {
  ConvShape geometry;
  std::unique_ptr<ConvOp> conv;
  Tensor weight, dweight;  // views into the network's parameter/gradient buffers
  bool has_bn = false;
  Tensor gamma, beta, dgamma, dbeta;                  // views (BN affine parameters)
  Tensor running_mean, running_var;                   // owned
  Tensor saved_mean, saved_invstd;                    // from the last training forward
  int64_t num_batches_tracked = 0;
  Activation activation = Activation::None;
  // The float32 path's activations. A bf16 network (Network::bf16()) holds them in bf16 (Bf16Path) and
  // these are shape-only (data() null, no storage), except the last stage's `out`: the float output().
  Tensor pre;   // conv output (kept for BN backward); aliases `out` without BN
  Tensor out;   // after BN and activation (activation in place)
  Tensor dout;  // gradient w.r.t. out, then (in place) w.r.t. the activation's input
  Tensor dpre;  // gradient w.r.t. pre (aliases dout without BN)
  int seq_conv = 0, seq_bn = -1;  // indices in PyTorch's nn.Sequential
};

// Makes the bf16 backend of a network from its stages (engine/nn/bf16_path.h). Given to a network's
// constructor, the network is built for `--precision bf16` from the start: only the buffers that path
// uses are allocated (no float32 activations but the output, no float32 conv plans or workspace).
using Bf16BackendFactory = std::function<std::unique_ptr<Bf16Backend>(const std::vector<Stage>&)>;

class Network {
 public:
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;
  virtual ~Network();

  Device device() const { return device_; }
  int64_t batch() const { return batch_; }
  Tensor& params() { return params_; }
  Tensor& grads() { return grads_; }
  const Tensor& params() const { return params_; }
  const Tensor& grads() const { return grads_; }
  const std::vector<NamedTensor>& parameters() const { return parameters_; }  // in params() order
  // Offset in floats of parameters()[i] in params(), grads() and every buffer laid out like them.
  const std::vector<int64_t>& parameter_offsets() const { return offsets_; }
  // PyTorch's sum of p.numel() over parameters(): the flat buffers without their padding.
  int64_t packed_parameter_count() const;
  // `flat`, a buffer laid out like params() (e.g. an Adam moment), as the concatenation of its
  // parameter views in parameters() order without padding: the checkpoint layout of flat state.
  std::vector<float> packed(const Tensor& flat) const;
  // The inverse: packed values (packed_parameter_count() of them) into flat's views; padding untouched.
  void unpack(Tensor& flat, const float* packed, int64_t count) const;
  // Every tensor of PyTorch's state_dict except num_batches_tracked (see batches_tracked()).
  std::vector<NamedTensor> state_tensors() const;
  std::vector<std::pair<std::string, int64_t*>> batches_tracked();
  std::vector<Stage>& stages() { return stages_; }
  const std::vector<Stage>& stages() const { return stages_; }
  const Tensor& output() const { return stages_.back().out; }

  void zero_grad() { grads_.fill(0.f); }
  // Weights drawn on the host (so CPU and CUDA runs of one seed start identical), as the example's
  // weights_init: conv N(0, 0.02), BN gamma N(1, 0.02), beta 0; running stats reset.
  void init_weights(uint64_t seed, uint32_t stream);
  // Copies weights and BN statistics from another network of the same architecture (any batch/device).
  void copy_state_from(Network& other);

  // train = batch statistics (and running-stat update); otherwise running statistics.
  void forward(const Tensor& input, bool train);
  // From d(loss)/d(output): parameter gradients accumulate when `param_grads`; d(loss)/d(input) is
  // written to `dinput` when it is given (non-null).
  void backward(const Tensor& doutput, Tensor* dinput, bool param_grads);
  // Every activation and activation gradient as forward/backward computes it (layer_observer.h);
  // nullptr (the default) for none. Not owned.
  void set_observer(LayerObserver* observer) { observer_ = observer; }

  // `--precision bf16` (engine/nn/bf16_path.h): from now on forward and backward run on bf16 copies
  // through `backend` (allocating its buffers now); the float32 parameters, gradients, BN state and
  // output() stay where they are, and the float32 activation buffers and conv ops the network was built
  // with are released (shape-only from now on). A network built with a Bf16BackendFactory, or a CUDA
  // network built while bf16_networks() (engine/core/precision.h) is set, never allocates those at all;
  // tests also turn a built CPU network into an emulated bf16 one with this.
  void use_bf16(std::unique_ptr<Bf16Backend> backend);
  bool bf16() const { return bf16_ != nullptr; }
  const Bf16Path* bf16_path() const { return bf16_.get(); }

 protected:
  // `bf16`: see Bf16BackendFactory; empty: float32, or the CUDA bf16 backend for a CUDA network while
  // bf16_networks() is set.
  Network(Device device, int64_t batch, Bf16BackendFactory bf16);
  void add_stage(const ConvShape& g, bool bn, Activation act, int seq_conv, int seq_bn);
  // Allocates the parameter/gradient buffers and the activation buffers of the network's path.
  void finish();
  void release_float_activations();  // shape-only pre/out/dout/dpre (but the last out), no conv ops

  Device device_;
  int64_t batch_;
  std::vector<Stage> stages_;
  std::vector<NamedTensor> parameters_;
  std::vector<int64_t> offsets_;  // of parameters_[i] in params_
  Tensor params_, grads_;
  const Tensor* input_ = nullptr;  // input of the last forward (kept for backward)
  LayerObserver* observer_ = nullptr;
  Bf16BackendFactory bf16_factory_;  // empty until finish() decides
  std::unique_ptr<Bf16Path> bf16_;  // null: the float32 path
};

class Generator : public Network {
 public:
  Generator(const ModelConfig& cfg, int64_t batch, Device device, const Bf16BackendFactory& bf16 = {});
};

class Discriminator : public Network {
 public:
  Discriminator(const ModelConfig& cfg, int64_t batch, Device device, const Bf16BackendFactory& bf16 = {});
};

}  // namespace ds
