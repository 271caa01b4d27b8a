// MelInverseGpu (see mel_inverse_gpu.h): NnlsPlan's arrays uploaded once, kernels/nnls.cu per batch.
#include "audio/mel_inverse_gpu.h"

#include <stdexcept>
#include <string>

#include "engine/core/cuda_context.h"
#include "kernels/nnls.h"

namespace ds {

void nnls_column_ranges(const NnlsPlan& plan, std::vector<int>& col_first, std::vector<int>& col_last) {
  col_first.assign(static_cast<size_t>(plan.n_freqs), 0);
  col_last.assign(static_cast<size_t>(plan.n_freqs), 0);
  std::vector<bool> seen(static_cast<size_t>(plan.n_freqs), false);
  for (int m = 0; m < plan.n_mels; ++m)
    for (int k = plan.row_begin[m]; k < plan.row_end[m]; ++k) {
      if (!seen[k]) col_first[k] = m;
      seen[k] = true;
      col_last[k] = m + 1;
    }
}

MelInverseGpu::MelInverseGpu(const float* filterbank, int n_mels, int n_freqs)
    : plan_(plan_nnls(filterbank, n_mels, n_freqs)) {
  filterbank_ = DeviceBuffer<float>::from_host(
      std::vector<float>(filterbank, filterbank + static_cast<int64_t>(n_mels) * n_freqs));
  if (!plan_.explains_nothing) g_pinv_ = DeviceBuffer<double>::from_host(plan_.g_pinv);
  std::vector<int> col_first, col_last;
  nnls_column_ranges(plan_, col_first, col_last);
  row_begin_ = DeviceBuffer<int>::from_host(plan_.row_begin);
  row_end_ = DeviceBuffer<int>::from_host(plan_.row_end);
  col_first_ = DeviceBuffer<int>::from_host(col_first);
  col_last_ = DeviceBuffer<int>::from_host(col_last);
}

size_t MelInverseGpu::scratch_bytes(int n_mels, int n_freqs, int64_t n_frames) {
  return static_cast<size_t>(nnls_scratch_doubles(n_mels, n_freqs, n_frames)) * sizeof(double);
}

void MelInverseGpu::run(float* magnitude, const float* mel_power, int64_t n_slices, int64_t frames, int iters) {
  if (n_slices < 0 || frames < 0 || iters < 0)
    throw std::invalid_argument("mel_to_linear on the GPU: bad sizes (slices " + std::to_string(n_slices) +
                                ", frames " + std::to_string(frames) + ", iters " + std::to_string(iters) + ")");
  const int64_t doubles = nnls_scratch_doubles(plan_.n_mels, plan_.n_freqs, n_slices * frames);
  if (!plan_.explains_nothing && scratch_.size() < static_cast<size_t>(doubles)) {
    CudaContext::get().synchronize();  // an earlier launch may still use the old scratch
    scratch_ = DeviceBuffer<double>(static_cast<size_t>(doubles));
  }
  kcuda::nnls_mel_to_linear(magnitude, scratch_.get(), mel_power, filterbank_.get(), g_pinv_.get(), row_begin_.get(),
                            row_end_.get(), col_first_.get(), col_last_.get(), plan_.n_mels, plan_.n_freqs, n_slices,
                            frames, plan_.step, iters, plan_.explains_nothing, CudaContext::get().stream());
}

std::vector<float> mel_to_linear_gpu(const float* mel_power, const float* filterbank, int n_mels, int n_freqs,
                                     int64_t frames, int iters) {
  MelInverseGpu inverse(filterbank, n_mels, n_freqs);
  const auto power = DeviceBuffer<float>::from_host(
      std::vector<float>(mel_power, mel_power + static_cast<int64_t>(n_mels) * frames));
  DeviceBuffer<float> magnitude(static_cast<size_t>(frames) * n_freqs);
  inverse.run(magnitude.get(), power.get(), 1, frames, iters);
  std::vector<float> spectrum_layout(magnitude.size());
  CudaContext& ctx = CudaContext::get();
  DS_CUDA_CHECK(cudaMemcpyAsync(spectrum_layout.data(), magnitude.get(), spectrum_layout.size() * sizeof(float),
                                cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  std::vector<float> out(spectrum_layout.size());  // frames × n_freqs → n_freqs × frames
  for (int64_t t = 0; t < frames; ++t)
    for (int k = 0; k < n_freqs; ++k) out[k * frames + t] = spectrum_layout[t * n_freqs + k];
  return out;
}

}  // namespace ds
