// Op dispatch: each op runs the CPU implementation or the CUDA one according to its tensors' device.
// The CPU side is the reference (engine/nn/cpu/) except convolution, which uses the im2col + GEMM fast
// path (engine/nn/conv_cpu_fast), ReLU/LeakyReLU, which use the vectorised engine/nn/elementwise_cpu_fast
// (bit-identical to the reference), and the training batch norm + activation forward (engine/nn/batchnorm_cpu_fast);
// all are checked against the reference in tests.
#include "engine/nn/ops.h"

#include <stdexcept>
#include <string>

#include "engine/nn/batchnorm_cpu_fast.h"
#include "engine/nn/conv_cpu_fast.h"
#include "engine/nn/elementwise_cpu_fast.h"
#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/adam.h"
#include "engine/nn/cpu/batchnorm.h"
#include "engine/nn/cpu/loss.h"
#include "engine/nn/cpu/image.h"
#include "engine/core/cuda_context.h"
#include "engine/nn/cudnn_conv.h"
#include "engine/core/rng.h"
#include "kernels/activations.h"
#include "kernels/adam.h"
#include "kernels/batchnorm.h"
#include "kernels/image.h"
#include "kernels/launch_log.h"
#include "kernels/loss.h"
#include "kernels/rng.h"

namespace ds {

namespace {
cudaStream_t stream() { return CudaContext::get().stream(); }

// Every tensor of one op must live on the same device; returns it.
template <class... Ts>
Device same_device(const char* op, const Tensor& first, const Ts&... rest) {
  const Device d = first.device();
  if (((rest.device() != d) || ...))
    throw std::invalid_argument(std::string(op) + ": tensors on different devices");
  return d;
}

void require_same_numel(const char* op, const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel())
    throw std::invalid_argument(std::string(op) + ": " + shape_str(a.shape()) + " vs " + shape_str(b.shape()));
}

// (N, C, HW) of an NCHW tensor.
struct Nchw {
  int64_t N, C, HW;
};
Nchw nchw(const Tensor& t) {
  if (t.rank() != 4) throw std::invalid_argument("expected an NCHW tensor, got " + shape_str(t.shape()));
  return {t.dim(0), t.dim(1), t.dim(2) * t.dim(3)};
}
// The split batch-norm reduction's partial sums live in the context workspace: every launch is on the
// one stream, so they never overlap a cuDNN call that uses it. Reserved when the model is built
// (reserve_batchnorm_workspace), so this never grows it inside a step.
double* batchnorm_workspace(int64_t C) {
  return static_cast<double*>(CudaContext::get().workspace(batchnorm_workspace_bytes(C)));
}
}  // namespace

// ---- activations ----
void relu_forward(Tensor& y, const Tensor& x) {
  require_same_numel("relu_forward", y, x);
  if (same_device("relu_forward", y, x) == Device::CPU)
    cpu_fast::relu_forward(y.data(), x.data(), x.numel());
  else
    kcuda::relu_forward(y.data(), x.data(), x.numel(), stream());
}
void relu_backward(Tensor& dx, const Tensor& dy, const Tensor& y) {
  require_same_numel("relu_backward", dx, dy);
  if (same_device("relu_backward", dx, dy, y) == Device::CPU)
    cpu_fast::relu_backward(dx.data(), dy.data(), y.data(), y.numel());
  else
    kcuda::relu_backward(dx.data(), dy.data(), y.data(), y.numel(), stream());
}
void leaky_relu_forward(Tensor& y, const Tensor& x, float slope) {
  require_same_numel("leaky_relu_forward", y, x);
  if (same_device("leaky_relu_forward", y, x) == Device::CPU)
    cpu_fast::leaky_relu_forward(y.data(), x.data(), slope, x.numel());
  else
    kcuda::leaky_relu_forward(y.data(), x.data(), slope, x.numel(), stream());
}
void leaky_relu_backward(Tensor& dx, const Tensor& dy, const Tensor& y, float slope) {
  require_same_numel("leaky_relu_backward", dx, dy);
  if (same_device("leaky_relu_backward", dx, dy, y) == Device::CPU)
    cpu_fast::leaky_relu_backward(dx.data(), dy.data(), y.data(), slope, y.numel());
  else
    kcuda::leaky_relu_backward(dx.data(), dy.data(), y.data(), slope, y.numel(), stream());
}
void tanh_forward(Tensor& y, const Tensor& x) {
  require_same_numel("tanh_forward", y, x);
  if (same_device("tanh_forward", y, x) == Device::CPU)
    cpu::tanh_forward(y.data(), x.data(), x.numel());
  else
    kcuda::tanh_forward(y.data(), x.data(), x.numel(), stream());
}
void tanh_backward(Tensor& dx, const Tensor& dy, const Tensor& y) {
  require_same_numel("tanh_backward", dx, dy);
  if (same_device("tanh_backward", dx, dy, y) == Device::CPU)
    cpu::tanh_backward(dx.data(), dy.data(), y.data(), y.numel());
  else
    kcuda::tanh_backward(dx.data(), dy.data(), y.data(), y.numel(), stream());
}

