// libFuzzer: images through stb_image (compiled with the sanitizers in stb_impl.cpp, from Debian's libstb-dev
// header, the same code the engine links) and engine/image_dataset.cpp's fit_image into 8×8 RGB and
// grey, padded and cropped, as prepare-images does with every decoded file.
#include <cstdint>
#include <vector>

#include <stb_image.h>  // implementation: stb_impl.cpp

#include "engine/image_dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > static_cast<size_t>(INT32_MAX)) return 0;
  int w = 0, h = 0, comp = 0;
  // prepare-images refuses headers over kMaxImagePixels before decoding; here the bound is 2^22 pixels
  // so that decoding plus fit_image's float planes stay inside libFuzzer's 2 GB memory limit.
  if (!stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &comp)) return 0;
  if (static_cast<int64_t>(w) * h > (int64_t{1} << 22)) return 0;
  uint8_t* pixels = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &comp, 0);
  if (!pixels) return 0;
  std::vector<uint8_t> out(3 * 8 * 8);
  ds::fit_image(out.data(), pixels, h, w, comp, 3, 8, 8, false, nullptr);
  ds::fit_image(out.data(), pixels, h, w, comp, 1, 8, 8, true, nullptr);
  stbi_image_free(pixels);
  return 0;
}
