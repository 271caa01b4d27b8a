// Launchers of image.cu (dataset bytes ↔ [−1, 1] floats), declared for both builds: ds::kcuda (GPU) and
// ds::kemu (emulated on the CPU). Same meaning as engine/nn/cpu/image.h.
// Shapes: images count×image_size bytes (one image per row, image_size = C·H·W); indices n_images
// int32 (device memory); out n_images×image_size floats; float_to_u8: in, out n values.
//
// The *_at gathers take the batch's indices at permutation + *position, *position read on the device
// (one int64 there), so a captured CUDA graph gathers the batch the cursor points at when it replays,
// not the one it pointed at during capture. advance_batch_cursor moves that cursor through a double
// buffer of two epochs' orders, 2×count int32 back to back (epoch e in half e % 2): *position =
// half·count + index within the epoch; after a batch it moves on by `batch`, and to the start of the
// other half when the rest of the epoch is shorter than a batch (that tail is skipped, as the trainer
// does). The host fills the other half while this one is read.
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
  /* images_u8_to_float with indices = permutation + *position (position: device int64).                 */ \
  void images_u8_to_float_at(float* out, const uint8_t* images, const int32_t* permutation,                   \
                             const int64_t* position, int64_t n_images, int64_t image_size, cudaStream_t stream); \
  /* gather_rows with indices = permutation + *position (position: device int64).                        */ \
  void gather_rows_at(float* out, const float* rows, const int32_t* permutation, const int64_t* position,     \
                      int64_t n_rows, int64_t row_size, cudaStream_t stream);                                 \
  /* One thread: *position += batch within its half of the 2×count double buffer, or the other half's   */ \
  /* start when fewer than `batch` indices would remain (0 < batch ≤ count).                             */ \
  void advance_batch_cursor(int64_t* position, int64_t batch, int64_t count, cudaStream_t stream);            \
  }
DS_IMAGE_LAUNCHERS(kcuda)
DS_IMAGE_LAUNCHERS(kemu)
#undef DS_IMAGE_LAUNCHERS