// ---- batch norm ----
void batchnorm_forward_train(Tensor& y, Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                             Tensor& running_var, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             double momentum, double eps) {
  const Nchw s = nchw(x);
  if (same_device("batchnorm_forward_train", y, x, gamma, beta, running_mean, running_var) == Device::CPU)
    cpu::batchnorm_forward_train(y.data(), saved_mean.data(), saved_invstd.data(), running_mean.data(),
                                 running_var.data(), x.data(), gamma.data(), beta.data(), s.N, s.C, s.HW,
                                 momentum, eps);
  else
    kcuda::batchnorm_forward_train(y.data(), saved_mean.data(), saved_invstd.data(), running_mean.data(),
                                   running_var.data(), batchnorm_workspace(s.C), x.data(), gamma.data(), beta.data(),
                                   s.N, s.C, s.HW, momentum, eps, stream());
}
void batchnorm_forward_eval(Tensor& y, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, double eps) {
  const Nchw s = nchw(x);
  if (same_device("batchnorm_forward_eval", y, x, gamma, beta, running_mean, running_var) == Device::CPU)
    cpu::batchnorm_forward_eval(y.data(), x.data(), gamma.data(), beta.data(), running_mean.data(),
                                running_var.data(), s.N, s.C, s.HW, eps);
  else
    kcuda::batchnorm_forward_eval(y.data(), x.data(), gamma.data(), beta.data(), running_mean.data(),
                                  running_var.data(), s.N, s.C, s.HW, eps, stream());
}
void batchnorm_backward(Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy, const Tensor& x,
                        const Tensor& gamma, const Tensor& saved_mean, const Tensor& saved_invstd) {
  const Nchw s = nchw(x);
  if (same_device("batchnorm_backward", dx, dgamma, dbeta, dy, x, gamma) == Device::CPU)
    cpu::batchnorm_backward(dx.data(), dgamma.data(), dbeta.data(), dy.data(), x.data(), gamma.data(),
                            saved_mean.data(), saved_invstd.data(), s.N, s.C, s.HW);
  else
    kcuda::batchnorm_backward(dx.data(), dgamma.data(), dbeta.data(), batchnorm_workspace(s.C), dy.data(), x.data(),
                              gamma.data(), saved_mean.data(), saved_invstd.data(), s.N, s.C, s.HW, stream());
}

// ---- batch norm + activation (CUDA: fused kernels; CPU training forward: engine/nn/batchnorm_cpu_fast; the
// rest on the CPU: the reference ops in sequence) ----
namespace {
void cpu_activation_forward(float* y, int64_t n, BnActivation act, float slope) {
  // The vectorised in-place activations (bit-identical to cpu::; the reference's in-place loop is scalar).
  if (act == BnActivation::ReLU) cpu_fast::relu_forward(y, y, n);
  if (act == BnActivation::LeakyReLU) cpu_fast::leaky_relu_forward(y, y, slope, n);
}
}  // namespace

void batchnorm_activation_forward_train(Tensor& y, Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                        Tensor& running_var, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                        double momentum, double eps, BnActivation act, float slope) {
  const Nchw s = nchw(x);
  require_same_numel("batchnorm_activation_forward_train", y, x);
  if (same_device("batchnorm_activation_forward_train", y, x, gamma, beta, running_mean, running_var) == Device::CPU) {
    cpu_fast::batchnorm_activation_forward_train(y.data(), saved_mean.data(), saved_invstd.data(),
                                                 running_mean.data(), running_var.data(), x.data(), gamma.data(),
                                                 beta.data(), s.N, s.C, s.HW, momentum, eps, act, slope);
  } else {
    kcuda::batchnorm_act_forward_train(y.data(), saved_mean.data(), saved_invstd.data(), running_mean.data(),
                                       running_var.data(), batchnorm_workspace(s.C), x.data(), gamma.data(),
                                       beta.data(), s.N, s.C, s.HW, momentum, eps, act, slope, 0, stream());
  }
}

