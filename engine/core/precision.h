// `--precision fp32|tf32` (train, darkstar-bench): the float32 math mode of the CUDA libraries.
// tf32 (the default): cuDNN convolutions and cuBLAS GEMMs may use TF32 tensor cores on Ampere and newer
// (inputs rounded to a 10-bit mantissa, float32 accumulation). fp32: FMA-only cuDNN kernels and
// pedantic cuBLAS, full float32 products (CudaContext::set_exact_math). Custom kernels are float32 /
// double either way. Older GPUs (Turing) have no TF32: both modes compute in full float32 there.
// bf16: bf16 activations and weight copies with float32 master weights and Adam state, CUDA only. The
// pieces exist (kernels/bf16.h storage, the bf16 instantiations of the element-wise, batch-norm and
// loss kernels, kernels/bf16_cast.h, bf16 cuDNN descriptors in engine/nn/cudnn_conv.h) but the DCGAN
// step does not use them yet, so apply_precision refuses bf16 on every device, naming the flag.
#pragma once
#include <string>

#include "engine/core/tensor.h"

namespace ds {

enum class Precision { TF32, FP32, BF16 };

// "tf32", "fp32" or "bf16"; anything else throws std::invalid_argument naming `flag_name` and the choices.
Precision parse_precision(const std::string& value, const char* flag_name = "--precision");
const char* precision_name(Precision p);
// Applies p to the CUDA context when `device` is CUDA (before any model is built: cuDNN's algorithms are
// chosen per math mode when a layer is constructed); nothing on the CPU. bf16 throws
// std::invalid_argument naming `flag_name`: on the CPU always (a CUDA-only mode), on CUDA "not implemented
// yet" (see above). Neither case touches the CUDA context.
void apply_precision(Precision p, Device device, const char* flag_name = "--precision");

}  // namespace ds
