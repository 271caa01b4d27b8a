// Philox noise kernels: normal and uniform fills, one thread per 4-tuple (kernels/philox.h layout).
#include "kernels/rng.h"
#include "kernels/kernel_common.h"
#include "kernels/philox.h"

namespace ds::DS_KNS {

// One Philox call serves four consecutive elements; the last tuple may be partly outside n.
__global__ void normal_fill_kernel(float* out, float mean, float stddev, uint64_t seed, uint32_t rng_stream,
                                   uint64_t offset, int64_t n) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = 4 * t;
  if (first >= n) return;
  const PhiloxFloats z = normals_from_words(philox_tuple(seed, rng_stream, offset + static_cast<uint64_t>(t)));
  for (int k = 0; k < 4 && first + k < n; ++k) out[first + k] = scale_normal(z.v[k], mean, stddev);
}

// normal_fill_kernel with the offset taken from the device step counter (replayable in a graph).
__global__ void normal_fill_at_kernel(float* out, float mean, float stddev, uint64_t seed, uint32_t rng_stream,
                                      const int64_t* step, uint64_t tuples_per_step, int64_t n) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = 4 * t;
  if (first >= n) return;
  const uint64_t offset = static_cast<uint64_t>(*step) * tuples_per_step;
  const PhiloxFloats z = normals_from_words(philox_tuple(seed, rng_stream, offset + static_cast<uint64_t>(t)));
  for (int k = 0; k < 4 && first + k < n; ++k) out[first + k] = scale_normal(z.v[k], mean, stddev);
}

__global__ void advance_counter_kernel(int64_t* counter) { *counter += 1; }

__global__ void uniform_fill_kernel(float* out, uint64_t seed, uint32_t rng_stream, uint64_t offset, int64_t n) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = 4 * t;
  if (first >= n) return;
  const PhiloxWords bits = philox_tuple(seed, rng_stream, offset + static_cast<uint64_t>(t));
  for (int k = 0; k < 4 && first + k < n; ++k) out[first + k] = uniform_closed_open(bits.w[k]);
}

void normal_fill(float* out, float mean, float stddev, uint64_t seed, uint32_t rng_stream, uint64_t offset,
                 int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int threads = 256;
  const int64_t tuples = (n + 3) / 4;
  DS_LAUNCH(normal_fill_kernel, blocks_for(tuples, threads), threads, 0, stream, out, mean, stddev, seed,
            rng_stream, offset, n);
}

void uniform_fill(float* out, uint64_t seed, uint32_t rng_stream, uint64_t offset, int64_t n,
                  cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int threads = 256;
  const int64_t tuples = (n + 3) / 4;
  DS_LAUNCH(uniform_fill_kernel, blocks_for(tuples, threads), threads, 0, stream, out, seed, rng_stream,
            offset, n);
}

void normal_fill_at(float* out, float mean, float stddev, uint64_t seed, uint32_t rng_stream, const int64_t* step,
                    uint64_t tuples_per_step, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int threads = 256;
  const int64_t tuples = (n + 3) / 4;
  DS_LAUNCH(normal_fill_at_kernel, blocks_for(tuples, threads), threads, 0, stream, out, mean, stddev, seed,
            rng_stream, step, tuples_per_step, n);
}

void advance_counter(int64_t* counter, cudaStream_t stream) { DS_LAUNCH(advance_counter_kernel, 1, 1, 0, stream, counter); }

}  // namespace ds::DS_KNS