void batchnorm_activation_forward_eval(Tensor& y, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                       const Tensor& running_mean, const Tensor& running_var, double eps,
                                       BnActivation act, float slope) {
  const Nchw s = nchw(x);
  require_same_numel("batchnorm_activation_forward_eval", y, x);
  if (same_device("batchnorm_activation_forward_eval", y, x, gamma, beta, running_mean, running_var) == Device::CPU) {
    cpu::batchnorm_forward_eval(y.data(), x.data(), gamma.data(), beta.data(), running_mean.data(),
                                running_var.data(), s.N, s.C, s.HW, eps);
    cpu_activation_forward(y.data(), y.numel(), act, slope);
  } else {
    kcuda::batchnorm_act_forward_eval(y.data(), x.data(), gamma.data(), beta.data(), running_mean.data(),
                                      running_var.data(), s.N, s.C, s.HW, eps, act, slope, stream());
  }
}

void batchnorm_activation_backward(Tensor& dx, Tensor& dgamma, Tensor& dbeta, Tensor& dy, const Tensor& y,
                                   const Tensor& x, const Tensor& gamma, const Tensor& saved_mean,
                                   const Tensor& saved_invstd, BnActivation act, float slope) {
  const Nchw s = nchw(x);
  require_same_numel("batchnorm_activation_backward", dx, dy);
  require_same_numel("batchnorm_activation_backward", y, dy);
  if (dx.data() == dy.data()) throw std::invalid_argument("batchnorm_activation_backward: dx must not alias dy");
  if (same_device("batchnorm_activation_backward", dx, dgamma, dbeta, dy, y, x, gamma) == Device::CPU) {
    if (act == BnActivation::ReLU) cpu_fast::relu_backward(dy.data(), dy.data(), y.data(), dy.numel());
    if (act == BnActivation::LeakyReLU)
      cpu_fast::leaky_relu_backward(dy.data(), dy.data(), y.data(), slope, dy.numel());
    cpu::batchnorm_backward(dx.data(), dgamma.data(), dbeta.data(), dy.data(), x.data(), gamma.data(),
                            saved_mean.data(), saved_invstd.data(), s.N, s.C, s.HW);
  } else {
    kcuda::batchnorm_act_backward(dx.data(), dgamma.data(), dbeta.data(), batchnorm_workspace(s.C), dy.data(),
                                  y.data(), x.data(), gamma.data(), saved_mean.data(), saved_invstd.data(), s.N, s.C,
                                  s.HW, act, slope, 0, stream());
  }
}

void reserve_batchnorm_workspace(int64_t channels, Device device) {
  if (device == Device::CUDA) batchnorm_workspace(channels);
}

// ---- loss ----
void bce_with_logits(Tensor& dlogits, Tensor& loss, Tensor& probability, const Tensor& logits, float target) {
  require_same_numel("bce_with_logits", dlogits, logits);
  const int64_t n = logits.numel();
  if (same_device("bce_with_logits", dlogits, loss, probability, logits) == Device::CPU) {
    loss.data()[0] = cpu::bce_with_logits_forward(probability.data(), logits.data(), target, n);
    cpu::bce_with_logits_backward(dlogits.data(), logits.data(), target, 1.f, n);
  } else {
    kcuda::bce_with_logits(loss.data(), probability.data(), dlogits.data(), logits.data(), target, 1.f, n, stream());
  }
}

// ---- Adam ----
AdamCounter::AdamCounter(Device device) : device_(device) {
  if (device_ == Device::CUDA) {
    CudaContext::get();
    DS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_step_), sizeof(int)));
    set(0);
  }
}
AdamCounter::~AdamCounter() {
  if (device_step_) cudaFree(device_step_);
}
void AdamCounter::set(int64_t step) {
  launch_log::require_outside_step("AdamCounter::set");
  step_ = step;
  if (device_step_) {
    const int s = static_cast<int>(step);
    DS_CUDA_CHECK(cudaMemcpyAsync(device_step_, &s, sizeof s, cudaMemcpyHostToDevice, stream()));
    CudaContext::get().synchronize();  // `s` lives on this stack frame
  }
}
void AdamCounter::advance() {
  ++step_;
  if (device_step_) kcuda::advance_step(device_step_, stream());
}

void adam_step(Tensor& params, Tensor& m, Tensor& v, const Tensor& grads, const AdamConfig& cfg, AdamCounter& counter) {
  require_same_numel("adam_step", params, grads);
  require_same_numel("adam_step", params, m);
  require_same_numel("adam_step", params, v);
  counter.advance();
  if (same_device("adam_step", params, m, v, grads) == Device::CPU)
    cpu::adam_step(params.data(), m.data(), v.data(), grads.data(), params.numel(), cfg.lr, cfg.beta1, cfg.beta2,
                   cfg.eps, counter.step());
  else
    kcuda::adam_step(params.data(), m.data(), v.data(), grads.data(), counter.device_step(), params.numel(), cfg.lr,
                     cfg.beta1, cfg.beta2, cfg.eps, stream());
}

