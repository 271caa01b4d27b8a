// `--precision`: parsing and applying the float32 math mode (see precision.h).
#include "engine/core/precision.h"

#include <stdexcept>

#include "engine/core/cuda_context.h"

namespace ds {

Precision parse_precision(const std::string& value, const char* flag_name) {
  if (value == "tf32") return Precision::TF32;
  if (value == "fp32") return Precision::FP32;
  throw std::invalid_argument(std::string(flag_name) + " " + value + ": expected fp32 or tf32");
}

const char* precision_name(Precision p) { return p == Precision::FP32 ? "fp32" : "tf32"; }

void apply_precision(Precision p, Device device) {
  if (device == Device::CUDA) CudaContext::get().set_exact_math(p == Precision::FP32);
}

}  // namespace ds
