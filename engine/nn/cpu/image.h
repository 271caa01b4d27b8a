// Image value mapping CPU reference: dataset bytes to the generator's [−1, 1] range (with the batch
// gather by index), and generated values back to bytes for sample grids.
//
// Shapes: images is count×image_size bytes (image_size = C·H·W, one image per row); indices has
// n_images entries; out is n_images×image_size (NCHW when the rows are CHW).
//
// The mapping is x/127.5 − 1 (0 → −1, 255 → +1), the inverse of float_to_u8's round((x+1)·127.5):
// every byte survives the round trip. PyTorch's DCGAN example gets the same range from
// ToTensor (x/255) then Normalize(0.5, 0.5) ((y−0.5)/0.5), equal up to float rounding.
#pragma once
#include <cmath>
#include <cstdint>

namespace ds::cpu {

template <class T>
T u8_to_unit_range(uint8_t byte) {
  return static_cast<T>(byte) / static_cast<T>(127.5) - static_cast<T>(1);
}

// out[i, :] = map(images[indices[i], :]).
template <class T>
void images_u8_to_float(T* out, const uint8_t* images, const int32_t* indices, int64_t n_images, int64_t image_size) {
  for (int64_t i = 0; i < n_images; ++i) {
    const uint8_t* row = images + static_cast<int64_t>(indices[i]) * image_size;
    for (int64_t j = 0; j < image_size; ++j) out[i * image_size + j] = u8_to_unit_range<T>(row[j]);
  }
}

// [−1, 1] → {0..255}: round half up of (x+1)·127.5, clamped; NaN becomes 0 (a black pixel rather than
// undefined behaviour in the float→int conversion).
template <class T>
uint8_t unit_range_to_u8(T x) {
  T scaled = (x + T(1)) * static_cast<T>(127.5);
  if (!(scaled > T(0))) scaled = T(0);  // also catches NaN
  if (scaled > T(255)) scaled = T(255);
  return static_cast<uint8_t>(std::floor(scaled + static_cast<T>(0.5)));
}

// out[i, :] = rows[indices[i], :]: the batch gather from a float dataset (mel spectrograms).
template <class T>
void gather_rows(T* out, const T* rows, const int32_t* indices, int64_t n_rows, int64_t row_size) {
  for (int64_t i = 0; i < n_rows; ++i)
    for (int64_t j = 0; j < row_size; ++j) out[i * row_size + j] = rows[int64_t(indices[i]) * row_size + j];
}

template <class T>
void float_to_u8(uint8_t* out, const T* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = unit_range_to_u8(in[i]);
}

}  // namespace ds::cpu
