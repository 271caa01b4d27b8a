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

namespace {
bool g_bf16_networks = false;
}  // namespace

bool bf16_networks() { return g_bf16_networks; }
void set_bf16_networks(bool bf16) { g_bf16_networks = bf16; }

std::string bf16_unsupported_reason(const std::string& device_name, int major, int minor, const char* flag_name) {
  if (major >= 8) return "";
  return std::string(flag_name) + " bf16: " + device_name + " has compute capability " + std::to_string(major) + "." +
         std::to_string(minor) + "; bf16 needs 8.0 or newer (Ampere): use " + flag_name + " tf32 or fp32";
}

void apply_precision(Precision p, Device device, const char* flag_name) {
  if (p == Precision::BF16 && device != Device::CUDA)
    throw std::invalid_argument(std::string(flag_name) +
                                " bf16: needs a CUDA device (--device cuda); the CPU computes in float32 only");
  if (device != Device::CUDA) return;
  if (p == Precision::BF16) {
    const CudaProbe& probe = probe_cuda();  // no GPU at all: CudaContext::get() below says so
    if (probe.available) {
      const std::string reason =
          bf16_unsupported_reason(probe.device_name, probe.compute_major, probe.compute_minor, flag_name);
      if (!reason.empty()) throw std::invalid_argument(reason);
    }
  }
  // bf16: float32 compute inside cuDNN with tensor-core math (set per bf16 layer); the float32 layers a
  // bf16 network still builds for its float plan (ConvOp) follow the tf32 default.
  CudaContext::get().set_exact_math(p == Precision::FP32);
  set_bf16_networks(p == Precision::BF16);
}

}  // namespace ds
