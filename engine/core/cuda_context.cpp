// CUDA context implementation: lazy creation, the no-GPU probe, checked library calls.
#include "engine/core/cuda_context.h"

#include <mutex>

#include "engine/core/allocation_stats.h"
#include "kernels/fill.h"
#include "kernels/launch_log.h"

namespace ds {

void check_cudnn(cudnnStatus_t status, const char* what, const char* file, int line) {
  if (status != CUDNN_STATUS_SUCCESS)
    throw CudnnError(std::string(what) + " failed: " + cudnnGetErrorString(status) + " at " + file + ":" +
                     std::to_string(line));
}

void check_cublas(cublasStatus_t status, const char* what, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw CublasError(std::string(what) + " failed: " + cublasGetStatusName(status) + " at " + file + ":" +
                      std::to_string(line));
}

std::string missing_kernel_image_reason(const std::string& device_name, int major, int minor,
                                        const std::string& compiled_architectures, const std::string& error) {
  const int cc = major * 10 + minor;
  const std::string advice = cc < 75 ? "darkstar's CUDA path needs compute capability 7.5 or newer"
                                     : "rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(cc) + "-real";
  return "no kernel image for " + device_name + " (compute capability " + std::to_string(major) + "." +
         std::to_string(minor) + ") in this build (architectures " + compiled_architectures +
         "): cudaFuncGetAttributes: " + error + "; " + advice;
}

const CudaProbe& probe_cuda() {
  static CudaProbe probe = [] {
    CudaProbe p;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      // The common cases in plain words (a machine without a GPU is normal, not a driver failure);
      // anything else keeps the runtime's own text.
      int driver = 0;
      if (err == cudaErrorNoDevice)
        p.reason = "no NVIDIA GPU found";
      else if (err == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0)
        p.reason = "no NVIDIA driver installed";
      else if (err == cudaErrorInsufficientDriver)
        p.reason = "the NVIDIA driver supports CUDA up to " + std::to_string(driver / 1000) + "." +
                   std::to_string(driver % 1000 / 10) + ", this build needs " + std::to_string(CUDART_VERSION / 1000) +
                   "." + std::to_string(CUDART_VERSION % 1000 / 10);
      else
        p.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
      cudaGetLastError();  // clear the sticky error so later calls report their own
      return p;
    }
    if (count == 0) {
      p.reason = "no NVIDIA GPU found";
      return p;
    }
    cudaDeviceProp prop{};
    err = cudaGetDeviceProperties(&prop, 0);
    if (err != cudaSuccess) {
      p.reason = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(err);
      cudaGetLastError();
      return p;
    }
    p.device_name = prop.name;
    p.compute_major = prop.major;
    p.compute_minor = prop.minor;
    // A device the build has no image for (neither its SASS nor PTX it can JIT) passes every check
    // above and fails at the first launch with cudaErrorNoKernelImageForDevice. cudaFuncGetAttributes
    // loads the kernel's module for the current device and fails in that case: the runtime API
    // documents cudaErrorInvalidDeviceFunction ("does not exist or is not compiled for the proper
    // device architecture"); any failure here means no kernel of ours can run, whichever code it is.
    err = kcuda::check_kernel_image();
    if (err != cudaSuccess) {
      p.reason = missing_kernel_image_reason(prop.name, prop.major, prop.minor, kcuda::compiled_architectures(),
                                             std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err));
      cudaGetLastError();  // not sticky, but later calls must not report it as theirs
      return p;
    }
    cudnnHandle_t h = nullptr;
    cudnnStatus_t st = cudnnCreate(&h);
    if (st != CUDNN_STATUS_SUCCESS) {
      p.reason = std::string("cudnnCreate: ") + cudnnGetErrorString(st);
      return p;
    }
    cudnnDestroy(h);
    p.available = true;
    return p;
  }();
  return probe;
}

CudaContext& CudaContext::get() {
  const CudaProbe& p = probe_cuda();
  if (!p.available) throw CudaError("no usable CUDA device: " + p.reason);
  static CudaContext ctx;
  return ctx;
}

CudaContext::CudaContext() {
  DS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  DS_CUDNN_CHECK(cudnnCreate(&cudnn_));
  DS_CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
  DS_CUBLAS_CHECK(cublasCreate(&cublas_));
  DS_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  set_exact_math(false);
}

CudaContext::~CudaContext() {
  // Process teardown: errors are ignored, the driver may already be gone.
  if (workspace_) cudaFree(workspace_);
  if (cublas_) cublasDestroy(cublas_);
  if (cudnn_) cudnnDestroy(cudnn_);
  if (stream_) cudaStreamDestroy(stream_);
}

void* CudaContext::workspace(size_t bytes) {
  if (bytes > workspace_bytes_) {
    launch_log::require_outside_step("CudaContext::workspace (growing it: cudaFree + cudaMalloc)");
    ++workspace_generation_;  // a captured graph holding the old pointer must not be replayed
    if (workspace_) {
      DS_CUDA_CHECK(cudaStreamSynchronize(stream_));
      DS_CUDA_CHECK(cudaFree(workspace_));
      workspace_ = nullptr;
      note_release(Device::CUDA, workspace_bytes_);
      workspace_bytes_ = 0;
    }
    DS_CUDA_CHECK(cudaMalloc(&workspace_, bytes));
    note_allocation(Device::CUDA, bytes);
    workspace_bytes_ = bytes;
  }
  return workspace_;
}

void CudaContext::set_exact_math(bool exact) {
  exact_math_ = exact;
  // cuBLAS: pedantic math forbids TF32 and reduced-precision reductions; default allows TF32.
  DS_CUBLAS_CHECK(cublasSetMathMode(cublas_, exact ? CUBLAS_PEDANTIC_MATH : CUBLAS_TF32_TENSOR_OP_MATH));
}

void CudaContext::synchronize() {
  launch_log::require_outside_step("CudaContext::synchronize (cudaStreamSynchronize)");
  DS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace ds
