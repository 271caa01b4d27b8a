// Launchers of rng.cu (Philox noise on the device), declared for both builds: ds::kcuda (GPU) and
// ds::kemu (emulated on the CPU). Element i of out is drawn from component i % 4 of tuple
// offset + i / 4 of stream (seed, rng_stream) — kernels/philox.h's layout, the same as ds::Philox's
// fill_normal/fill_uniform on the host — and the launch uses ceil(n / 4) tuples.
//
// The *_at variants read their offset from device memory, so a captured CUDA graph replays fresh
// noise: a host offset would be frozen into the graph at capture (as adam.h's step number would).
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#define DS_RNG_LAUNCHERS(NS)                                                                           \
  namespace ds::NS {                                                                                   \
  /* out[i] = mean + stddev * N(0, 1) for i < n */                                                        \
  void normal_fill(float* out, float mean, float stddev, uint64_t seed, uint32_t rng_stream, uint64_t offset, \
                   int64_t n, cudaStream_t stream);                                                    \
  /* out[i] = uniform in [0, 1) for i < n */                                                           \
  void uniform_fill(float* out, uint64_t seed, uint32_t rng_stream, uint64_t offset, int64_t n,        \
                    cudaStream_t stream);                                                              \
  /* normal_fill at offset (*step)·tuples_per_step, *step read on the device (step: one int64 there). */ \
  void normal_fill_at(float* out, float mean, float stddev, uint64_t seed, uint32_t rng_stream,        \
                      const int64_t* step, uint64_t tuples_per_step, int64_t n, cudaStream_t stream);   \
  /* *counter += 1 (one thread; counter: one int64 in device memory).                               */ \
  void advance_counter(int64_t* counter, cudaStream_t stream);                                         \
  }
DS_RNG_LAUNCHERS(kcuda)
DS_RNG_LAUNCHERS(kemu)
#undef DS_RNG_LAUNCHERS
