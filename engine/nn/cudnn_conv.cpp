// cuDNN Conv2d / ConvTranspose2d: descriptors, algorithm choice (heuristics, once per shape) and the
// three legacy-API calls, each with its argument roles cited.
//
// Sources: the prototypes in cuDNN 9's cudnn_cnn.h; NVIDIA's cuDNN API reference, cudnn_cnn library
// (https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-cnn-library.html): cudnnConvolutionForward
// computes y = alpha·conv(x, w) + beta·y, cudnnConvolutionBackwardData dx = alpha·∂/∂x + beta·dx,
// cudnnConvolutionBackwardFilter dw = alpha·∂/∂w + beta·dw (the "scaling parameters" blend
// dst = alpha·result + beta·prior dst); and PyTorch, aten/src/ATen/native/cudnn/ConvShared.cpp
// (ConvTranspose2d forward = cudnn_convolution_backward_input, its backward-input =
// cudnn_convolution_forward_out, its weight gradient = cudnn_convolution_backward_weight with input and
// grad_output swapped) and Conv_v7.cpp (raw_cudnn_convolution_*_out_32bit: the exact argument lists).
//
// CUDA graph capture (engine/train/step_graph.h): the three calls below are captured with the training
// step. What makes that sound: they run on the handle's stream (cudnnSetStream in cuda_context.cpp, a
// non-blocking stream, never the legacy one, which cannot be captured: cudaStreamBeginCapture's
// documentation), their workspace is a caller-owned pointer reserved when the model is built
// (CudaContext::workspace never grows inside a step; a cudaMalloc during capture is prohibited), the
// algorithms are fixed at construction (no cudnnFind during a step), and alpha/beta are read from host
// memory at call time (their values become the captured kernels' arguments; they are constants here).
// NVIDIA's legacy-API documentation does not state capturability either way, so the trainer warms up
// one eager step before capturing and falls back to eager launches if the capture fails.
// Each call is also recorded in the thread's launch log when one is active (kernels/launch_log.h).
#include "engine/nn/cudnn_conv.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "engine/core/cuda_context.h"
#include "kernels/launch_log.h"

namespace ds {

// ---- descriptors (no GPU) -----------------------------------------------------------------------

CudnnConvDescriptors::CudnnConvDescriptors(const ConvShape& s) {
  s.validate();
  // cuDNN's forward convolution: Conv2d is itself; ConvTranspose2d is the backward-data of the Conv2d
  // from the layer's output (N×K×P×Q) back to its input (N×C×H×W), whose out×in filter is C×K×R×S.
  const int P = s.out_h(), Q = s.out_w();
  const int xc = s.transposed ? s.K : s.C, xh = s.transposed ? P : s.H, xw = s.transposed ? Q : s.W;
  const int yc = s.transposed ? s.C : s.K, yh = s.transposed ? s.H : P, yw = s.transposed ? s.W : Q;
  try {
    DS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&conv_x));
    DS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&conv_y));
    DS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&filter));
    DS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(conv_x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N, xc, xh, xw));
    DS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(conv_y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N, yc, yh, yw));
    // Filter k×c×h×w = cuDNN's output channels × input channels × R × S.
    DS_CUDNN_CHECK(cudnnSetFilter4dDescriptor(filter, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, yc, xc, s.R, s.S));
    for (auto& c : conv) {
      DS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c));
      // PyTorch's Conv2d is a cross-correlation (no kernel flip); float compute as PyTorch sets for
      // float tensors (ConvolutionDescriptor::set with dataType FLOAT).
      DS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(c, s.pad_h, s.pad_w, s.stride_h, s.stride_w, 1, 1,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    }
  } catch (...) {
    release();
    throw;
  }
}

CudnnConvDescriptors::~CudnnConvDescriptors() { release(); }

void CudnnConvDescriptors::release() {
  // Never throws; a failure here can only leak a descriptor.
  for (auto& c : conv)
    if (c) cudnnDestroyConvolutionDescriptor(c), c = nullptr;
  if (filter) cudnnDestroyFilterDescriptor(filter), filter = nullptr;
  if (conv_y) cudnnDestroyTensorDescriptor(conv_y), conv_y = nullptr;
  if (conv_x) cudnnDestroyTensorDescriptor(conv_x), conv_x = nullptr;
}

