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
// bf16 (`--precision bf16`), what it rests on:
//   * data and compute types: every tensor and the filter CUDNN_DATA_BFLOAT16, the convolution
//     descriptor's compute type CUDNN_DATA_FLOAT (products accumulated in float32), tensor-core math
//     CUDNN_TENSOR_OP_MATH. This is PyTorch's choice for bfloat16 convolutions
//     (aten/src/ATen/cudnn/Descriptors.h, ConvolutionDescriptor::set: mathType = CUDNN_DATA_FLOAT for
//     CUDNN_DATA_BFLOAT16 data, cudnnSetConvolutionMathType(CUDNN_TENSOR_OP_MATH); the same code is
//     copied in stable-fast's cudnn_convolution.cpp). NOT verified here: NVIDIA's per-function table of
//     supported data-type configurations (cudnnConvolutionForward/BackwardData/BackwardFilter, "BFLOAT16"
//     rows) was not in the reference material available to this session; cuDNN itself rejects an
//     unsupported combination with CUDNN_STATUS_NOT_SUPPORTED when the algorithms are chosen, which
//     the tests/gpu bf16 case would show on the first GPU run.
//   * scaling factors alpha/beta are float for BFLOAT16 data (PyTorch, Descriptors.h, Constant: float
//     for HALF, BFLOAT16 and FLOAT).
//   * tensor cores: the legacy-API guide (docs.nvidia.com/deeplearning/cudnn/latest/developer/legacy-api.html,
//     "Tensor Core operations") says they are triggered only with CUDNN_TENSOR_OP_MATH (or
//     ..._ALLOW_CONVERSION) on the convolution descriptor, for IMPLICIT_PRECOMP_GEMM / WINOGRAD_NONFUSED
//     forward, BWD_DATA_ALGO_1 and BWD_FILTER_ALGO_1, and that cuDNN "may use padding, folding, and
//     NCHW-to-NHWC transformations" to reach them: NHWC data skips those transformations, hence the
//     nhwc option of CudnnConvFormat.
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
#include <stdexcept>
#include <string>
#include <tuple>

#include "engine/core/cuda_context.h"
#include "kernels/launch_log.h"

namespace ds {

// ---- descriptors (no GPU) -----------------------------------------------------------------------

void CudnnConvFormat::validate() const {
  if (nhwc && !bf16) throw std::invalid_argument("cuDNN convolution: NHWC is only used with bf16 data");
}

CudnnConvDescriptors::CudnnConvDescriptors(const ConvShape& s, CudnnConvFormat format) {
  s.validate();
  format.validate();
  const cudnnDataType_t data = format.data_type();
  const cudnnTensorFormat_t layout = format.layout();
  // cuDNN's forward convolution: Conv2d is itself; ConvTranspose2d is the backward-data of the Conv2d
  // from the layer's output (N×K×P×Q) back to its input (N×C×H×W), whose out×in filter is C×K×R×S.
  const int P = s.out_h(), Q = s.out_w();
  const int xc = s.transposed ? s.K : s.C, xh = s.transposed ? P : s.H, xw = s.transposed ? Q : s.W;
  const int yc = s.transposed ? s.C : s.K, yh = s.transposed ? s.H : P, yw = s.transposed ? s.W : Q;
  try {
    DS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&conv_x));
    DS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&conv_y));
    DS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&filter));
    // (desc, format, dataType, n, c, h, w): sizes are given in NCHW order whatever the format; the
    // format says how they lie in memory (packed).
    DS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(conv_x, layout, data, s.N, xc, xh, xw));
    DS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(conv_y, layout, data, s.N, yc, yh, yw));
    // Filter k×c×h×w = cuDNN's output channels × input channels × R × S ((desc, dataType, format, k, c,
    // h, w); NHWC stores it k×h×w×c).
    DS_CUDNN_CHECK(cudnnSetFilter4dDescriptor(filter, data, layout, yc, xc, s.R, s.S));
    for (auto& c : conv) {
      DS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c));
      // PyTorch's Conv2d is a cross-correlation (no kernel flip); float compute as PyTorch sets for
      // float tensors (ConvolutionDescriptor::set with dataType FLOAT).
      // float compute for bf16 data as well (see the header comment).
      DS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(c, s.pad_h, s.pad_w, s.stride_h, s.stride_w, 1, 1,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      // bf16: tensor-core math from the start (the float path sets its math type per precision when a
      // CudnnConv is built; a descriptor starts as CUDNN_DEFAULT_MATH).
      if (format.bf16) DS_CUDNN_CHECK(cudnnSetConvolutionMathType(c, CUDNN_TENSOR_OP_MATH));
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
struct TensorDims {
  std::array<int, 4> dims{}, strides{};
  cudnnDataType_t type{};
};
// Reads a descriptor back; the strides are checked by the caller (tests/test_cudnn_descriptors.cpp).
TensorDims tensor_dims(cudnnTensorDescriptor_t d) {
  TensorDims t;
  DS_CUDNN_CHECK(cudnnGetTensor4dDescriptor(d, &t.type, &t.dims[0], &t.dims[1], &t.dims[2], &t.dims[3],
                                            &t.strides[0], &t.strides[1], &t.strides[2], &t.strides[3]));
  return t;
}
}  // namespace

