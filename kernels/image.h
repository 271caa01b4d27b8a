// Launchers of image.cu (dataset bytes ↔ [−1, 1] floats), declared for both builds: ds::kcuda (GPU) and
// ds::kemu (emulated on the CPU). Same meaning as engine/cpu/image.h.
// Shapes: images count×image_size bytes (one image per row, image_size = C·H·W); indices n_images
// int32 (device memory); out n_images×image_size floats; float_to_u8: in, out n values.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#define DS_IMAGE_LAUNCHERS(NS)                                                                                 \
  namespace ds::NS {                                                                                           \
  /* out[i, :] = images[indices[i], :] / 127.5 − 1 (the batch gather from a device-resident dataset).      */ \
  void images_u8_to_float(float* out, const uint8_t* images, const int32_t* indices, int64_t n_images,        \
                          int64_t image_size, cudaStream_t stream);                                           \
  /* out[i, :] = rows[indices[i], :] (the batch gather from a float dataset, e.g. mel spectrograms).     */ \
  void gather_rows(float* out, const float* rows, const int32_t* indices, int64_t n_rows, int64_t row_size,   \
                   cudaStream_t stream);                                                                      \
  /* out = round half up of (in + 1)·127.5, clamped to [0, 255]; NaN → 0.                                  */ \
  void float_to_u8(uint8_t* out, const float* in, int64_t n, cudaStream_t stream);                            \
  }
DS_IMAGE_LAUNCHERS(kcuda)
DS_IMAGE_LAUNCHERS(kemu)
#undef DS_IMAGE_LAUNCHERS