namespace {
std::array<int, 4> tensor_dims(cudnnTensorDescriptor_t d) {
  cudnnDataType_t type;
  std::array<int, 4> dims{}, strides{};
  DS_CUDNN_CHECK(cudnnGetTensor4dDescriptor(d, &type, &dims[0], &dims[1], &dims[2], &dims[3], &strides[0],
                                            &strides[1], &strides[2], &strides[3]));
  // Everything here is packed NCHW float; anything else would be a descriptor bug.
  if (type != CUDNN_DATA_FLOAT || strides[3] != 1 || strides[2] != dims[3] || strides[1] != dims[2] * dims[3] ||
      strides[0] != dims[1] * dims[2] * dims[3])
    throw CudnnError("cuDNN tensor descriptor is not packed NCHW float");
  return dims;
}
}  // namespace

CudnnConvLayerDims cudnn_conv_layer_dims(const ConvShape& s) {
  CudnnConvDescriptors d(s);
  CudnnConvLayerDims out;
  const std::array<int, 4> conv_x = tensor_dims(d.conv_x), conv_y = tensor_dims(d.conv_y);
  out.input = s.transposed ? conv_y : conv_x;
  out.output = s.transposed ? conv_x : conv_y;
  cudnnDataType_t type;
  cudnnTensorFormat_t format;
  DS_CUDNN_CHECK(cudnnGetFilter4dDescriptor(d.filter, &type, &format, &out.filter[0], &out.filter[1],
                                            &out.filter[2], &out.filter[3]));
  for (auto c : d.conv) {
    std::array<int, 6> geometry{};
    DS_CUDNN_CHECK(cudnnGetConvolution2dDescriptor(c, &geometry[0], &geometry[1], &geometry[2], &geometry[3],
                                                   &geometry[4], &geometry[5], &out.mode, &out.compute_type));
    if (c != d.conv[0] && geometry != out.conv) throw CudnnError("cuDNN convolution descriptors disagree");
    out.conv = geometry;
  }
  auto& f = out.forward_output;
  DS_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(d.conv[0], d.conv_x, d.filter, &f[0], &f[1], &f[2], &f[3]));
  return out;
}

// ---- algorithm choice (GPU) ---------------------------------------------------------------------

namespace {

struct AlgoChoice {
  int fwd, bwd_data, bwd_filter;
  cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
};

// Heuristic ranks from cuDNN (best first); the first that succeeded, fits the workspace limit and
// honours the math mode wins. Exact mode: only CUDNN_FMA_MATH results, the same condition PyTorch
// asserts for float convolutions without TF32 (Conv_v7.cpp, ASSERT_CORRECT_PRECISION).
// CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION may convert float data down to half: never taken.
// Only deterministic algorithms (e.g. not BWD_FILTER_ALGO_0/3 or BWD_DATA_ALGO_0, which accumulate
// with atomics): every custom kernel is deterministic too, so two runs, and a resumed run, give the
// same weights on one GPU — the filter PyTorch applies under torch.backends.cudnn.deterministic
// (Conv_v7.cpp, getValidAlgorithms: perf.determinism == CUDNN_DETERMINISTIC).
template <class Perf>
const Perf* pick(const Perf* perf, int count, size_t limit, bool exact) {
  for (int i = 0; i < count; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > limit) continue;
    if (p.determinism != CUDNN_DETERMINISTIC) continue;
    if (p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (exact && p.mathType != CUDNN_FMA_MATH) continue;
    return &p;
  }
  return nullptr;
}

[[noreturn]] void no_algorithm(const char* direction, const ConvShape& s, size_t limit) {
  throw CudnnError(std::string("cuDNN has no ") + direction + " algorithm for " +
                   (s.transposed ? "ConvTranspose2d" : "Conv2d") + " N=" + std::to_string(s.N) +
                   " C=" + std::to_string(s.C) + " " + std::to_string(s.H) + "x" + std::to_string(s.W) +
                   " K=" + std::to_string(s.K) + " kernel " + std::to_string(s.R) + "x" + std::to_string(s.S) +
                   " within a workspace of " + std::to_string(limit) + " bytes");
}

using ChoiceKey = std::tuple<int, int, int, int, int, int, int, int, int, int, int, bool, bool, size_t>;

AlgoChoice choose_algorithms(const CudnnConvDescriptors& d, const ConvShape& s, size_t limit, bool exact) {
  static std::mutex mutex;
  static std::map<ChoiceKey, AlgoChoice> cache;
  const ChoiceKey key{s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.stride_h, s.stride_w, s.pad_h, s.pad_w,
                      s.transposed, exact, limit};
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(key); it != cache.end()) return it->second;

