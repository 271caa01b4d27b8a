// `listen` on CUDA: several slices inverted in one go. Mel power → linear magnitude (MelInverseGpu,
// kernels/nnls.cu) and fast Griffin-Lim (GriffinLimGpu::run_batch, cuFFT plans of slices × frames
// transforms) on a chunk of slices at a time, the chunk bounded by device memory. Results per slice equal
// inverting the slices one by one (tests/test_emu_mel_inversion_batch.cpp checks the chunking and the
// batched kernels on the CPU).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "audio/mel_params.h"

namespace ds {

class GriffinLimGpu;
class MelInverseGpu;

struct SliceChunk {
  int64_t first = 0, count = 0;  // slices [first, first + count)
};
// [0, n) cut into chunks of `batch` slices, in order, the last one shorter when batch does not divide n;
// none when n is 0. Throws std::invalid_argument for n < 0 or batch < 1.
std::vector<SliceChunk> slice_chunks(int64_t n, int64_t batch);

// Device bytes one slice of p's layout needs in a batch: the NNLS scratch, its mel power and magnitude,
// and GriffinLimGpu's per-slice buffers with cuFFT's work areas estimated (GriffinLimGpu::device_bytes).
size_t inversion_bytes_per_slice(const MelParams& p);

// Slices per chunk when --batch is not given: as many as half of free_bytes holds (the other half left to
// cuFFT's own estimates being low, the generator and other processes), at least 1, at most
// kMaxAutoInversionBatch and at most n.
constexpr int64_t kMaxAutoInversionBatch = 64;
int64_t auto_inversion_batch(const MelParams& p, size_t free_bytes, int64_t n);

// Runs invert_chunk(chunk, out + chunk.first · samples_per_slice) for each of slice_chunks(n, batch), in
// order; invert_chunk writes chunk.count × samples_per_slice samples there. Returns the n slices' samples.
// Templated so that the CPU-side test drives its emulated chunks through this very loop.
template <class InvertChunk>
std::vector<float> invert_in_chunks(int64_t n, int64_t batch, int64_t samples_per_slice, InvertChunk&& invert_chunk) {
  std::vector<float> out(static_cast<size_t>(n * samples_per_slice));
  for (const SliceChunk& c : slice_chunks(n, batch)) invert_chunk(c, out.data() + c.first * samples_per_slice);
  return out;
}

class MelInversionGpu {
 public:
  // Buffers, NNLS plan (of mel_filterbank(p)) and cuFFT plans for chunks of up to `batch` slices of p's
  // slice layout (p.slice_samples() samples, n_mels × stft_frames mel power each).
  MelInversionGpu(const MelParams& p, int64_t batch);
  ~MelInversionGpu();
  MelInversionGpu(const MelInversionGpu&) = delete;
  MelInversionGpu& operator=(const MelInversionGpu&) = delete;

  // mel_power: n × n_mels × frames (host); seeds[i]: slice i's Griffin-Lim seed. Returns n ×
  // p.slice_samples() samples: slice i as mel_to_linear + griffin_lim(…, seeds[i], p.slice_samples()).
  std::vector<float> invert(const float* mel_power, int64_t n, const uint64_t* seeds, int nnls_iters, int gl_iters,
                            float momentum);

  int64_t batch() const { return batch_; }
  const MelParams& params() const { return p_; }

 private:
  MelParams p_;
  int64_t batch_ = 1, frames_ = 0;
  std::unique_ptr<MelInverseGpu> nnls_;
  std::unique_ptr<GriffinLimGpu> griffin_lim_;
  struct Buffers;
  std::unique_ptr<Buffers> buffers_;
};

}  // namespace ds
