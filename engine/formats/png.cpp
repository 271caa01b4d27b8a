// PNG sample grids (see png.h); stb_image_write's implementation lives in the linked libstb.
#include "engine/formats/png.h"

#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/formats/atomic_file.h"

namespace ds {
namespace {
constexpr int kPadding = 2;  // torchvision make_grid's default

uint8_t to_pixel(float x) {
  if (!(x == x)) return 0;
  const float v = std::floor((x + 1.0f) * 127.5f + 0.5f);
  return static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, v)));
}
}  // namespace

std::vector<uint8_t> make_image_grid(int* grid_height, int* grid_width, const float* images, int n, int channels,
                                     int height, int width, int per_row) {
  if (n <= 0 || height <= 0 || width <= 0 || per_row <= 0 || (channels != 1 && channels != 3)) {
    throw std::runtime_error("image grid: expected N, H, W, per_row > 0 and 1 or 3 channels, got N=" +
                             std::to_string(n) + " C=" + std::to_string(channels) + " H=" + std::to_string(height) +
                             " W=" + std::to_string(width) + " per_row=" + std::to_string(per_row));
  }
  const int columns = std::min(per_row, n);
  const int rows = (n + columns - 1) / columns;
  const int gh = rows * (height + kPadding) + kPadding;
  const int gw = columns * (width + kPadding) + kPadding;
  std::vector<uint8_t> grid(static_cast<size_t>(gh) * gw * channels, 0);
  const size_t plane = static_cast<size_t>(height) * width;
  for (int i = 0; i < n; ++i) {
    const int top = kPadding + (i / columns) * (height + kPadding);
    const int left = kPadding + (i % columns) * (width + kPadding);
    for (int c = 0; c < channels; ++c) {
      const float* src = images + (static_cast<size_t>(i) * channels + c) * plane;
      for (int y = 0; y < height; ++y) {
        for (int x = 0; x < width; ++x) {
          grid[(static_cast<size_t>(top + y) * gw + left + x) * channels + c] = to_pixel(src[y * width + x]);
        }
      }
    }
  }
  *grid_height = gh;
  *grid_width = gw;
  return grid;
}

std::vector<uint8_t> encode_png(const uint8_t* pixels, int height, int width, int channels) {
  std::vector<uint8_t> png;
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(context);
    const uint8_t* bytes = static_cast<const uint8_t*>(data);
    out->insert(out->end(), bytes, bytes + size);
  };
  if (!stbi_write_png_to_func(append, &png, width, height, channels, pixels, width * channels)) {
    throw std::runtime_error("PNG encoding failed (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  }
  return png;
}

EncodedPng encode_png_grid(const float* images, int n, int channels, int height, int width, int per_row) {
  EncodedPng png;
  const std::vector<uint8_t> grid = make_image_grid(&png.height, &png.width, images, n, channels, height, width, per_row);
  png.bytes = encode_png(grid.data(), png.height, png.width, channels);
  png.channels = channels;
  return png;
}

void write_png_grid(const std::string& path, const float* images, int n, int channels, int height, int width,
                    int per_row) {
  write_bytes_atomic(path, encode_png_grid(images, n, channels, height, width, per_row).bytes);
}

}  // namespace ds
