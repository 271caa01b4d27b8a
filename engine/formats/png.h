// PNG sample grids: a batch of images in [-1, 1] laid out like torchvision's make_grid, written atomically
// to a file or encoded to bytes in memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ds {

// images: N×C×H×W float, C = 1 (grey PNG) or 3 (RGB PNG), values in [-1, 1] (clamped; NaN -> 0 = black).
// Grid: min(per_row, N) columns, ceil(N / columns) rows, 2-pixel black padding around and between images.
// Pixel = floor((x + 1) * 127.5 + 0.5) clamped to [0, 255] (torchvision's save_image rounding).
void write_png_grid(const std::string& path, const float* images, int n, int channels, int height, int width,
                    int per_row = 8);

// The same grid as PNG bytes in memory (for TensorBoard's Summary.Image), with the grid's size.
struct EncodedPng {
  std::vector<uint8_t> bytes;
  int height = 0, width = 0, channels = 0;
};
EncodedPng encode_png_grid(const float* images, int n, int channels, int height, int width, int per_row = 8);

// The grid pixels (row-major, interleaved channels) and the PNG file bytes, for tests and other writers.
std::vector<uint8_t> make_image_grid(int* grid_height, int* grid_width, const float* images, int n, int channels,
                                     int height, int width, int per_row = 8);
std::vector<uint8_t> encode_png(const uint8_t* pixels, int height, int width, int channels);

}  // namespace ds
