// `--precision bf16`: a Network's forward and backward with bf16 activations, activation gradients and
// weight copies, while the float32 master parameters, their gradients and the Adam state stay the
// network's own (params(), grads(): one contiguous float buffer each, untouched in layout).
//
// Per network use (each forward): one cast of the whole master buffer into its bf16 mirror, so the
// weights a forward and the backward after it read are always the masters of that moment (Adam runs
// between uses, never inside one). Stage by stage, NCHW bf16 throughout:
//   conv (bf16 x, w, y; float compute) → batch norm + activation fused (bf16 x, y; float gamma, beta,
//   running and saved statistics; double sums) or the activation alone, in place;
//   backward: the fused activation + batch-norm backward (float dgamma, dbeta accumulate) or the
//   activation's alone in place; the conv's weight gradient WRITTEN in bf16 into a scratch buffer and
//   added into the float master gradient (accumulate_bf16_into_float), so the running sum over the
//   step's passes is kept in float; the data gradient written in bf16.
// The network's boundary stays float32, as the float path's: the input is cast to bf16 on entry,
// output() (the float Tensor of the last stage) receives the last bf16 output cast back (exact), the
// gradient given to backward is cast to bf16, and d/d(input) is cast back into the float `dinput`.
// So the loss runs in float on the float logits (the float bce_with_logits: its mean and the
// sigmoid are evaluated on logits that are themselves exact bf16 values; nothing is gained by rounding
// the N logit gradients to bf16 inside the loss, and the float op keeps the trainer unchanged).
//
// The kernels and convolutions come from a Bf16Backend: on CUDA the kernels of kernels/ (bf16
// instantiations, bf16_cast) and cuDNN bf16 convolutions (CudnnConv, CudnnConvFormat{bf16, NCHW});
// in tests the same kernels executed by kernels/emu with a CPU stand-in for cuDNN, so the sequence
// below is the same code on both.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/nn/dcgan.h"
#include "kernels/bf16.h"

namespace ds {

// What the bf16 path needs executed. Pointers are in the backend's memory (device memory on CUDA).
// Shapes: n contiguous values; NCHW with (N, C, HW) for batch norm; the conv calls take the stage
// index (its ConvShape is the network's stage geometry).
class Bf16Backend {
 public:
  virtual ~Bf16Backend() = default;
  // n zeroed values, owned by the backend and kept until it is destroyed (called when the model is
  // built, never in a step).
  virtual bf16* allocate(int64_t n) = 0;
  virtual void cast_float_to_bf16(bf16* out, const float* in, int64_t n) = 0;
  virtual void cast_bf16_to_float(float* out, const bf16* in, int64_t n) = 0;
  virtual void accumulate_bf16_into_float(float* acc, const bf16* in, int64_t n) = 0;
  // In place; None is never passed.
  virtual void activation_forward(Activation a, bf16* y, int64_t n) = 0;
  // d = d/d(activation input) from d = d/d(activation output) and the forward output y, in place.
  virtual void activation_backward(Activation a, bf16* d, const bf16* y, int64_t n) = 0;
  virtual void batchnorm_act_forward_train(bf16* y, Stage& s, const bf16* x, BnActivation act) = 0;
  virtual void batchnorm_act_forward_eval(bf16* y, const Stage& s, const bf16* x, BnActivation act) = 0;
  // dx written, s.dgamma and s.dbeta accumulate (float).
  virtual void batchnorm_act_backward(bf16* dx, Stage& s, const bf16* dy, const bf16* y, const bf16* x,
                                      BnActivation act) = 0;
  virtual void conv_forward(size_t stage, bf16* y, const bf16* x, const bf16* w) = 0;
  virtual void conv_backward_data(size_t stage, bf16* dx, const bf16* dy, const bf16* w) = 0;    // dx written
  virtual void conv_backward_filter(size_t stage, bf16* dw, const bf16* dy, const bf16* x) = 0;  // dw WRITTEN
};

// The CUDA backend of a network's stages (cuDNN bf16 NCHW plans built now, workspace reserved now).
std::unique_ptr<Bf16Backend> make_cuda_bf16_backend(const std::vector<Stage>& stages);

// The bf16 buffers of one network and the forward/backward over them.
class Bf16Path {
 public:
  // Allocates every bf16 buffer through `backend` (nothing is allocated later).
  Bf16Path(std::unique_ptr<Bf16Backend> backend, const std::vector<Stage>& stages, int64_t param_count);
  // `params`: the float master buffer (param_count values) that every stage's weight view points into.
  // The float `out` of the LAST stage receives the output.
  void forward(std::vector<Stage>& stages, const float* params, const Tensor& input, bool train);
  void backward(std::vector<Stage>& stages, const float* params, const Tensor& doutput, Tensor* dinput,
                bool param_grads);

  struct StageBuffers {
    bf16 *pre = nullptr, *out = nullptr, *dout = nullptr, *dpre = nullptr;  // out = pre, dpre = dout without BN
  };
  const std::vector<StageBuffers>& buffers() const { return buffers_; }
  const bf16* weights() const { return weights_; }  // the bf16 mirror of the master buffer
  const bf16* input() const { return input_; }

 private:
  std::unique_ptr<Bf16Backend> backend_;
  int64_t param_count_;
  bf16* weights_ = nullptr;       // param_count_ values, laid out as the master buffer
  bf16* input_ = nullptr;         // the network input in bf16
  bf16* dinput_ = nullptr;        // d/d(input) in bf16, before its cast into the float dinput
  bf16* dweight_ = nullptr;       // one stage's weight gradient (the largest), before it is accumulated
  std::vector<StageBuffers> buffers_;
};

}  // namespace ds
