// `--precision bf16`: the bf16 forward/backward of a Network over its Bf16Backend (bf16_path.h), and the
// CUDA backend (kernels/ launchers on the context stream, cuDNN bf16 NCHW convolutions).
#include "engine/nn/bf16_path.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"
#include "engine/nn/cudnn_conv.h"
#include "kernels/batchnorm.h"
#include "kernels/bf16_cast.h"
#include "kernels/bf16_kernels.h"

namespace ds {

Bf16Path::Bf16Path(std::unique_ptr<Bf16Backend> backend, const std::vector<Stage>& stages, int64_t param_count)
    : backend_(std::move(backend)), param_count_(param_count) {
  if (stages.empty()) throw std::invalid_argument("Bf16Path: a network without stages");
  weights_ = backend_->allocate(param_count_);
  input_ = backend_->allocate(shape_numel(conv_input_shape(stages.front().geometry)));
  dinput_ = backend_->allocate(shape_numel(conv_input_shape(stages.front().geometry)));
  int64_t largest_weight = 0;
  for (const Stage& s : stages) {
    largest_weight = std::max(largest_weight, shape_numel(conv_weight_shape(s.geometry)));
    const int64_t n = shape_numel(conv_output_shape(s.geometry));
    StageBuffers b;
    b.pre = backend_->allocate(n);
    b.dout = backend_->allocate(n);
    b.out = s.has_bn ? backend_->allocate(n) : b.pre;
    b.dpre = s.has_bn ? backend_->allocate(n) : b.dout;
    buffers_.push_back(b);
  }
  dweight_ = backend_->allocate(largest_weight);
}

namespace {
const bf16* stage_weight(const bf16* mirror, const float* params, const Stage& s) { return mirror + (s.weight.data() - params); }
}  // namespace

void Bf16Path::forward(std::vector<Stage>& stages, const float* params, const Tensor& input, bool train) {
  backend_->cast_float_to_bf16(weights_, params, param_count_);  // the masters of this use, Adam's last update included
  backend_->cast_float_to_bf16(input_, input.data(), input.numel());
  const bf16* x = input_;
  for (size_t i = 0; i < stages.size(); ++i) {
    Stage& s = stages[i];
    StageBuffers& b = buffers_[i];
    backend_->conv_forward(i, b.pre, x, stage_weight(weights_, params, s));
    if (s.has_bn) {
      if (train) {
        backend_->batchnorm_act_forward_train(b.out, s, b.pre, bn_activation(s.activation));
        ++s.num_batches_tracked;
      } else {
        backend_->batchnorm_act_forward_eval(b.out, s, b.pre, bn_activation(s.activation));
      }
    } else if (s.activation != Activation::None) {
      backend_->activation_forward(s.activation, b.out, s.out.numel());
    }
    x = b.out;
  }
  Stage& last = stages.back();
  backend_->cast_bf16_to_float(last.out.data(), buffers_.back().out, last.out.numel());
}

void Bf16Path::backward(std::vector<Stage>& stages, const float* params, const Tensor& doutput, Tensor* dinput,
                        bool param_grads) {
  if (doutput.numel() != stages.back().out.numel())
    throw std::invalid_argument("network backward: d(output) " + shape_str(doutput.shape()) + ", expected " +
                                shape_str(stages.back().out.shape()));
  backend_->cast_float_to_bf16(buffers_.back().dout, doutput.data(), doutput.numel());
  for (size_t i = stages.size(); i-- > 0;) {
    Stage& s = stages[i];
    StageBuffers& b = buffers_[i];
    const int64_t n = s.out.numel();
    if (s.has_bn) {
      backend_->batchnorm_act_backward(b.dpre, s, b.dout, b.out, b.pre, bn_activation(s.activation));
    } else if (s.activation != Activation::None) {
      backend_->activation_backward(s.activation, b.dout, b.out, n);  // dpre aliases dout here
    }
    const bf16* x = i == 0 ? input_ : buffers_[i - 1].out;
    const bf16* w = stage_weight(weights_, params, s);
    if (param_grads) {
      backend_->conv_backward_filter(i, dweight_, b.dpre, x);
      backend_->accumulate_bf16_into_float(s.dweight.data(), dweight_, s.dweight.numel());
    }
    if (i > 0) {
      backend_->conv_backward_data(i, buffers_[i - 1].dout, b.dpre, w);
    } else if (dinput) {
      if (dinput->numel() != shape_numel(conv_input_shape(s.geometry)))
        throw std::invalid_argument("network backward: d(input) " + shape_str(dinput->shape()) + ", expected " +
                                    shape_str(conv_input_shape(s.geometry)));
      backend_->conv_backward_data(0, dinput_, b.dpre, w);
      backend_->cast_bf16_to_float(dinput->data(), dinput_, dinput->numel());
    }
  }
}

// ---- CUDA ----
namespace {

class CudaBf16Backend final : public Bf16Backend {
 public:
  explicit CudaBf16Backend(const std::vector<Stage>& stages) {
    const CudnnConvFormat format{/*bf16=*/true, /*nhwc=*/false};  // NCHW: the batch-norm kernels index NCHW
    for (const Stage& s : stages) {
      convs_.push_back(std::make_unique<CudnnConv>(s.geometry, size_t(256) << 20, format));
      CudaContext::get().workspace(convs_.back()->workspace_bytes());  // grown now, never inside a step
      if (s.has_bn) CudaContext::get().workspace(batchnorm_workspace_bytes(s.geometry.K));
    }
  }
  bf16* allocate(int64_t n) override {
    buffers_.emplace_back(static_cast<size_t>(n));
    DS_CUDA_CHECK(cudaMemsetAsync(buffers_.back().get(), 0, static_cast<size_t>(n) * sizeof(bf16), stream()));
    return buffers_.back().get();
  }
  void cast_float_to_bf16(bf16* out, const float* in, int64_t n) override {
    kcuda::cast_float_to_bf16(out, in, n, stream());
  }
  void cast_bf16_to_float(float* out, const bf16* in, int64_t n) override {
    kcuda::cast_bf16_to_float(out, in, n, stream());
  }
  void accumulate_bf16_into_float(float* acc, const bf16* in, int64_t n) override {
    kcuda::accumulate_bf16_into_float(acc, in, n, stream());
  }
  void activation_forward(Activation a, bf16* y, int64_t n) override {
    switch (a) {
      case Activation::ReLU: kcuda::relu_forward(y, y, n, stream()); return;
      case Activation::LeakyReLU: kcuda::leaky_relu_forward(y, y, kLeakySlope, n, stream()); return;
      case Activation::Tanh: kcuda::tanh_forward(y, y, n, stream()); return;
      case Activation::None: return;
    }
  }
  void activation_backward(Activation a, bf16* d, const bf16* y, int64_t n) override {
    switch (a) {
      case Activation::ReLU: kcuda::relu_backward(d, d, y, n, stream()); return;
      case Activation::LeakyReLU: kcuda::leaky_relu_backward(d, d, y, kLeakySlope, n, stream()); return;
      case Activation::Tanh: kcuda::tanh_backward(d, d, y, n, stream()); return;
      case Activation::None: return;
    }
  }
  void batchnorm_act_forward_train(bf16* y, Stage& s, const bf16* x, BnActivation act) override {
    const Nchw d = nchw(s);
    kcuda::batchnorm_act_forward_train(y, s.saved_mean.data(), s.saved_invstd.data(), s.running_mean.data(),
                                       s.running_var.data(), workspace(d.C), x, s.gamma.data(), s.beta.data(), d.N,
                                       d.C, d.HW, kBnMomentum, kBnEps, act, kLeakySlope, 0, stream());
  }
  void batchnorm_act_forward_eval(bf16* y, const Stage& s, const bf16* x, BnActivation act) override {
    const Nchw d = nchw(s);
    kcuda::batchnorm_act_forward_eval(y, x, s.gamma.data(), s.beta.data(), s.running_mean.data(),
                                      s.running_var.data(), d.N, d.C, d.HW, kBnEps, act, kLeakySlope, stream());
  }
  void batchnorm_act_backward(bf16* dx, Stage& s, const bf16* dy, const bf16* y, const bf16* x,
                              BnActivation act) override {
    const Nchw d = nchw(s);
    kcuda::batchnorm_act_backward(dx, s.dgamma.data(), s.dbeta.data(), workspace(d.C), dy, y, x, s.gamma.data(),
                                  s.saved_mean.data(), s.saved_invstd.data(), d.N, d.C, d.HW, act, kLeakySlope, 0,
                                  stream());
  }
  void conv_forward(size_t stage, bf16* y, const bf16* x, const bf16* w) override {
    convs_.at(stage)->forward(y, x, w);
  }
  void conv_backward_data(size_t stage, bf16* dx, const bf16* dy, const bf16* w) override {
    convs_.at(stage)->backward_data(dx, dy, w);
  }
  void conv_backward_filter(size_t stage, bf16* dw, const bf16* dy, const bf16* x) override {
    convs_.at(stage)->backward_filter(dw, dy, x);
  }

 private:
  struct Nchw {
    int64_t N, C, HW;
  };
  static Nchw nchw(const Stage& s) {
    const ConvShape& g = s.geometry;
    return {g.N, g.K, int64_t(g.out_h()) * g.out_w()};
  }
  static cudaStream_t stream() { return CudaContext::get().stream(); }
  // Reserved when the backend was built (and by the float path's reserve_batchnorm_workspace): never grown here.
  static double* workspace(int64_t C) {
    return static_cast<double*>(CudaContext::get().workspace(batchnorm_workspace_bytes(C)));
  }
  std::vector<std::unique_ptr<CudnnConv>> convs_;
  std::vector<DeviceBuffer<bf16>> buffers_;
};

}  // namespace

std::unique_ptr<Bf16Backend> make_cuda_bf16_backend(const std::vector<Stage>& stages) {
  return std::make_unique<CudaBf16Backend>(stages);
}

}  // namespace ds
