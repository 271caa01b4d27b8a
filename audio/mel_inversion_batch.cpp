// Batched mel inversion on the GPU (see mel_inversion_batch.h).
#include "audio/mel_inversion_batch.h"

#include "audio/griffin_lim_gpu.h"
#include "audio/mel_cpu.h"
#include "audio/mel_inverse_gpu.h"
#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"

namespace ds {

std::vector<SliceChunk> slice_chunks(int64_t n, int64_t batch) {
  if (n < 0) throw std::invalid_argument("slice_chunks: " + std::to_string(n) + " slices");
  if (batch < 1) throw std::invalid_argument("--batch " + std::to_string(batch) + ": expected at least 1");
  std::vector<SliceChunk> chunks;
  for (int64_t first = 0; first < n; first += batch) chunks.push_back({first, std::min(batch, n - first)});
  return chunks;
}

size_t inversion_bytes_per_slice(const MelParams& p) {
  const int64_t frames = p.stft_frames(p.slice_samples());
  const size_t mel = static_cast<size_t>(p.n_mels) * static_cast<size_t>(frames) * sizeof(float);
  const size_t magnitude = static_cast<size_t>(p.n_freqs()) * static_cast<size_t>(frames) * sizeof(float);
  const size_t per_slice_gl = GriffinLimGpu::device_bytes(p, frames, 2) - GriffinLimGpu::device_bytes(p, frames, 1);
  return MelInverseGpu::scratch_bytes(p.n_mels, p.n_freqs(), frames) + mel + magnitude + per_slice_gl;
}

int64_t auto_inversion_batch(const MelParams& p, size_t free_bytes, int64_t n) {
  const size_t per_slice = inversion_bytes_per_slice(p);
  const int64_t fit = static_cast<int64_t>(free_bytes / 2 / std::max<size_t>(per_slice, 1));
  return std::max<int64_t>(1, std::min({fit, kMaxAutoInversionBatch, std::max<int64_t>(n, 1)}));
}

struct MelInversionGpu::Buffers {
  DeviceBuffer<float> mel_power;  // batch × n_mels × frames
  DeviceBuffer<float> magnitude;  // batch × frames × n_freqs
};

MelInversionGpu::MelInversionGpu(const MelParams& p, int64_t batch) : p_(p), batch_(batch) {
  if (batch < 1) throw std::invalid_argument("--batch " + std::to_string(batch) + ": expected at least 1");
  frames_ = p.stft_frames(p.slice_samples());
  const std::vector<float> filterbank = mel_filterbank(p);
  nnls_ = std::make_unique<MelInverseGpu>(filterbank.data(), p.n_mels, p.n_freqs());
  griffin_lim_ = std::make_unique<GriffinLimGpu>(p, frames_, batch);
  buffers_ = std::make_unique<Buffers>();
  buffers_->mel_power = DeviceBuffer<float>(static_cast<size_t>(batch * p.n_mels * frames_));
  buffers_->magnitude = DeviceBuffer<float>(static_cast<size_t>(batch * frames_ * p.n_freqs()));
}

MelInversionGpu::~MelInversionGpu() = default;

std::vector<float> MelInversionGpu::invert(const float* mel_power, int64_t n, const uint64_t* seeds, int nnls_iters,
                                           int gl_iters, float momentum) {
  const int64_t L = p_.slice_samples();
  const int64_t per_slice_mel = static_cast<int64_t>(p_.n_mels) * frames_;
  return invert_in_chunks(n, batch_, L, [&](const SliceChunk& c, float* out) {
    buffers_->mel_power.upload(mel_power + c.first * per_slice_mel, static_cast<size_t>(c.count * per_slice_mel));
    nnls_->run(buffers_->magnitude.get(), buffers_->mel_power.get(), c.count, frames_, nnls_iters);
    const std::vector<float> audio =
        griffin_lim_->run_batch(buffers_->magnitude.get(), c.count, gl_iters, momentum, seeds + c.first, L);
    std::copy(audio.begin(), audio.end(), out);
  });
}

}  // namespace ds
