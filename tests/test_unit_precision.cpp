// `--precision fp32|tf32|bf16` (engine/core/precision.h): parsing, the error naming the flag, that the CPU
// never touches the CUDA context (which would throw here, where no GPU exists), that bf16 is refused
// with a message naming the flag on the CPU, and that on CUDA it is accepted (it then needs the device).
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "engine/core/precision.h"

namespace {
// What apply_precision(bf16, device) throws as std::invalid_argument ("" for no error or another one:
// on CUDA here, the missing GPU's CudaError).
std::string error_of_bf16(ds::Device device) {
  try {
    ds::apply_precision(ds::Precision::BF16, device);
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (const std::exception&) {
  }
  return "";
}
}  // namespace

TEST_CASE("unit precision: tf32, fp32 and bf16 parse, anything else is refused naming the flag") {
  CHECK(ds::parse_precision("tf32") == ds::Precision::TF32);
  CHECK(ds::parse_precision("fp32") == ds::Precision::FP32);
  CHECK(ds::parse_precision("bf16") == ds::Precision::BF16);
  CHECK(std::string(ds::precision_name(ds::Precision::FP32)) == "fp32");
  CHECK(std::string(ds::precision_name(ds::Precision::TF32)) == "tf32");
  CHECK(std::string(ds::precision_name(ds::Precision::BF16)) == "bf16");
  try {
    ds::parse_precision("fp16", "--precision");
    FAIL("fp16 accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()) == "--precision fp16: expected fp32, tf32 or bf16");
  }
  CHECK_THROWS_AS(ds::parse_precision("TF32"), std::invalid_argument);  // the flag's values are lower case
}

TEST_CASE("unit precision: applying it for the CPU does not create a CUDA context") {
  CHECK_NOTHROW(ds::apply_precision(ds::Precision::FP32, ds::Device::CPU));
  CHECK_NOTHROW(ds::apply_precision(ds::Precision::TF32, ds::Device::CPU));
}

TEST_CASE("unit precision: bf16 is refused naming the flag on the CPU (CUDA only), accepted on CUDA") {
  const std::string cpu = error_of_bf16(ds::Device::CPU);
  CHECK(cpu.find("--precision bf16") == 0);
  CHECK(cpu.find("needs a CUDA device") != std::string::npos);
  CHECK_FALSE(ds::bf16_networks());  // the refusal selects nothing
  // On CUDA no flag error (here the context then fails for want of a GPU, which is not an invalid_argument).
  CHECK(error_of_bf16(ds::Device::CUDA).empty());
  ds::set_bf16_networks(false);  // whatever that attempt left, the other tests build float32 networks
}

TEST_CASE("unit precision: tf32 and fp32 on the CPU leave the bf16 network switch alone") {
  ds::set_bf16_networks(false);
  ds::apply_precision(ds::Precision::TF32, ds::Device::CPU);
  CHECK_FALSE(ds::bf16_networks());
}

TEST_CASE("unit precision: bf16 on a GPU older than Ampere is refused naming the GPU and what it needs") {
  const std::string turing = ds::bf16_unsupported_reason("Tesla T4", 7, 5);
  CHECK(turing == "--precision bf16: Tesla T4 has compute capability 7.5; bf16 needs 8.0 or newer (Ampere): "
                  "use --precision tf32 or fp32");
  CHECK(ds::bf16_unsupported_reason("NVIDIA GeForce RTX 2080", 7, 5, "--bench-precision").find("--bench-precision bf16") == 0);
  CHECK(ds::bf16_unsupported_reason("NVIDIA A100-SXM4-40GB", 8, 0).empty());
  CHECK(ds::bf16_unsupported_reason("NVIDIA GeForce RTX 3090", 8, 6).empty());
  CHECK(ds::bf16_unsupported_reason("NVIDIA H200", 9, 0).empty());
  CHECK(ds::bf16_unsupported_reason("NVIDIA B200", 10, 0).empty());
}
