// libFuzzer: engine/formats/safetensors.cpp's reader on arbitrary bytes (std::runtime_error is the only
// accepted failure).
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "engine/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ds::SafeTensorsFile file = ds::decode_safetensors(std::vector<uint8_t>(data, data + size), "fuzz.safetensors");
    for (const auto& [name, tensor] : file.tensors) {
      if (tensor.to_float().size() != static_cast<size_t>(tensor.numel())) __builtin_trap();
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
