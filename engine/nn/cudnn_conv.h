// cuDNN Conv2d / ConvTranspose2d (legacy API, NCHW float, CROSS_CORRELATION): the descriptors of one
// layer shape (buildable without a GPU), the algorithms chosen once per shape, and the three calls of
// each layer kind. The argument roles of every cuDNN call are cited in cudnn_conv.cpp.
//
// Shapes as engine/nn/conv_shape.h: x N×C×H×W, y N×K×P×Q; w K×C×R×S (Conv2d) or C×K×R×S
// (ConvTranspose2d). dx WRITTEN (beta = 0), dw ACCUMULATES (beta = 1). All pointers are device memory;
// calls are queued on CudaContext::get().stream().
#pragma once
#include <array>
#include <cstddef>

#include <cudnn.h>

#include "engine/nn/conv_shape.h"

namespace ds {

// The descriptors of the one FORWARD convolution cuDNN sees for a layer. Conv2d: cuDNN's x, y, w are
// the layer's x, y, w. ConvTranspose2d: the layer is the backward-data of the Conv2d that maps the
// layer's output back to its input, so cuDNN's x is the layer's y (N×K×P×Q), cuDNN's y is the layer's
// x (N×C×H×W), and the layer's C×K×R×S weight is exactly cuDNN's out×in×R×S filter.
// Creating and setting descriptors needs no GPU and no handle.
class CudnnConvDescriptors {
 public:
  explicit CudnnConvDescriptors(const ConvShape& shape);
  ~CudnnConvDescriptors();
  CudnnConvDescriptors(const CudnnConvDescriptors&) = delete;
  CudnnConvDescriptors& operator=(const CudnnConvDescriptors&) = delete;

  cudnnTensorDescriptor_t conv_x = nullptr;  // cuDNN's forward input
  cudnnTensorDescriptor_t conv_y = nullptr;  // cuDNN's forward output
  cudnnFilterDescriptor_t filter = nullptr;
  // One per direction (0 forward, 1 backward-data, 2 backward-filter): the math type is set to the
  // one each chosen algorithm was ranked with, as PyTorch does (Conv_v7.cpp, Note [behavior of
  // cudnnFind and cudnnGet]).
  cudnnConvolutionDescriptor_t conv[3] = {nullptr, nullptr, nullptr};

 private:
  void release();
};

// What cuDNN's descriptors say about a layer, read back from them: no GPU needed.
struct CudnnConvLayerDims {
  std::array<int, 4> input{};   // the layer's x as a cuDNN tensor descriptor holds it (n, c, h, w)
  std::array<int, 4> output{};  // the layer's y
  std::array<int, 4> filter{};  // the filter descriptor (k, c, r, s) in cuDNN's out×in order
  std::array<int, 6> conv{};  // pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w
  cudnnConvolutionMode_t mode{};
  cudnnDataType_t compute_type{};
  // cudnnGetConvolution2dForwardOutputDim of cuDNN's forward convolution: must equal `output` for
  // Conv2d, and `input` for ConvTranspose2d (the transposed conv's output maps back to its input).
  std::array<int, 4> forward_output{};
};
CudnnConvLayerDims cudnn_conv_layer_dims(const ConvShape& shape);

// One layer's cuDNN convolution. Needs a GPU (CudaContext::get()). Built once per layer when the model
// is built: picks the three algorithms with cuDNN's heuristics (cached per shape and math mode) and
// reserves the context workspace, so forward/backward allocate nothing and never wait on the host.
// Math: FMA only when CudaContext::get().exact_math() at construction time, else TF32 allowed.
class CudnnConv {
 public:
  // Algorithms needing more than `workspace_limit` bytes are passed over.
  explicit CudnnConv(const ConvShape& shape, size_t workspace_limit = size_t(256) << 20);
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  const ConvShape& shape() const { return shape_; }
  size_t workspace_bytes() const { return workspace_bytes_; }  // the largest of the three algorithms'

  // The layer's own forward / backward, Conv2d or ConvTranspose2d as shape().transposed says.
  void forward(float* y, const float* x, const float* w) const;
  void backward_data(float* dx, const float* dy, const float* w) const;    // dx written
  void backward_filter(float* dw, const float* dy, const float* x) const;  // dw += ∂L/∂w

  // The chosen algorithms (for logs and `darkstar doctor`).
  cudnnConvolutionFwdAlgo_t forward_algo() const { return fwd_algo_; }
  cudnnConvolutionBwdDataAlgo_t backward_data_algo() const { return bwd_data_algo_; }
  cudnnConvolutionBwdFilterAlgo_t backward_filter_algo() const { return bwd_filter_algo_; }

 private:
  // cuDNN's three primitives on its forward convolution (see CudnnConvDescriptors for the roles).
  void cudnn_forward(float* conv_y, const float* conv_x, const float* w) const;
  void cudnn_backward_data(float* conv_dx, const float* conv_dy, const float* w) const;
  void cudnn_backward_filter(float* dw, const float* conv_x, const float* conv_dy) const;

  ConvShape shape_;
  CudnnConvDescriptors desc_;
  cudnnConvolutionFwdAlgo_t fwd_algo_{};
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo_{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo_{};
  size_t fwd_bytes_ = 0, bwd_data_bytes_ = 0, bwd_filter_bytes_ = 0, workspace_bytes_ = 0;
};

}  // namespace ds
