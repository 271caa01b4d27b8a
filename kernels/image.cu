// Image kernels: gather a batch of dataset images by index while mapping bytes to [−1, 1], and map
// generated values back to bytes. One thread per output element; the expressions are those of
// engine/nn/cpu/image.h, so results equal the reference exactly (both are correctly rounded float ops).
#include "kernels/image.h"

#include "kernels/kernel_common.h"

namespace ds::DS_KNS {
namespace {

constexpr int kImageThreads = 256;

__global__ void images_u8_to_float_kernel(float* out, const uint8_t* images, const int32_t* indices,
                                          int64_t n_images, int64_t image_size) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_images * image_size) return;
  const int64_t image = k / image_size, j = k - image * image_size;
  const uint8_t byte = images[static_cast<int64_t>(indices[image]) * image_size + j];
  out[k] = static_cast<float>(byte) / 127.5f - 1.0f;
}

__global__ void gather_rows_kernel(float* out, const float* rows, const int32_t* indices, int64_t n_rows,
                                   int64_t row_size) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_rows * row_size) return;
  const int64_t row = k / row_size, j = k - row * row_size;
  out[k] = rows[static_cast<int64_t>(indices[row]) * row_size + j];
}
// The *_at kernels: each thread reads the device cursor (one cached word) rather than a host pointer.
__global__ void images_u8_to_float_at_kernel(float* out, const uint8_t* images, const int32_t* permutation,
                                             const int64_t* position, int64_t n_images, int64_t image_size) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_images * image_size) return;
  const int64_t image = k / image_size, j = k - image * image_size;
  const uint8_t byte = images[static_cast<int64_t>(permutation[*position + image]) * image_size + j];
  out[k] = static_cast<float>(byte) / 127.5f - 1.0f;
}

__global__ void gather_rows_at_kernel(float* out, const float* rows, const int32_t* permutation,
                                      const int64_t* position, int64_t n_rows, int64_t row_size) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_rows * row_size) return;
  const int64_t row = k / row_size, j = k - row * row_size;
  out[k] = rows[static_cast<int64_t>(permutation[*position + row]) * row_size + j];
}

__global__ void advance_batch_cursor_kernel(int64_t* position, int64_t batch, int64_t count) {
  const int64_t half = *position >= count ? 1 : 0;
  const int64_t next = *position - half * count + batch;  // index within the epoch of the next batch
  *position = next + batch > count ? (1 - half) * count : half * count + next;
}

__global__ void float_to_u8_kernel(uint8_t* out, const float* in, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float scaled = (in[i] + 1.0f) * 127.5f;
  if (!(scaled > 0.0f)) scaled = 0.0f;  // also catches NaN
  if (scaled > 255.0f) scaled = 255.0f;
  out[i] = static_cast<uint8_t>(floorf(scaled + 0.5f));
}

}  // namespace

void images_u8_to_float(float* out, const uint8_t* images, const int32_t* indices, int64_t n_images,
                        int64_t image_size, cudaStream_t stream) {
  const int64_t count = n_images * image_size;
  if (count <= 0) return;
  DS_LAUNCH(images_u8_to_float_kernel, blocks_for(count, kImageThreads), kImageThreads, 0, stream, out, images,
            indices, n_images, image_size);
}

void gather_rows(float* out, const float* rows, const int32_t* indices, int64_t n_rows, int64_t row_size,
                 cudaStream_t stream) {
  const int64_t count = n_rows * row_size;
  if (count <= 0) return;
  DS_LAUNCH(gather_rows_kernel, blocks_for(count, kImageThreads), kImageThreads, 0, stream, out, rows, indices,
            n_rows, row_size);
}
void float_to_u8(uint8_t* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  DS_LAUNCH(float_to_u8_kernel, blocks_for(n, kImageThreads), kImageThreads, 0, stream, out, in, n);
}


void images_u8_to_float_at(float* out, const uint8_t* images, const int32_t* permutation, const int64_t* position,
                           int64_t n_images, int64_t image_size, cudaStream_t stream) {
  const int64_t count = n_images * image_size;
  if (count <= 0) return;
  DS_LAUNCH(images_u8_to_float_at_kernel, blocks_for(count, kImageThreads), kImageThreads, 0, stream, out, images,
            permutation, position, n_images, image_size);
}

void gather_rows_at(float* out, const float* rows, const int32_t* permutation, const int64_t* position,
                    int64_t n_rows, int64_t row_size, cudaStream_t stream) {
  const int64_t count = n_rows * row_size;
  if (count <= 0) return;
  DS_LAUNCH(gather_rows_at_kernel, blocks_for(count, kImageThreads), kImageThreads, 0, stream, out, rows,
            permutation, position, n_rows, row_size);
}

void advance_batch_cursor(int64_t* position, int64_t batch, int64_t count, cudaStream_t stream) {
  DS_LAUNCH(advance_batch_cursor_kernel, 1, 1, 0, stream, position, batch, count);
}

}  // namespace ds::DS_KNS
