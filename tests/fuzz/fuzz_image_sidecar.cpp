// libFuzzer: load_image_dataset (engine/data/image_dataset.cpp) with a valid 2×1×4×4 uint8 .npy and the
// fuzzed bytes as its .json sidecar; std::runtime_error is the only accepted failure.
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "engine/data/image_dataset.h"
#include "engine/formats/npy.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string npy = [] {
    const std::vector<uint8_t> pixels(2 * 16, 7);
    const std::vector<uint8_t> bytes = ds::encode_npy(ds::DType::U8, {2, 1, 4, 4}, pixels.data());
    return ds::fuzz::write_scratch("set.npy", bytes.data(), bytes.size());
  }();
  ds::fuzz::write_scratch("set.json", data, size);
  try {
    const ds::ImageDataset set = ds::load_image_dataset(npy);
    if (set.count != 2 || set.sample_size() != 16 || set.row(1)[15] != 7) __builtin_trap();  // memory-mapped rows
  } catch (const std::runtime_error&) {
  }
  return 0;
}
