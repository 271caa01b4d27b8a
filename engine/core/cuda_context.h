// The CUDA context: one stream, the cuDNN and cuBLAS handles and one growable workspace, all created
// lazily on first use. "No GPU" is any error from cudaGetDeviceCount, cudaGetDeviceProperties, the
// kernel-image check or cudnnCreate.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include <cublas_v2.h>
#include <cudnn.h>

#include "kernels/check.h"

namespace ds {

struct CudaProbe {
  bool available = false;
  std::string reason;  // why not, when not available (e.g. "cudaGetDeviceCount: insufficient driver")
  std::string device_name;
  int compute_major = 0, compute_minor = 0;  // the device's compute capability (0.0 when none was found)
};

// Checks (once, cached) whether a usable CUDA device and cuDNN exist and whether this build holds a
// kernel image that device can run (a GPU older than the build's architectures is "not usable", so
// --device auto falls back to the CPU instead of failing at the first kernel). Never throws.
const CudaProbe& probe_cuda();

// The probe's one-line reason when the build has no kernel image for the device, e.g.
// "no kernel image for Tesla V100 (compute capability 7.0) in this build (architectures 750,800):
// cudaFuncGetAttributes: <error>; darkstar's CUDA path needs compute capability 7.5 or newer".
std::string missing_kernel_image_reason(const std::string& device_name, int major, int minor,
                                        const std::string& compiled_architectures, const std::string& error);

struct CudnnError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct CublasError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
void check_cudnn(cudnnStatus_t status, const char* what, const char* file, int line);
void check_cublas(cublasStatus_t status, const char* what, const char* file, int line);

class CudaContext {
 public:
  // The process-wide context; throws CudaError naming the reason if no GPU is usable.
  static CudaContext& get();

  cudaStream_t stream() const { return stream_; }
  cudnnHandle_t cudnn() const { return cudnn_; }
  cublasHandle_t cublas() const { return cublas_; }

  // A device workspace of at least `bytes` (grown only when models are built, never in a step).
  void* workspace(size_t bytes);
  size_t workspace_size() const { return workspace_bytes_; }
  // Increases every time the workspace is reallocated (its pointer may change): a CUDA graph captured
  // with an older generation holds a freed pointer (engine/train/step_graph.h checks it before replay).
  uint64_t workspace_generation() const { return workspace_generation_; }

  // Exact-comparison mode: FMA-only math in cuDNN and cuBLAS (no TF32). Default: TF32 allowed.
  void set_exact_math(bool exact);
  bool exact_math() const { return exact_math_; }

  void synchronize();

  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

 private:
  CudaContext();
  ~CudaContext();
  cudaStream_t stream_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  uint64_t workspace_generation_ = 0;
  bool exact_math_ = false;
};

}  // namespace ds

#define DS_CUDNN_CHECK(call) ::ds::check_cudnn((call), #call, __FILE__, __LINE__)
#define DS_CUBLAS_CHECK(call) ::ds::check_cublas((call), #call, __FILE__, __LINE__)
