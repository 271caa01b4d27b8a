// `--precision fp32|tf32` (train, darkstar-bench): the float32 math mode of the CUDA libraries.
// tf32 (the default): cuDNN convolutions and cuBLAS GEMMs may use TF32 tensor cores on Ampere and newer
// (inputs rounded to a 10-bit mantissa, float32 accumulation). fp32: FMA-only cuDNN kernels and
// pedantic cuBLAS, full float32 products (CudaContext::set_exact_math). Custom kernels are float32 /
// double either way. Older GPUs (Turing) have no TF32: both modes compute in full float32 there.
#pragma once
#include <string>

#include "engine/core/tensor.h"

namespace ds {

enum class Precision { TF32, FP32 };

// "tf32" or "fp32"; anything else throws std::invalid_argument naming `flag_name` and the choices.
Precision parse_precision(const std::string& value, const char* flag_name = "--precision");
const char* precision_name(Precision p);
// Applies p to the CUDA context when `device` is CUDA (before any model is built: cuDNN's algorithms are
// chosen per math mode when a layer is constructed); nothing on the CPU.
void apply_precision(Precision p, Device device);

}  // namespace ds
