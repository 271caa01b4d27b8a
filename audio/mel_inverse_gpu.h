// Mel power → linear magnitude on the GPU: audio/mel_inverse.h's mel_to_linear for a batch of slices,
// the per-filterbank set-up (NnlsPlan: spans, (M Mᵀ)⁺, step) computed once on the host by the very code
// the CPU uses, the per-frame iterations in kernels/nnls.cu (one frame per thread, the CPU's arithmetic).
#pragma once
#include <cstdint>
#include <vector>

#include "audio/mel_inverse.h"
#include "engine/core/device_buffer.h"

namespace ds {

// Column k of the filterbank as kernels/nnls.h reads it: rows m in [col_first[k], col_last[k]) whose
// span [row_begin[m], row_end[m]) holds k (the kernel skips the others); an empty range (first = last = 0)
// for a bin no row covers.
void nnls_column_ranges(const NnlsPlan& plan, std::vector<int>& col_first, std::vector<int>& col_last);

class MelInverseGpu {
 public:
  // Plans the NNLS of this filterbank (n_mels × n_freqs, host) and uploads it.
  MelInverseGpu(const float* filterbank, int n_mels, int n_freqs);

  // magnitude (device, n_slices × frames × n_freqs: Griffin-Lim's layout) = mel_to_linear of each slice of
  // mel_power (device, n_slices × n_mels × frames), enqueued on the context's stream. Scratch grows to
  // scratch_bytes(n_slices · frames) on first need and is kept.
  void run(float* magnitude, const float* mel_power, int64_t n_slices, int64_t frames, int iters);

  static size_t scratch_bytes(int n_mels, int n_freqs, int64_t n_frames);
  int n_mels() const { return plan_.n_mels; }
  int n_freqs() const { return plan_.n_freqs; }

 private:
  NnlsPlan plan_;
  DeviceBuffer<float> filterbank_;
  DeviceBuffer<double> g_pinv_;
  DeviceBuffer<int> row_begin_, row_end_, col_first_, col_last_;
  DeviceBuffer<double> scratch_;
};

// mel_to_linear(mel_power, filterbank, n_mels, n_freqs, frames, iters) through MelInverseGpu, host in and
// out (n_freqs × frames, as mel_to_linear): what tests/gpu compares with the CPU.
std::vector<float> mel_to_linear_gpu(const float* mel_power, const float* filterbank, int n_mels, int n_freqs,
                                     int64_t frames, int iters = 200);

}  // namespace ds
