// Checked cuFFT calls: DS_CUFFT_CHECK(call) throws ds::CufftError naming the call, its cufftResult, the
// file and the line (cuFFT has no status-to-string function, so the names are spelled out here).
#pragma once
#include <stdexcept>
#include <string>

#include <cufft.h>

namespace ds {

struct CufftError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline const char* cufft_result_name(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_TYPE: return "CUFFT_INVALID_TYPE";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    case CUFFT_UNALIGNED_DATA: return "CUFFT_UNALIGNED_DATA";
    case CUFFT_INVALID_DEVICE: return "CUFFT_INVALID_DEVICE";
    case CUFFT_NO_WORKSPACE: return "CUFFT_NO_WORKSPACE";
    case CUFFT_NOT_IMPLEMENTED: return "CUFFT_NOT_IMPLEMENTED";
    case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
    // CUDA 13's cufft.h; what a plan with an LTO callback returns when nvJitLink is absent or fails.
    case CUFFT_MISSING_DEPENDENCY: return "CUFFT_MISSING_DEPENDENCY";
    case CUFFT_NVRTC_FAILURE: return "CUFFT_NVRTC_FAILURE";
    case CUFFT_NVJITLINK_FAILURE: return "CUFFT_NVJITLINK_FAILURE";
    case CUFFT_NVSHMEM_FAILURE: return "CUFFT_NVSHMEM_FAILURE";
    default: return "cufftResult (unnamed)";
  }
}

inline void check_cufft(cufftResult r, const char* what, const char* file, int line) {
  if (r != CUFFT_SUCCESS)
    throw CufftError(std::string(what) + " failed: " + cufft_result_name(r) + " (" + std::to_string(int(r)) +
                     ") at " + file + ":" + std::to_string(line));
}

}  // namespace ds

#define DS_CUFFT_CHECK(call) ::ds::check_cufft((call), #call, __FILE__, __LINE__)
