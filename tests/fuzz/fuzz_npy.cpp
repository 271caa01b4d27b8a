// libFuzzer: engine/formats/npy.cpp's reader on arbitrary bytes. Errors must be std::runtime_error; anything
// else (a crash, another exception, a sanitizer report, a huge allocation) is a finding.
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "engine/formats/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ds::NpyArray array = ds::decode_npy(std::vector<uint8_t>(data, data + size), "fuzz.npy");
    const std::vector<float> values = array.to_float();  // touches every element the header claims
    if (values.size() != static_cast<size_t>(array.numel())) __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
