// libFuzzer: prepare-images on an IDX file (engine/data/image_dataset.cpp: header, sizes, gzip or plain
// data, then fitting each image to 8×8 grey), written to a scratch file; std::runtime_error is the only
// accepted failure. A lying image count must end in "truncated", not in a huge allocation.
#include <cstdint>
#include <stdexcept>

#include "engine/data/image_dataset.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string idx = ds::fuzz::write_scratch("input.idx", data, size);
  ds::PrepareImagesOptions options;
  options.progress = false;
  try {
    ds::prepare_images(idx, ds::fuzz::scratch_dir() + "/out.npy", 8, 8, 1, options);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
