// `--precision fp32|tf32` (train, darkstar-bench): the float32 math mode of the CUDA libraries.
// tf32 (the default): cuDNN convolutions and cuBLAS GEMMs may use TF32 tensor cores on Ampere and newer
// (inputs rounded to a 10-bit mantissa, float32 accumulation). fp32: FMA-only cuDNN kernels and
// pedantic cuBLAS, full float32 products (CudaContext::set_exact_math). Custom kernels are float32 /
// double either way. Older GPUs (Turing) have no TF32: both modes compute in full float32 there.
// bf16 (CUDA only): bf16 activations, activation gradients and weight copies, NCHW, cuDNN convolutions
// on bf16 data with float32 compute and tensor-core math; float32 master weights, gradients, batch-norm
// state and Adam state; the loss in float32 (engine/nn/bf16_path.h). Checkpoints hold the float32
// masters, so a bf16 run resumes in tf32 or fp32 and the other way round.
#pragma once
#include <string>

#include "engine/core/tensor.h"

namespace ds {

enum class Precision { TF32, FP32, BF16 };

// "tf32", "fp32" or "bf16"; anything else throws std::invalid_argument naming `flag_name` and the choices.
Precision parse_precision(const std::string& value, const char* flag_name = "--precision");
const char* precision_name(Precision p);
// Applies p to the CUDA context when `device` is CUDA (before any model is built: cuDNN's algorithms are
// chosen per math mode and the bf16 buffers made when a layer is constructed); nothing on the CPU.
// bf16 on the CPU throws std::invalid_argument naming `flag_name` (a CUDA-only mode) without touching the
// CUDA context.
void apply_precision(Precision p, Device device, const char* flag_name = "--precision");
// Why a GPU of compute capability major.minor cannot run `flag_name` bf16, or "" when it can: bf16
// tensor cores (and with them cuDNN's bf16 convolutions) begin with Ampere, compute capability 8.0.
// apply_precision throws it as std::invalid_argument before any model is built, so a Turing user reads
// one line naming the GPU instead of a cuDNN "not supported" status at the first layer.
std::string bf16_unsupported_reason(const std::string& device_name, int major, int minor,
                                    const char* flag_name = "--precision");
// Whether CUDA networks built from now on take the bf16 path (Network::use_bf16); set by
// apply_precision (true for bf16 on CUDA, false for tf32/fp32 on CUDA). Process-wide, like the math mode.
bool bf16_networks();
void set_bf16_networks(bool bf16);

}  // namespace ds