// ---- misc ----
bool all_finite(const std::vector<Tensor>& tensors) {
  launch_log::require_outside_step("all_finite");
  bool cpu_ok = true;
  bool any_cuda = false;
  for (const Tensor& t : tensors) {
    if (t.on_cuda())
      any_cuda = true;
    else
      cpu_ok = cpu_ok && cpu::all_finite(t.data(), t.numel());
  }
  if (!any_cuda) return cpu_ok;
  int* flag = nullptr;
  DS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&flag), sizeof(int)));
  std::unique_ptr<int, decltype(&cudaFree)> guard(flag, cudaFree);
  const int one = 1;
  DS_CUDA_CHECK(cudaMemcpyAsync(flag, &one, sizeof one, cudaMemcpyHostToDevice, stream()));
  for (const Tensor& t : tensors)
    if (t.on_cuda()) kcuda::check_finite(flag, t.data(), t.numel(), stream());
  int result = 0;
  DS_CUDA_CHECK(cudaMemcpyAsync(&result, flag, sizeof result, cudaMemcpyDeviceToHost, stream()));
  CudaContext::get().synchronize();
  return cpu_ok && result == 1;
}

void gather_images(Tensor& out, const uint8_t* images, const int32_t* indices, int64_t n, int64_t image_size) {
  if (out.numel() != n * image_size)
    throw std::invalid_argument("gather_images: " + shape_str(out.shape()) + " for " + std::to_string(n) +
                                " images of " + std::to_string(image_size));
  if (out.on_cuda())
    kcuda::images_u8_to_float(out.data(), images, indices, n, image_size, stream());
  else
    cpu::images_u8_to_float(out.data(), images, indices, n, image_size);
}

void gather_rows(Tensor& out, const Tensor& rows, const int32_t* indices, int64_t n) {
  const int64_t row_size = rows.dim(0) ? rows.numel() / rows.dim(0) : 0;
  if (out.numel() != n * row_size) throw std::invalid_argument("gather_rows: " + shape_str(out.shape()));
  if (same_device("gather_rows", out, rows) == Device::CUDA)
    kcuda::gather_rows(out.data(), rows.data(), indices, n, row_size, stream());
  else
    cpu::gather_rows(out.data(), rows.data(), indices, n, row_size);
}

void normal_noise(Tensor& out, uint64_t seed, uint32_t rng_stream, uint64_t offset) {
  if (out.on_cuda())
    kcuda::normal_fill(out.data(), 0.f, 1.f, seed, rng_stream, offset, out.numel(), stream());
  else
    Philox(seed, rng_stream, offset).fill_normal(out.data(), 0.f, 1.f, out.numel());
}

void gather_images_at(Tensor& out, const uint8_t* images, const int32_t* permutation, const int64_t* position,
                      int64_t n, int64_t image_size) {
  if (out.numel() != n * image_size)
    throw std::invalid_argument("gather_images_at: " + shape_str(out.shape()) + " for " + std::to_string(n) +
                                " images of " + std::to_string(image_size));
  if (out.on_cuda())
    kcuda::images_u8_to_float_at(out.data(), images, permutation, position, n, image_size, stream());
  else
    cpu::images_u8_to_float(out.data(), images, permutation + *position, n, image_size);
}

void gather_rows_at(Tensor& out, const Tensor& rows, const int32_t* permutation, const int64_t* position, int64_t n) {
  const int64_t row_size = rows.dim(0) ? rows.numel() / rows.dim(0) : 0;
  if (out.numel() != n * row_size) throw std::invalid_argument("gather_rows_at: " + shape_str(out.shape()));
  if (same_device("gather_rows_at", out, rows) == Device::CUDA)
    kcuda::gather_rows_at(out.data(), rows.data(), permutation, position, n, row_size, stream());
  else
    cpu::gather_rows(out.data(), rows.data(), permutation + *position, n, row_size);
}

void normal_noise_at(Tensor& out, uint64_t seed, uint32_t rng_stream, const int64_t* step, uint64_t tuples_per_step) {
  if (out.on_cuda())
    kcuda::normal_fill_at(out.data(), 0.f, 1.f, seed, rng_stream, step, tuples_per_step, out.numel(), stream());
  else
    Philox(seed, rng_stream, static_cast<uint64_t>(*step) * tuples_per_step).fill_normal(out.data(), 0.f, 1.f, out.numel());
}