  cudnnHandle_t h = CudaContext::get().cudnn();
  AlgoChoice choice{};
  {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    // (handle, xDesc, wDesc, convDesc, yDesc, requested, returned, results): Conv_v7.cpp, findAlgorithms.
    DS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.conv_x, d.filter, d.conv[0], d.conv_y,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
    const auto* p = pick(perf, n, limit, exact);
    if (!p) no_algorithm("forward", s, limit);
    choice.fwd = p->algo;
    choice.fwd_math = p->mathType;
  }
  {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int n = 0;
    // (handle, wDesc, dyDesc, convDesc, dxDesc, ...): dy has cuDNN's y shape, dx its x shape.
    DS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.filter, d.conv_y, d.conv[1], d.conv_x,
                                                               CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
    const auto* p = pick(perf, n, limit, exact);
    if (!p) no_algorithm("backward-data", s, limit);
    choice.bwd_data = p->algo;
    choice.bwd_data_math = p->mathType;
  }
  {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0;
    // (handle, xDesc, dyDesc, convDesc, dwDesc, ...).
    DS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        h, d.conv_x, d.conv_y, d.conv[2], d.filter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
    const auto* p = pick(perf, n, limit, exact);
    if (!p) no_algorithm("backward-filter", s, limit);
    choice.bwd_filter = p->algo;
    choice.bwd_filter_math = p->mathType;
  }
  cache.emplace(key, choice);
  return choice;
}

}  // namespace

