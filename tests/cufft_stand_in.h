// kissfft standing in for cuFFT in the emulated pipelines (tests/test_emu_spectral.cpp,
// tests/test_emu_mel_path.cpp, tests/test_emu_griffin_lim.cpp): the same layout structs the GPU code
// passes to cufftPlanMany, executed by the addressing rules cuFFT documents, with checks that fail a
// test where the GPU call would read or write outside its buffers.
#pragma once
#include <doctest/doctest.h>
#include <kiss_fftr.h>
#include <vector_types.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "audio/griffin_lim_gpu.h"
#include "audio/mel_gpu.h"

namespace ds::test {

// cufftExecR2C's meaning under the plan's advanced layout (cuFFT API reference, "Advanced Data Layout",
// rank 1: transform b reads input[b·idist + x·istride], x < n, and writes output[b·odist + x·ostride],
// x ≤ n/2; distances and strides count reals on the input side and complex values on the output side
// of an R2C), with kissfft doing each transform (forward, unnormalised, n/2 + 1 bins: the same
// convention). The input is only read (const). in_count / out_count (elements; < 0: unchecked) are the
// buffers' extents: every index the layout produces must fall inside them, no output element may be
// written twice (two batches writing one place would race on the GPU), and the input and output
// ranges must not overlap (an out-of-place plan; cuFFT treats idata == odata as in place and documents
// nothing for partly overlapping buffers). Input batches may overlap (idist < n): the stand-in reads
// them as the formula says, but note that NVIDIA's documentation, as far as this project could find,
// neither promises nor forbids that for cuFFT itself (audio/mel_gpu.cpp does not rely on it).
// A cuFFT LTO load callback for real input (cufftJITCallbackLoadR's signature, cufftXt.h) and its
// callerInfo: with one set, the stand-in gets every input element from load(in, offset, caller_info,
// nullptr) instead of reading in[offset], offset = b·idist + x·istride: the element's index from the
// start of idata, which cuFFT passes as dataIn (audio/mel_gpu.cpp cites what this rests on).
struct R2cLoadCallback {
  float (*load)(void* dataIn, unsigned long long offset, void* callerInfo, void* sharedPointer) = nullptr;
  void* caller_info = nullptr;
};
// A cuFFT LTO store callback for complex output (cufftJITCallbackStoreC's signature) and its callerInfo:
// with one set, the stand-in hands every output element to store(out, offset, element, caller_info,
// nullptr) instead of writing out[offset], offset = b·odist + x·ostride: the element's index from the
// start of odata in complex values (audio/mel_gpu.cpp cites what this rests on). The output buffer is
// then not written by the stand-in at all.
struct R2cStoreCallback {
  void (*store)(void* dataOut, unsigned long long offset, float2 element, void* callerInfo,
                void* sharedPointer) = nullptr;
  void* caller_info = nullptr;
};

inline void r2c_stand_in(const StftFftLayout& l, const float* in, int64_t in_count, float2* out, int64_t out_count,
                         const R2cLoadCallback& callback = {}, const R2cStoreCallback& store = {}) {
  REQUIRE(l.n >= 2);
  REQUIRE(l.batch >= 1);
  REQUIRE(l.istride >= 1);
  REQUIRE(l.ostride >= 1);
  const int n_out = l.n / 2 + 1;
  const int64_t in_last = int64_t(l.batch - 1) * l.idist + int64_t(l.n - 1) * l.istride;
  const int64_t out_last = int64_t(l.batch - 1) * l.odist + int64_t(n_out - 1) * l.ostride;
  REQUIRE(l.idist >= 0);
  REQUIRE(l.odist >= 0);
  if (in_count >= 0) REQUIRE_MESSAGE(in_last < in_count, "the R2C would read input[" << in_last << "] of " << in_count);
  if (out_count >= 0)
    REQUIRE_MESSAGE(out_last < out_count, "the R2C would write output[" << out_last << "] of " << out_count);
  {
    const char* in_lo = reinterpret_cast<const char*>(in);
    const char* in_hi = reinterpret_cast<const char*>(in + in_last + 1);
    const char* out_lo = reinterpret_cast<const char*>(out);
    const char* out_hi = reinterpret_cast<const char*>(out + out_last + 1);
    REQUIRE_MESSAGE((in_hi <= out_lo || out_hi <= in_lo), "out-of-place R2C with overlapping input and output");
  }
  std::vector<bool> written(static_cast<size_t>(out_last + 1), false);
  kiss_fftr_cfg cfg = kiss_fftr_alloc(l.n, 0, nullptr, nullptr);
  REQUIRE(cfg != nullptr);
  std::vector<kiss_fft_scalar> frame(l.n);
  std::vector<kiss_fft_cpx> bins(n_out);
  for (int b = 0; b < l.batch; ++b) {
    for (int x = 0; x < l.n; ++x) {
      const int64_t offset = int64_t(b) * l.idist + int64_t(x) * l.istride;
      frame[x] = callback.load ? callback.load(const_cast<float*>(in), static_cast<unsigned long long>(offset),
                                               callback.caller_info, nullptr)
                               : in[offset];
    }
    kiss_fftr(cfg, frame.data(), bins.data());
    for (int x = 0; x < n_out; ++x) {
      const int64_t o = int64_t(b) * l.odist + int64_t(x) * l.ostride;
      if (written[static_cast<size_t>(o)]) {
        kiss_fftr_free(cfg);
        FAIL("the R2C layout writes output[" << o << "] twice");
      }
      written[static_cast<size_t>(o)] = true;
      const float2 element{bins[x].r, bins[x].i};
      if (store.store)
        store.store(out, static_cast<unsigned long long>(o), element, store.caller_info, nullptr);
      else
        out[o] = element;
    }
  }
  kiss_fftr_free(cfg);
}

// Without extents (callers whose buffers are sized by the same layout): the same transform and checks.
inline void r2c_stand_in(const StftFftLayout& l, const float* in, float2* out) { r2c_stand_in(l, in, -1, out, -1); }

// cufftExecC2R (inverse, unnormalised, reads n/2 + 1 bins, writes n reals) for the layout GriffinLimGpu
// hands to cufftPlanMany, and then, as cuFFT is allowed to ("Out-of-place complex-to-real FFT will
// overwrite input buffer", cuFFT docs, "Data Layout"), NaN scribbled over every input value it read, so a
// pipeline that reads its input afterwards fails. Shared by test_emu_griffin_lim and
// test_emu_mel_inversion_batch.
inline void c2r_stand_in(const IstftFftLayout& l, float2* in, float* out) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  kiss_fftr_cfg cfg = kiss_fftr_alloc(l.n, 1, nullptr, nullptr);
  REQUIRE(cfg != nullptr);
  std::vector<kiss_fft_cpx> bins(l.n / 2 + 1);
  std::vector<kiss_fft_scalar> frame(l.n);
  for (int b = 0; b < l.batch; ++b) {
    for (int x = 0; x <= l.n / 2; ++x) {
      const float2 z = in[int64_t(b) * l.idist + int64_t(x) * l.istride];
      bins[x] = {z.x, z.y};
    }
    kiss_fftri(cfg, bins.data(), frame.data());
    for (int x = 0; x < l.n; ++x) out[int64_t(b) * l.odist + int64_t(x) * l.ostride] = frame[x];
  }
  for (int b = 0; b < l.batch; ++b)
    for (int x = 0; x <= l.n / 2; ++x) in[int64_t(b) * l.idist + int64_t(x) * l.istride] = float2{nan, nan};
  kiss_fftr_free(cfg);
}

}  // namespace ds::test