// ---- convolution ----
Shape conv_input_shape(const ConvShape& s) { return {s.N, s.C, s.H, s.W}; }
Shape conv_output_shape(const ConvShape& s) { return {s.N, s.K, s.out_h(), s.out_w()}; }
Shape conv_weight_shape(const ConvShape& s) {
  return s.transposed ? Shape{s.C, s.K, s.R, s.S} : Shape{s.K, s.C, s.R, s.S};
}
ConvShape make_conv_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S,
                          int64_t stride, int64_t pad, bool transposed) {
  ConvShape s;
  s.N = int(N), s.C = int(C), s.H = int(H), s.W = int(W), s.K = int(K), s.R = int(R), s.S = int(S);
  s.stride_h = s.stride_w = int(stride);
  s.pad_h = s.pad_w = int(pad);
  s.transposed = transposed;
  s.validate();
  return s;
}

struct ConvOp::Cuda {
  explicit Cuda(const ConvShape& s) : conv(s) {
    CudaContext::get().workspace(conv.workspace_bytes());  // grown now, never inside a step
  }
  CudnnConv conv;
};

ConvOp::ConvOp(const ConvShape& g, Device device) : g_(g), device_(device) {
  g_.validate();
  if (device_ == Device::CUDA) cuda_ = std::make_unique<Cuda>(g_);
}
ConvOp::~ConvOp() = default;

namespace {
void check_conv_tensor(const char* op, const char* role, const Tensor& t, const Shape& expected) {
  if (t.shape() != expected)
    throw std::invalid_argument(std::string(op) + ": " + role + " " + shape_str(t.shape()) + ", expected " +
                                shape_str(expected));
}
}  // namespace

namespace {
void check_conv_device(const char* op, Device device, const Tensor& a, const Tensor& b, const Tensor& c) {
  if (a.device() != device || b.device() != device || c.device() != device)
    throw std::invalid_argument(std::string(op) + ": tensors must be on " + device_name(device) +
                                ", where this layer was built");
}
}  // namespace

void ConvOp::forward(Tensor& y, const Tensor& x, const Tensor& w) {
  check_conv_device("conv forward", device_, y, x, w);
  check_conv_tensor("conv forward", "x", x, conv_input_shape(g_));
  check_conv_tensor("conv forward", "y", y, conv_output_shape(g_));
  check_conv_tensor("conv forward", "w", w, conv_weight_shape(g_));
  if (device_ == Device::CUDA)
    cuda_->conv.forward(y.data(), x.data(), w.data());
  else if (g_.transposed)
    cpu_fast::conv_transpose2d_forward(y.data(), x.data(), w.data(), g_);
  else
    cpu_fast::conv2d_forward(y.data(), x.data(), w.data(), g_);
}

void ConvOp::backward_data(Tensor& dx, const Tensor& dy, const Tensor& w) {
  check_conv_tensor("conv backward_data", "dx", dx, conv_input_shape(g_));
  check_conv_tensor("conv backward_data", "dy", dy, conv_output_shape(g_));
  check_conv_tensor("conv backward_data", "w", w, conv_weight_shape(g_));
  check_conv_device("conv backward_data", device_, dx, dy, w);
  if (device_ == Device::CUDA)
    cuda_->conv.backward_data(dx.data(), dy.data(), w.data());
  else if (g_.transposed)
    cpu_fast::conv_transpose2d_backward_data(dx.data(), dy.data(), w.data(), g_);
  else
    cpu_fast::conv2d_backward_data(dx.data(), dy.data(), w.data(), g_);
}

void ConvOp::backward_filter(Tensor& dw, const Tensor& dy, const Tensor& x) {
  check_conv_tensor("conv backward_filter", "dw", dw, conv_weight_shape(g_));
  check_conv_tensor("conv backward_filter", "dy", dy, conv_output_shape(g_));
  check_conv_tensor("conv backward_filter", "x", x, conv_input_shape(g_));
  check_conv_device("conv backward_filter", device_, dw, dy, x);
  if (device_ == Device::CUDA)
    cuda_->conv.backward_filter(dw.data(), dy.data(), x.data());
  else if (g_.transposed)
    cpu_fast::conv_transpose2d_backward_filter(dw.data(), dy.data(), x.data(), g_);
  else
    cpu_fast::conv2d_backward_filter(dw.data(), dy.data(), x.data(), g_);
}

}  // namespace ds
