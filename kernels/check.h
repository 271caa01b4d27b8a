// Checked calls: every CUDA runtime call and every launch goes through these, and a failure throws
// ds::CudaError naming the call, the file and the line.
#pragma once
#include <stdexcept>
#include <string>

#include <cuda_runtime_api.h>  // a plain C header: the emulated build uses its types too

namespace ds {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  throw CudaError(std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                  ") at " + file + ":" + std::to_string(line));
}
inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, what, file, line);
}
// After a kernel launch: reports bad launch configurations at once (no device synchronisation).
inline void check_launch(const char* kernel, const char* file, int line) {
  check_cuda(cudaGetLastError(), (std::string("launch of ") + kernel).c_str(), file, line);
}

}  // namespace ds

#define DS_CUDA_CHECK(call) ::ds::check_cuda((call), #call, __FILE__, __LINE__)
