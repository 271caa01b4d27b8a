// A stand-in for the cuFFT kernel the mel path's load callback is linked into (issue 9), for
// tests/test_unit_lto_link.cpp: compiled to LTO-IR like the callback, it declares the callback exactly
// as cufftJITCallbackLoadR types it and calls it, so nvJitLink must resolve the symbol name MelGpu
// hands to cufftXtSetJITCallback against kernels/lto/stft_framing_callback.cu's LTO-IR.
#include <cufftXt.h>

extern __device__ cufftReal ds_stft_framing_load(void* dataIn, unsigned long long offset, void* callerInfo,
                                                 void* sharedPointer);

__global__ void ds_lto_link_probe(float* out, void* caller_info, unsigned long long n) {
  const cufftJITCallbackLoadR load = ds_stft_framing_load;  // the declaration has cuFFT's LTO load type
  for (unsigned long long i = blockIdx.x * 1ull * blockDim.x + threadIdx.x; i < n; i += 1ull * gridDim.x * blockDim.x)
    out[i] = load(out, i, caller_info, nullptr);
}