CudnnConv::CudnnConv(const ConvShape& shape, size_t workspace_limit) : shape_(shape), desc_(shape) {
  CudaContext& ctx = CudaContext::get();
  // Math type before asking the heuristics, so they rank the kernels this mode allows (PyTorch,
  // Conv_v7.cpp, Note [behavior of cudnnFind and cudnnGet]). What the four cudnnMathType_t values
  // (cudnn_graph.h: DEFAULT 0, TENSOR_OP 1, TENSOR_OP_ALLOW_CONVERSION 2, FMA 3) mean for FLOAT data,
  // per NVIDIA's cuDNN API reference (cudnnMathType_t) and the legacy-API guide
  // (docs.nvidia.com/deeplearning/cudnn/latest/developer/legacy-api.html, "Tensor Core operations"):
  //   CUDNN_DEFAULT_MATH: no tensor cores before Ampere; on Ampere (sm_80) and newer, TF32 tensor-core
  //     kernels are permitted for float convolutions (inputs rounded to TF32's 10-bit mantissa,
  //     float32 accumulation; NVIDIA, "Accelerating AI Training with TF32 Tensor Cores").
  //   CUDNN_TENSOR_OP_MATH: tensor cores permitted, but cuDNN will not down-convert tensors to use them
  //     (for float data on Ampere+: TF32, as DEFAULT).
  //   CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: tensor cores permitted AND float data may be converted
  //     down to FP16 for them (the legacy guide's "FP32-to-FP16 conversion"): never wanted here; pick()
  //     skips algorithms ranked with it.
  //   CUDNN_FMA_MATH: only kernels built from FMA instructions: no tensor cores, so no TF32 on any GPU
  //     (on pre-Ampere GPUs it behaves as DEFAULT).
  // So `--precision tf32` (the default) = CUDNN_DEFAULT_MATH and `--precision fp32` = CUDNN_FMA_MATH,
  // exactly what PyTorch does with torch.backends.cudnn.allow_tf32 on/off (Conv_v7.cpp sets FMA when
  // allow_tf32 is off; Paddle's conv_cudnn_helper does the same). cuBLAS follows the same switch
  // (CudaContext::set_exact_math: CUBLAS_TF32_TENSOR_OP_MATH or CUBLAS_PEDANTIC_MATH).
  const bool exact = ctx.exact_math();
  for (auto c : desc_.conv) DS_CUDNN_CHECK(cudnnSetConvolutionMathType(c, exact ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));

  const AlgoChoice choice = choose_algorithms(desc_, shape_, workspace_limit, exact);
  fwd_algo_ = static_cast<cudnnConvolutionFwdAlgo_t>(choice.fwd);
  bwd_data_algo_ = static_cast<cudnnConvolutionBwdDataAlgo_t>(choice.bwd_data);
  bwd_filter_algo_ = static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice.bwd_filter);
  // Run each algorithm with the math type it was ranked with, or cuDNN may run a slower variant
  // (PyTorch sets cudnnSetConvolutionMathType(perf.mathType) before every call, Conv_v7.cpp).
  DS_CUDNN_CHECK(cudnnSetConvolutionMathType(desc_.conv[0], choice.fwd_math));
  DS_CUDNN_CHECK(cudnnSetConvolutionMathType(desc_.conv[1], choice.bwd_data_math));
  DS_CUDNN_CHECK(cudnnSetConvolutionMathType(desc_.conv[2], choice.bwd_filter_math));

  cudnnHandle_t h = ctx.cudnn();
  // Argument orders as in Conv_v7.cpp getWorkspaceSize: forward (x, w, conv, y), backward-data
  // (w, dy, conv, dx), backward-filter (x, dy, conv, dw).
  DS_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, desc_.conv_x, desc_.filter, desc_.conv[0],
                                                         desc_.conv_y, fwd_algo_, &fwd_bytes_));
  DS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, desc_.filter, desc_.conv_y, desc_.conv[1],
                                                              desc_.conv_x, bwd_data_algo_, &bwd_data_bytes_));
  DS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, desc_.conv_x, desc_.conv_y, desc_.conv[2],
                                                                desc_.filter, bwd_filter_algo_, &bwd_filter_bytes_));
  workspace_bytes_ = std::max({fwd_bytes_, bwd_data_bytes_, bwd_filter_bytes_});
  ctx.workspace(workspace_bytes_);  // grown now, while the model is built, never inside a step
}

// ---- the layer's three operations ---------------------------------------------------------------

void CudnnConv::forward(float* y, const float* x, const float* w) const {
  if (!shape_.transposed) {
    cudnn_forward(y, x, w);
  } else {
    // ConvTranspose2d forward = cudnnConvolutionBackwardData: the layer's input x plays cuDNN's dy
    // (shape of cuDNN's y), its output y is cuDNN's dx (PyTorch ConvShared.cpp:
    // cudnn_convolution_transpose_forward → cudnn_convolution_backward_input(grad_output = input)).
    cudnn_backward_data(y, x, w);
  }
}

void CudnnConv::backward_data(float* dx, const float* dy, const float* w) const {
  if (!shape_.transposed) {
    cudnn_backward_data(dx, dy, w);
  } else {
    // ConvTranspose2d backward-data = cudnnConvolutionForward with the layer's dy as cuDNN's x and
    // its dx as cuDNN's y (ConvShared.cpp: cudnn_convolution_transpose_backward_input →
    // cudnn_convolution_forward_out(input = grad_output)).
    cudnn_forward(dx, dy, w);
  }
}

void CudnnConv::backward_filter(float* dw, const float* dy, const float* x) const {
  if (!shape_.transposed) {
    cudnn_backward_filter(dw, x, dy);
  } else {
    // ConvTranspose2d weight gradient = cudnnConvolutionBackwardFilter with x and dy swapped: cuDNN's
    // x is the layer's dy, cuDNN's dy is the layer's input x (ConvShared.cpp:
    // cudnn_convolution_transpose_backward_weight passes (grad_output = input_t, input = grad_output_t)).
    cudnn_backward_filter(dw, dy, x);
  }
}

