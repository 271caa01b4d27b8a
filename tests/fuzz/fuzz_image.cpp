// libFuzzer: images through stb_image (compiled with the sanitizers in stb_impl.cpp, from Debian's libstb-dev
// header, the same code the engine links) and engine/data/image_dataset.cpp's fit_image into 8×8 RGB and
// grey, padded and cropped, as prepare-images does with every file (decode_image: the engine's checks,
// then stb).
#include <stdexcept>
#include <cstdint>
#include <vector>


#include "engine/data/image_dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int w = 0, h = 0, comp = 0;
  std::vector<uint8_t> pixels;
  try {
    // prepare-images' own decoding path; at most 2^22 pixels (not kMaxImagePixels) so that decoding
    // plus fit_image's float planes stay inside libFuzzer's 2 GB memory limit.
    pixels = ds::decode_image(&h, &w, &comp, data, size, int64_t{1} << 22);
  } catch (const std::runtime_error&) {
    return 0;
  }
  std::vector<uint8_t> out(3 * 8 * 8);
  ds::fit_image(out.data(), pixels.data(), h, w, comp, 3, 8, 8, false, nullptr);
  ds::fit_image(out.data(), pixels.data(), h, w, comp, 1, 8, 8, true, nullptr);
  return 0;
}
