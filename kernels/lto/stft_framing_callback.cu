// The cuFFT LTO callbacks of the GPU mel path (issue 9): the load callback hands the R2C each frame
// element as window · padded sample straight from the audio, so the frame rows are never written and
// read back; the store callback writes each bin's |X|² straight into the power buffer, so the complex
// spectrum is never stored and read back by a power kernel. One fatbin holds both symbols.
// Compiled by CMake to LTO-IR only (nvcc -dc -fatbin, code=lto_XX; see CMakeLists.txt) and embedded
// with bin2c; MelGpu (audio/mel_gpu.cpp) hands it to cufftXtSetJITCallback, cuFFT JIT-links it into
// its kernels with nvJitLink when the plan is made. Not part of the kernels/*.cu glob: it is neither a
// kernel nor emulated by kernels/emu; its arithmetic is kernels/stft_framing.h's, which is.
//
// Global namespace, ordinary C++ linkage, exactly the parameter types of cufftJITCallbackLoadR: the
// symbol is looked up by the name passed to cufftXtSetJITCallback, as in NVIDIA's sample
// (github.com/NVIDIA/CUDALibrarySamples, cuFFT/lto_callback_window_1d: `__device__ cufftComplex
// windowing_callback(void* input, unsigned long long idx, void* info, void* sharedmem)` set with
// callback_name = "windowing_callback").
#include <cufftXt.h>

#include <type_traits>

#include "kernels/stft_framing.h"

__device__ cufftReal ds_stft_framing_load(void* dataIn, unsigned long long offset, void* callerInfo,
                                          void* sharedPointer) {
  return ds::stft_framing_load(dataIn, offset, callerInfo, sharedPointer);
}

__device__ void ds_stft_power_store(void* dataOut, unsigned long long offset, cufftComplex element, void* callerInfo,
                                    void* sharedPointer) {
  ds::stft_power_store(dataOut, offset, element, callerInfo, sharedPointer);
}

// The definitions have exactly the types cuFFT's LTO real-load and complex-store callbacks have
// (cufftXt.h, CUDA 13).
static_assert(std::is_same<decltype(&ds_stft_framing_load), cufftJITCallbackLoadR>::value,
              "ds_stft_framing_load must have cufftJITCallbackLoadR's signature");
static_assert(std::is_same<decltype(&ds_stft_power_store), cufftJITCallbackStoreC>::value,
              "ds_stft_power_store must have cufftJITCallbackStoreC's signature");