// ---- cuDNN's three primitives -------------------------------------------------------------------

void CudnnConv::cudnn_forward(float* conv_y, const float* conv_x, const float* w) const {
  CudaContext& ctx = CudaContext::get();
  const float alpha = 1.0f, beta = 0.0f;  // y written
  // cudnnConvolutionForward(handle, alpha, xDesc, x, wDesc, w, convDesc, algo, workSpace,
  //                         workSpaceSizeInBytes, beta, yDesc, y): y = alpha·(x ⋆ w) + beta·y.
  void* workspace = ctx.workspace(fwd_bytes_);  // reserved at construction: never grows here
  if (launch_log::LaunchLog* log = launch_log::active())  // every argument, as the call receives it
    log->call("cudnnConvolutionForward", ctx.stream(), ctx.cudnn(), alpha, desc_.conv_x, conv_x, desc_.filter, w,
              desc_.conv[0], fwd_algo_, workspace, fwd_bytes_, beta, desc_.conv_y, conv_y);
  DS_CUDNN_CHECK(cudnnConvolutionForward(ctx.cudnn(), &alpha, desc_.conv_x, conv_x, desc_.filter, w, desc_.conv[0],
                                         fwd_algo_, workspace, fwd_bytes_, &beta, desc_.conv_y, conv_y));
}

void CudnnConv::cudnn_backward_data(float* conv_dx, const float* conv_dy, const float* w) const {
  CudaContext& ctx = CudaContext::get();
  const float alpha = 1.0f, beta = 0.0f;  // dx written
  // cudnnConvolutionBackwardData(handle, alpha, wDesc, w, dyDesc, dy, convDesc, algo, workSpace,
  //                              workSpaceSizeInBytes, beta, dxDesc, dx): dx = alpha·∂(x ⋆ w)/∂x·dy + beta·dx.
  void* workspace = ctx.workspace(bwd_data_bytes_);
  if (launch_log::LaunchLog* log = launch_log::active())
    log->call("cudnnConvolutionBackwardData", ctx.stream(), ctx.cudnn(), alpha, desc_.filter, w, desc_.conv_y,
              conv_dy, desc_.conv[1], bwd_data_algo_, workspace, bwd_data_bytes_, beta, desc_.conv_x, conv_dx);
  DS_CUDNN_CHECK(cudnnConvolutionBackwardData(ctx.cudnn(), &alpha, desc_.filter, w, desc_.conv_y, conv_dy,
                                              desc_.conv[1], bwd_data_algo_, workspace, bwd_data_bytes_, &beta,
                                              desc_.conv_x, conv_dx));
}

void CudnnConv::cudnn_backward_filter(float* dw, const float* conv_x, const float* conv_dy) const {
  CudaContext& ctx = CudaContext::get();
  const float alpha = 1.0f, beta = 1.0f;  // dw accumulates: parameter gradients are += everywhere
  // cudnnConvolutionBackwardFilter(handle, alpha, xDesc, x, dyDesc, dy, convDesc, algo, workSpace,
  //                                workSpaceSizeInBytes, beta, dwDesc, dw): dw = alpha·∂/∂w + beta·dw.
  void* workspace = ctx.workspace(bwd_filter_bytes_);
  if (launch_log::LaunchLog* log = launch_log::active())
    log->call("cudnnConvolutionBackwardFilter", ctx.stream(), ctx.cudnn(), alpha, desc_.conv_x, conv_x,
              desc_.conv_y, conv_dy, desc_.conv[2], bwd_filter_algo_, workspace, bwd_filter_bytes_, beta,
              desc_.filter, dw);
  DS_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx.cudnn(), &alpha, desc_.conv_x, conv_x, desc_.conv_y, conv_dy,
                                                desc_.conv[2], bwd_filter_algo_, workspace, bwd_filter_bytes_,
                                                &beta, desc_.filter, dw));
}

}  // namespace ds
