// `--precision fp32|tf32` (engine/core/precision.h): parsing, the error naming the flag, and that the CPU
// never touches the CUDA context (which would throw here, where no GPU exists).
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "engine/core/precision.h"

TEST_CASE("unit precision: tf32 and fp32 parse, anything else is refused naming the flag") {
  CHECK(ds::parse_precision("tf32") == ds::Precision::TF32);
  CHECK(ds::parse_precision("fp32") == ds::Precision::FP32);
  CHECK(std::string(ds::precision_name(ds::Precision::FP32)) == "fp32");
  CHECK(std::string(ds::precision_name(ds::Precision::TF32)) == "tf32");
  try {
    ds::parse_precision("bf16", "--precision");
    FAIL("bf16 accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()) == "--precision bf16: expected fp32 or tf32");
  }
  CHECK_THROWS_AS(ds::parse_precision("TF32"), std::invalid_argument);  // the flag's values are lower case
}

TEST_CASE("unit precision: applying it for the CPU does not create a CUDA context") {
  CHECK_NOTHROW(ds::apply_precision(ds::Precision::FP32, ds::Device::CPU));
  CHECK_NOTHROW(ds::apply_precision(ds::Precision::TF32, ds::Device::CPU));
}
