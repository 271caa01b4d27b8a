// A stand-in for the cuFFT kernel the mel path's callbacks are linked into (issue 9), for
// tests/test_unit_lto_link.cpp: compiled to LTO-IR like the callbacks, it declares them exactly as
// cufftJITCallbackLoadR and cufftJITCallbackStoreC type them and calls both, so nvJitLink must resolve
// the two symbol names MelGpu hands to cufftXtSetJITCallback against kernels/lto/stft_framing_callback.cu's
// LTO-IR.
#include <cufftXt.h>

extern __device__ cufftReal ds_stft_framing_load(void* dataIn, unsigned long long offset, void* callerInfo,
                                                 void* sharedPointer);
extern __device__ void ds_stft_power_store(void* dataOut, unsigned long long offset, cufftComplex element,
                                           void* callerInfo, void* sharedPointer);

__global__ void ds_lto_link_probe(float* out, void* caller_info, unsigned long long n) {
  const cufftJITCallbackLoadR load = ds_stft_framing_load;   // the declarations have cuFFT's LTO load
  const cufftJITCallbackStoreC store = ds_stft_power_store;  // and store types
  for (unsigned long long i = blockIdx.x * 1ull * blockDim.x + threadIdx.x; i < n; i += 1ull * gridDim.x * blockDim.x) {
    const float v = load(out, i, caller_info, nullptr);
    store(out, i, make_float2(v, -v), out, nullptr);
  }
}
