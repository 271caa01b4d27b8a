// kissfft standing in for cuFFT in the emulated pipelines (tests/test_emu_spectral.cpp,
// tests/test_emu_griffin_lim.cpp): the same layout structs the GPU code passes to cufftPlanMany.
#pragma once
#include <doctest/doctest.h>
#include <kiss_fftr.h>
#include <vector_types.h>

#include <cstdint>
#include <vector>

#include "audio/mel_gpu.h"

namespace ds::test {

// cufftExecR2C's meaning under the plan's advanced layout (cuFFT docs, "Advanced Data Layout": transform
// b reads input[b·idist + x·istride], writes output[b·odist + x·ostride]), with kissfft doing each
// transform (forward, unnormalised, n/2 + 1 bins: the same convention). The input is left as it was.
inline void r2c_stand_in(const StftFftLayout& l, const float* in, float2* out) {
  kiss_fftr_cfg cfg = kiss_fftr_alloc(l.n, 0, nullptr, nullptr);
  REQUIRE(cfg != nullptr);
  std::vector<kiss_fft_scalar> frame(l.n);
  std::vector<kiss_fft_cpx> bins(l.n / 2 + 1);
  for (int b = 0; b < l.batch; ++b) {
    for (int x = 0; x < l.n; ++x) frame[x] = in[int64_t(b) * l.idist + int64_t(x) * l.istride];
    kiss_fftr(cfg, frame.data(), bins.data());
    for (int x = 0; x <= l.n / 2; ++x) out[int64_t(b) * l.odist + int64_t(x) * l.ostride] = {bins[x].r, bins[x].i};
  }
  kiss_fftr_free(cfg);
}

}  // namespace ds::test