CudnnConvLayerDims cudnn_conv_layer_dims(const ConvShape& s, CudnnConvFormat format) {
  CudnnConvDescriptors d(s, format);
  CudnnConvLayerDims out;
  const TensorDims conv_x = tensor_dims(d.conv_x), conv_y = tensor_dims(d.conv_y);
  if (conv_x.type != conv_y.type) throw CudnnError("cuDNN tensor descriptors disagree on the data type");
  out.input = s.transposed ? conv_y.dims : conv_x.dims;
  out.output = s.transposed ? conv_x.dims : conv_y.dims;
  out.input_strides = s.transposed ? conv_y.strides : conv_x.strides;
  out.output_strides = s.transposed ? conv_x.strides : conv_y.strides;
  cudnnDataType_t type;
  DS_CUDNN_CHECK(cudnnGetFilter4dDescriptor(d.filter, &type, &out.filter_format, &out.filter[0], &out.filter[1],
                                            &out.filter[2], &out.filter[3]));
  if (type != conv_x.type) throw CudnnError("cuDNN filter and tensor descriptors disagree on the data type");
  out.data_type = type;
  for (auto c : d.conv) {
    std::array<int, 6> geometry{};
    DS_CUDNN_CHECK(cudnnGetConvolution2dDescriptor(c, &geometry[0], &geometry[1], &geometry[2], &geometry[3],
                                                   &geometry[4], &geometry[5], &out.mode, &out.compute_type));
    if (c != d.conv[0] && geometry != out.conv) throw CudnnError("cuDNN convolution descriptors disagree");
    out.conv = geometry;
    DS_CUDNN_CHECK(cudnnGetConvolutionMathType(c, &out.math_type));
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

using ChoiceKey = std::tuple<int, int, int, int, int, int, int, int, int, int, int, bool, bool, size_t, bool, bool>;

AlgoChoice choose_algorithms(const CudnnConvDescriptors& d, const ConvShape& s, size_t limit, bool exact,
                             CudnnConvFormat format) {
  static std::mutex mutex;
  static std::map<ChoiceKey, AlgoChoice> cache;
  const ChoiceKey key{s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.stride_h, s.stride_w, s.pad_h, s.pad_w,
                      s.transposed, exact, limit, format.bf16, format.nhwc};
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

CudnnConv::CudnnConv(const ConvShape& shape, size_t workspace_limit, CudnnConvFormat format)
    : shape_(shape), format_(format), desc_(shape, format) {
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
  // bf16 data: the descriptors already hold CUDNN_TENSOR_OP_MATH (see the file's header comment); the
  // fp32/tf32 switch does not apply (`--precision` is one choice of fp32, tf32 or bf16).
  const bool exact = !format_.bf16 && ctx.exact_math();
  if (!format_.bf16)
    for (auto c : desc_.conv) DS_CUDNN_CHECK(cudnnSetConvolutionMathType(c, exact ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));

  const AlgoChoice choice = choose_algorithms(desc_, shape_, workspace_limit, exact, format_);
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

void CudnnConv::check_storage(bool bf16, const char* call) const {
  if (bf16 != format_.bf16)
    throw std::invalid_argument(std::string("CudnnConv::") + call + ": called with " + (bf16 ? "bf16" : "float") +
                                " data on a layer built for " + (format_.bf16 ? "bf16" : "float"));
}

void CudnnConv::forward(bf16* y, const bf16* x, const bf16* w) const {
  check_storage(true, "forward");
  if (!shape_.transposed) cudnn_forward(y, x, w);
  else cudnn_backward_data(y, x, w);  // roles as in the float overload below
}

void CudnnConv::backward_data(bf16* dx, const bf16* dy, const bf16* w) const {
  check_storage(true, "backward_data");
  if (!shape_.transposed) cudnn_backward_data(dx, dy, w);
  else cudnn_forward(dx, dy, w);
}

void CudnnConv::backward_filter(bf16* dw, const bf16* dy, const bf16* x) const {
  check_storage(true, "backward_filter");
  // beta = 0: dw written in bf16, accumulated into the float32 master gradient by the caller.
  if (!shape_.transposed) cudnn_backward_filter(dw, x, dy, 0.0f);
  else cudnn_backward_filter(dw, dy, x, 0.0f);
}

void CudnnConv::forward(float* y, const float* x, const float* w) const {
  check_storage(false, "forward");
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
  check_storage(false, "backward_data");
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
  check_storage(false, "backward_filter");
  if (!shape_.transposed) {
    cudnn_backward_filter(dw, x, dy, 1.0f);
  } else {
    // ConvTranspose2d weight gradient = cudnnConvolutionBackwardFilter with x and dy swapped: cuDNN's
    // x is the layer's dy, cuDNN's dy is the layer's input x (ConvShared.cpp:
    // cudnn_convolution_transpose_backward_weight passes (grad_output = input_t, input = grad_output_t)).
    cudnn_backward_filter(dw, dy, x, 1.0f);
  }
}

// ---- cuDNN's three primitives -------------------------------------------------------------------

// alpha and beta are floats for FLOAT and BFLOAT16 data alike (see the header comment).
void CudnnConv::cudnn_forward(void* conv_y, const void* conv_x, const void* w) const {
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

void CudnnConv::cudnn_backward_data(void* conv_dx, const void* conv_dy, const void* w) const {
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

void CudnnConv::cudnn_backward_filter(void* dw, const void* conv_x, const void* conv_dy, float beta) const {
  CudaContext& ctx = CudaContext::get();
  // beta = 1 (float): dw accumulates, parameter gradients are += everywhere; 0 (bf16): dw written.
  const float alpha = 1.0f;
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
