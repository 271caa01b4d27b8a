// Fast Griffin-Lim on the GPU: audio/griffin_lim.h's griffin_lim with cuFFT doing the STFT (batched R2C
// of the frames kernels/spectral.cu's frame_window cuts) and the iSTFT (batched C2R, then
// kernels/griffin_lim.cu's overlap_add), and the phase update, initial phases and magnitude transpose as
// kernels of kernels/griffin_lim.cu. The cuFFT argument sets are plain structs built by functions below,
// so the emulated pipeline test (tests/test_emu_griffin_lim.cpp) feeds the same numbers to its kissfft
// stand-ins that GriffinLimGpu hands to cufftPlanMany.
// Shapes: magnitude n_freqs × frames (as griffin_lim); every spectrum on the device frames × n_freqs; the
// frame rows frames × n_fft; the signal `length` samples.
#pragma once
#include <cstdint>
#include <vector>

#include <cufft.h>

#include "audio/mel_gpu.h"  // StftFftLayout (the R2C's advanced layout)
#include "audio/mel_params.h"
#include "engine/core/device_buffer.h"

namespace ds {

// The R2C of the STFT: `frames` transforms of n_fft reals at frames[b·n_fft ..] into n_freqs bins at
// spectrum[b·n_freqs ..] (distances as StftFftLayout documents: reals in, complex out).
StftFftLayout griffin_lim_r2c_layout(const MelParams& p, int64_t frames);

// cufftPlanMany's advanced layout for the batched C2R of the iSTFT: transform b reads its n/2 + 1 bins
// at spectrum[b·idist + x·istride] (complex values) and writes its n reals at frames[b·odist + x·ostride].
struct IstftFftLayout {
  int n = 0;                   // n_fft
  int istride = 1, idist = 0;  // in complex values
  int ostride = 1, odist = 0;  // in floats
  int batch = 0;               // frames
};
IstftFftLayout griffin_lim_c2r_layout(const MelParams& p, int64_t frames);

// The overlap-added window² of istft(…, frames, p, length) at every output sample (after the centre
// trimming; 0 past the last frame), accumulated in float in istft's frame order, so overlap_add divides by
// exactly what istft divides by. Needs p.center (the GPU path's only mode).
std::vector<float> istft_window_sum_square(const MelParams& p, int64_t frames, int64_t length);

// length < 0 resolves to griffin_lim's default (hop·(frames − 1) when centred); throws
// std::invalid_argument when `length` samples do not give `frames` STFT frames (as griffin_lim).
int64_t griffin_lim_length(const MelParams& p, int64_t frames, int64_t length);

class GriffinLimGpu {
 public:
  // Window, buffers and both cuFFT plans for `slices` spectra of `frames` frames each (one batched R2C and
  // C2R of slices·frames transforms). Throws std::invalid_argument for parameters the GPU path does not
  // implement (center=false) or griffin_lim refuses.
  GriffinLimGpu(const MelParams& p, int64_t frames, int64_t slices = 1);
  ~GriffinLimGpu();
  GriffinLimGpu(const GriffinLimGpu&) = delete;
  GriffinLimGpu& operator=(const GriffinLimGpu&) = delete;

  // griffin_lim(magnitude_host, frames, p, iters, momentum, seed, length, random_init) on the GPU: the
  // whole loop enqueued on the context's stream, one synchronisation when the samples come back.
  // magnitude_host: n_freqs × frames (host). Returns `length` samples (length < 0 as griffin_lim).
  std::vector<float> run(const float* magnitude_host, int iters, float momentum, uint64_t seed,
                         int64_t length = -1, bool random_init = true);

  // n_slices (1 ≤ n_slices ≤ slices()) Griffin-Lims at once. magnitude_device: n_slices × frames × n_freqs
  // on the device (the spectrum layout; kernels/nnls.h writes it); seeds[s]: slice s's seed. Returns
  // n_slices × length samples (host), slice s what run() of slice s alone with seeds[s] returns: every
  // kernel treats the slices independently and each transform is its own FFT. A count other than
  // slices() (a last, short chunk) gets its own plans, kept until another count comes.
  std::vector<float> run_batch(const float* magnitude_device, int64_t n_slices, int iters, float momentum,
                               const uint64_t* seeds, int64_t length = -1, bool random_init = true);

  const MelParams& params() const { return p_; }
  int64_t frames() const { return frames_; }
  int64_t slices() const { return slices_; }

  // Device bytes a GriffinLimGpu for `slices` slices allocates, cuFFT's two work areas estimated as one
  // complex copy of the frame rows each (cufftEstimateMany is only an estimate too); for sizing chunks.
  static size_t device_bytes(const MelParams& p, int64_t frames, int64_t slices);

 private:
  struct Plans {
    cufftHandle r2c = 0, c2r = 0;
    int64_t slices = 0;
  };
  Plans make_plans(int64_t slices) const;
  static void destroy(Plans& plans);
  const Plans& plans_for(int64_t n_slices);
  // istft(angles_) of n_slices slices into signal_ (n_slices × length). The C2R may scribble over angles_.
  void inverse_stft(const Plans& plans, int64_t n_slices, int64_t length);
  // The loop of run/run_batch once the magnitude (n_slices × frames × n_freqs) is on the device.
  std::vector<float> iterate(const float* magnitude, int64_t n_slices, int iters, float momentum,
                             const uint64_t* seeds, int64_t length, bool random_init);

  MelParams p_;
  int64_t frames_ = 0;
  int64_t slices_ = 1;
  int64_t max_length_ = 0;             // the longest signal that still gives frames_ frames
  int64_t wss_length_ = -1;            // the length window_sum_square_ was made for
  std::vector<float> wss_host_;        // kept alive until the asynchronous upload has read it
  DeviceBuffer<float> window_;         // n_fft (stft_window)
  DeviceBuffer<float> window_sum_square_;  // max_length_ (the first wss_length_ used)
  DeviceBuffer<float> magnitude_in_;   // n_freqs × frames (run's host magnitude, as given)
  DeviceBuffer<float> magnitude_;      // frames × n_freqs (run's magnitude, transposed)
  DeviceBuffer<float2> angles_;        // slices × frames × n_freqs: magnitude · phasor
  DeviceBuffer<float2> tprev_;         // slices × frames × n_freqs: the previous rebuilt spectrum
  DeviceBuffer<float2> rebuilt_;       // slices × frames × n_freqs: STFT of the last iSTFT
  DeviceBuffer<float> frame_rows_;     // slices × frames × n_fft: C2R output / R2C input
  DeviceBuffer<float> signal_;         // slices × max_length_ samples (n_slices × length used)
  Plans full_, tail_;                  // batch slices_ · frames_, and the last other count asked for
};

}  // namespace ds
