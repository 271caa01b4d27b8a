// `--precision`: parsing and applying the float32 math mode (see precision.h).
#include "engine/core/precision.h"

#include <stdexcept>

#include "engine/core/cuda_context.h"

namespace ds {

Precision parse_precision(const std::string& value, const char* flag_name) {
  if (value == "tf32") return Precision::TF32;
  if (value == "fp32") return Precision::FP32;
  if (value == "bf16") return Precision::BF16;
  throw std::invalid_argument(std::string(flag_name) + " " + value + ": expected fp32, tf32 or bf16");
}

const char* precision_name(Precision p) {
  if (p == Precision::FP32) return "fp32";
  if (p == Precision::BF16) return "bf16";
  return "tf32";
}

void apply_precision(Precision p, Device device, const char* flag_name) {
  if (p == Precision::BF16) {
    if (device != Device::CUDA)
      throw std::invalid_argument(std::string(flag_name) +
                                  " bf16: needs a CUDA device (--device cuda); the CPU computes in float32 only");
    throw std::invalid_argument(std::string(flag_name) +
                                " bf16: not implemented yet on CUDA (the bf16 kernels and cuDNN descriptors exist, "
                                "the training step does not use them yet); use tf32 or fp32");
  }
  if (device == Device::CUDA) CudaContext::get().set_exact_math(p == Precision::FP32);
}

}  // namespace ds
