// cuDNN Conv2d / ConvTranspose2d (legacy API, CROSS_CORRELATION; NCHW float, or bf16 data in NCHW or
// NHWC for `--precision bf16`): the descriptors of one layer shape (buildable without a GPU), the
// algorithms chosen once per shape, and the three calls of each layer kind. The argument roles of every
// cuDNN call, and what the bf16 configuration rests on, are cited in cudnn_conv.cpp.
//
// Shapes as engine/nn/conv_shape.h: x N×C×H×W, y N×K×P×Q; w K×C×R×S (Conv2d) or C×K×R×S
// (ConvTranspose2d). dx WRITTEN (beta = 0), dw ACCUMULATES (beta = 1). All pointers are device memory;
// calls are queued on CudaContext::get().stream().
#pragma once
#include <array>
#include <cstddef>

#include <cudnn.h>

#include "engine/nn/conv_shape.h"
#include "kernels/bf16.h"

namespace ds {

// What the layer's tensors hold and how they are laid out. Float32: x, y, w float32 NCHW (the default,
// unchanged). Bf16: x, y, w bf16 (kernels/bf16.h, bit-compatible with CUDNN_DATA_BFLOAT16), float32
// compute, tensor-core math; nhwc = true lays x and y out N×H×W×C and the filter out×R×S×in (cuDNN's
// "NHWC" filter format), the layout cuDNN's tensor-core kernels read without a transposition.
struct CudnnConvFormat {
  bool bf16 = false;
  bool nhwc = false;
  cudnnDataType_t data_type() const { return bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }
  cudnnTensorFormat_t layout() const { return nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW; }
  // Throws std::invalid_argument for float32 NHWC (never used: the float path is NCHW throughout).
  void validate() const;
};

// The descriptors of the one FORWARD convolution cuDNN sees for a layer. Conv2d: cuDNN's x, y, w are
// the layer's x, y, w. ConvTranspose2d: the layer is the backward-data of the Conv2d that maps the
// layer's output back to its input, so cuDNN's x is the layer's y (N×K×P×Q), cuDNN's y is the layer's
// x (N×C×H×W), and the layer's C×K×R×S weight is exactly cuDNN's out×in×R×S filter.
// Creating and setting descriptors needs no GPU and no handle.
class CudnnConvDescriptors {
 public:
  explicit CudnnConvDescriptors(const ConvShape& shape, CudnnConvFormat format = {});
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
  std::array<int, 4> input_strides{};   // the strides of `input` (n, c, h, w), in elements
  std::array<int, 4> output_strides{};  // of `output`
  cudnnDataType_t data_type{};          // of x, y (both checked equal) and the filter
  cudnnTensorFormat_t filter_format{};
  std::array<int, 6> conv{};  // pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w
  cudnnConvolutionMode_t mode{};
  cudnnDataType_t compute_type{};
  cudnnMathType_t math_type{};  // as the descriptors are built (before any algorithm is chosen)
  // cudnnGetConvolution2dForwardOutputDim of cuDNN's forward convolution: must equal `output` for
  // Conv2d, and `input` for ConvTranspose2d (the transposed conv's output maps back to its input).
  std::array<int, 4> forward_output{};
};
CudnnConvLayerDims cudnn_conv_layer_dims(const ConvShape& shape, CudnnConvFormat format = {});

// One layer's cuDNN convolution. Needs a GPU (CudaContext::get()). Built once per layer when the model
// is built: picks the three algorithms with cuDNN's heuristics (cached per shape and math mode) and
// reserves the context workspace, so forward/backward allocate nothing and never wait on the host.
// Math: FMA only when CudaContext::get().exact_math() at construction time, else TF32 allowed.
class CudnnConv {
 public:
  // Algorithms needing more than `workspace_limit` bytes are passed over.
  explicit CudnnConv(const ConvShape& shape, size_t workspace_limit = size_t(256) << 20,
                     CudnnConvFormat format = {});
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  const ConvShape& shape() const { return shape_; }
  size_t workspace_bytes() const { return workspace_bytes_; }  // the largest of the three algorithms'

  // The layer's own forward / backward, Conv2d or ConvTranspose2d as shape().transposed says.
  void forward(float* y, const float* x, const float* w) const;
  void backward_data(float* dx, const float* dy, const float* w) const;    // dx written
  void backward_filter(float* dw, const float* dy, const float* x) const;  // dw += ∂L/∂w

  // The same on bf16 data (format().bf16 only; the float overloads need !format().bf16). One
  // difference: the bf16 backward_filter WRITES dw (beta = 0), since accumulating in bf16 would round
  // the running sum at every step; the caller adds it into the float32 master gradient
  // (kernels/bf16_cast.h: accumulate_bf16_into_float).
  void forward(bf16* y, const bf16* x, const bf16* w) const;
  void backward_data(bf16* dx, const bf16* dy, const bf16* w) const;    // dx written
  void backward_filter(bf16* dw, const bf16* dy, const bf16* x) const;  // dw written
  const CudnnConvFormat& format() const { return format_; }

  // The chosen algorithms (for logs and `darkstar doctor`).
  cudnnConvolutionFwdAlgo_t forward_algo() const { return fwd_algo_; }
  cudnnConvolutionBwdDataAlgo_t backward_data_algo() const { return bwd_data_algo_; }
  cudnnConvolutionBwdFilterAlgo_t backward_filter_algo() const { return bwd_filter_algo_; }

 private:
  // cuDNN's three primitives on its forward convolution (see CudnnConvDescriptors for the roles).
  // Untyped: the descriptors say what the pointers hold; the public overloads check it.
  void cudnn_forward(void* conv_y, const void* conv_x, const void* w) const;
  void cudnn_backward_data(void* conv_dx, const void* conv_dy, const void* w) const;
  void cudnn_backward_filter(void* dw, const void* conv_x, const void* conv_dy, float beta) const;
  void check_storage(bool bf16, const char* call) const;

  ConvShape shape_;
  CudnnConvFormat format_;
  CudnnConvDescriptors desc_;
  cudnnConvolutionFwdAlgo_t fwd_algo_{};
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo_{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo_{};
  size_t fwd_bytes_ = 0, bwd_data_bytes_ = 0, bwd_filter_bytes_ = 0, workspace_bytes_ = 0;
};

}  // namespace ds
