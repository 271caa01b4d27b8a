// The ops every layer calls: one function per op, CPU reference/fast path or CUDA chosen by the
// tensors' device here, so layers never branch on the device themselves.
// Conventions: outputs first; gradients of parameters ACCUMULATE (+=), gradients of activations are
// WRITTEN (=); shapes are NCHW.
#pragma once
#include <memory>
#include <vector>

#include "engine/nn/conv_shape.h"
#include "engine/core/tensor.h"
#include "kernels/batchnorm.h"  // BnActivation

namespace ds {

// ---- activations (backward uses the forward output y, so forward may run in place) ----
void relu_forward(Tensor& y, const Tensor& x);
void relu_backward(Tensor& dx, const Tensor& dy, const Tensor& y);
void leaky_relu_forward(Tensor& y, const Tensor& x, float slope);
void leaky_relu_backward(Tensor& dx, const Tensor& dy, const Tensor& y, float slope);
void tanh_forward(Tensor& y, const Tensor& x);
void tanh_backward(Tensor& dx, const Tensor& dy, const Tensor& y);

// ---- batch norm 2d (per channel over N, H, W; PyTorch's momentum/eps meaning) ----
void batchnorm_forward_train(Tensor& y, Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                             Tensor& running_var, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             double momentum, double eps);
void batchnorm_forward_eval(Tensor& y, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, double eps);
void batchnorm_backward(Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy, const Tensor& x,
                        const Tensor& gamma, const Tensor& saved_mean, const Tensor& saved_invstd);

// ---- batch norm fused with the activation after it (ReLU, LeakyReLU; None = plain batch norm) ----
// Same meaning as the batch norm above followed by the activation in place on y. On CUDA: split,
// deterministic reductions and one pass writing y (kernels/batchnorm.cu); on the CPU: the reference ops
// one after the other.
void batchnorm_activation_forward_train(Tensor& y, Tensor& saved_mean, Tensor& saved_invstd, Tensor& running_mean,
                                        Tensor& running_var, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                        double momentum, double eps, BnActivation act, float slope);
void batchnorm_activation_forward_eval(Tensor& y, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                       const Tensor& running_mean, const Tensor& running_var, double eps,
                                       BnActivation act, float slope);
// From dy = dL/d(activation output) and y, the forward output: dx WRITTEN (must not alias dy), dgamma
// and dbeta ACCUMULATE. dy is scratch: afterwards it holds dL/d(activation input) on the CPU (the
// reference runs the activation's backward in place there) and is unchanged on CUDA; read neither.
void batchnorm_activation_backward(Tensor& dx, Tensor& dgamma, Tensor& dbeta, Tensor& dy, const Tensor& y,
                                   const Tensor& x, const Tensor& gamma, const Tensor& saved_mean,
                                   const Tensor& saved_invstd, BnActivation act, float slope);
// Grows the CUDA context's workspace to what a batch norm over `channels` channels needs (the split
// reduction's partial sums), so a training step never allocates. No-op on the CPU.
void reserve_batchnorm_workspace(int64_t channels, Device device);

// ---- loss: mean BCE-with-logits against one target for the whole batch ----
// loss[0] = mean loss, probability[0] = mean sigmoid(logits); dlogits = d(mean loss)/d logits.
// All three stay on the logits' device (no host synchronisation).
void bce_with_logits(Tensor& dlogits, Tensor& loss, Tensor& probability, const Tensor& logits, float target);

// ---- Adam, torch.optim.Adam's formula; `step` counts from 1 ----
struct AdamConfig {
  double lr = 2e-4, beta1 = 0.5, beta2 = 0.999, eps = 1e-8;  // doubles, as PyTorch keeps them
};
// PyTorch's state['step'], kept on the device too (CUDA) so a captured step replays correctly.
class AdamCounter {
 public:
  explicit AdamCounter(Device device);
  ~AdamCounter();
  AdamCounter(const AdamCounter&) = delete;
  AdamCounter& operator=(const AdamCounter&) = delete;
  int64_t step() const { return step_; }
  void set(int64_t step);  // resume
  int* device_step() const { return device_step_; }
  void advance();          // ++step on host and (enqueued) on the device
  // The host mirror only: a replayed CUDA graph advanced the device counter by `steps` (step_graph.h).
  void mirror_device_advance(int64_t steps) { step_ += steps; }

 private:
  Device device_;
  int64_t step_ = 0;
  int* device_step_ = nullptr;
};
// Advances `counter`, then one Adam update of every element of `params`.
void adam_step(Tensor& params, Tensor& m, Tensor& v, const Tensor& grads, const AdamConfig& cfg, AdamCounter& counter);

// ---- misc ----
// True when no element of any of the tensors is NaN/Inf (synchronises with the device: for
// checkpoints, not for steps).
bool all_finite(const std::vector<Tensor>& tensors);
// out (n, C, H, W) = images[indices[i]] mapped from uint8 to [-1, 1]; `images` is a device/host
// uint8 array of count×image_size bytes on out's device.
void gather_images(Tensor& out, const uint8_t* images, const int32_t* indices, int64_t n, int64_t image_size);
// Standard normal noise from the Philox stream (seed, stream) starting at `offset` 4-tuples.
void normal_noise(Tensor& out, uint64_t seed, uint32_t stream, uint64_t offset);
// out (n, ...) = rows[indices[i]] of a float dataset on out's device.
void gather_rows(Tensor& out, const Tensor& rows, const int32_t* indices, int64_t n);
// The same three with the per-step value read where the data lives (device memory on CUDA, so a
// captured step replays with the current value; see kernels/image.h and kernels/rng.h):
// indices = permutation + *position; noise offset = (*step)·tuples_per_step.
void gather_images_at(Tensor& out, const uint8_t* images, const int32_t* permutation, const int64_t* position,
                      int64_t n, int64_t image_size);
void gather_rows_at(Tensor& out, const Tensor& rows, const int32_t* permutation, const int64_t* position, int64_t n);
void normal_noise_at(Tensor& out, uint64_t seed, uint32_t stream, const int64_t* step, uint64_t tuples_per_step);

// ---- convolution: a plan per layer shape (cuDNN descriptors + algorithms on CUDA) ----
// Shapes as Tensor shapes: the op's input, output and weight (ConvTranspose2d: C×K×R×S).
Shape conv_input_shape(const ConvShape& s);
Shape conv_output_shape(const ConvShape& s);
Shape conv_weight_shape(const ConvShape& s);
// Square-kernel-stride-pad convenience for the DCGAN layers (kernel may be rectangular).
ConvShape make_conv_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S,
                          int64_t stride, int64_t pad, bool transposed);

class ConvOp {
 public:
  ConvOp(const ConvShape& g, Device device);
  ~ConvOp();
  ConvOp(const ConvOp&) = delete;
  ConvOp& operator=(const ConvOp&) = delete;
  const ConvShape& geometry() const { return g_; }
  void forward(Tensor& y, const Tensor& x, const Tensor& w);
  void backward_data(Tensor& dx, const Tensor& dy, const Tensor& w);      // dx written
  void backward_filter(Tensor& dw, const Tensor& dy, const Tensor& x);    // dw accumulates

 private:
  ConvShape g_;
  Device device_;
  struct Cuda;
  std::unique_ptr<Cuda> cuda_;
};

}  // namespace ds
