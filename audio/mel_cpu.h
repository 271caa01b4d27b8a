// CPU reference of the mel spectrogram (librosa >= 0.9 semantics): periodic Hann, centred STFT power
// (FFTW in float, a plain DFT in double for tests), librosa.filters.mel, power_to_db, the [−1, 1]
// map and the antialiased dB-domain resize of the `seed` layout. The GPU path (cuFFT) mirrors it.
// Shapes: x L samples; window n_fft; filterbank n_mels × n_freqs (n_freqs = n_fft/2 + 1); power
// frames × n_freqs (one spectrum per row, as an R2C batch lays it out); mel power, dB and images
// n_mels × frames (row 0 the lowest band, column 0 the first frame). All row-major.
#pragma once
#include <cstdint>
#include <vector>

#include "audio/mel_params.h"

namespace ds {

// w[k] = 0.5 − 0.5·cos(2πk/n), k < n: scipy.signal.get_window('hann', n, fftbins=True), librosa's
// window. Computed in double, stored float.
std::vector<float> hann_window_periodic(int n);
std::vector<double> hann_window_periodic_double(int n);

// librosa.hz_to_mel / mel_to_hz (core/convert.py): htk = 2595·log10(1 + f/700); slaney = linear
// f/(200/3) below 1000 Hz, 15 + ln(f/1000)/(ln(6.4)/27) above.
double hz_to_mel(double hz, bool htk);
double mel_to_hz(double mel, bool htk);

// librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk, norm) as float32 (librosa's default dtype),
// n_mels × n_freqs. Throws std::invalid_argument for an unknown mel_scale / mel_norm.
std::vector<float> mel_filterbank(const MelParams& p);

// |STFT|² of x: frames = p.stft_frames(L) rows of n_freqs. center=True pads n_fft/2 on both sides with
// zeros ("constant") or a mirror without the edge sample ("reflect", numpy's; needs L > n_fft/2).
// The float version uses FFTW's r2c, planned once per n_fft with FFTW_ESTIMATE (frames in parallel,
// OpenMP); the double version a plain DFT in
// double (O(n_fft²) per frame: for tests, the float path's yardstick).
std::vector<float> stft_power(const float* x, int64_t L, const MelParams& p);
std::vector<double> stft_power(const double* x, int64_t L, const MelParams& p);

// mel[m, t] = Σ_f filterbank[m, f]·power[t, f] over row m's non-zero band, accumulated in double (the
// band's even and odd bins in two sums, added at the end), n_mels × frames.
std::vector<float> mel_project(const float* filterbank, const float* power, int64_t frames, const MelParams& p);
std::vector<double> mel_project(const float* filterbank, const double* power, int64_t frames, const MelParams& p);

// librosa.power_to_db on one slice: 10·log10(max(S, amin)) − 10·log10(max(ref, amin)), with
// ref = p.ref if p.ref >= 0 else max(S), then clipped below at (max of the result) − top_db (no clip when
// top_db <= 0). *ref_used (if not null) gets the ref. The double version computes in double (libm's
// log10); the float one, mel_image's, in float as librosa does on float32 power, with a vectorisable ln
// of its own (within 3e-5 dB of the double version; power must be finite and non-negative).
std::vector<float> power_to_db(const double* mel_power, int64_t n, const MelParams& p, double* ref_used);
std::vector<float> power_to_db(const float* mel_power, int64_t n, const MelParams& p, double* ref_used);

// Mel power (n_mels × frames) and its dB image of one slice, the librosa pipeline end to end.
// filterbank: mel_filterbank(p), or null: computed here. These free functions prepare a MelCpu per call
// (filterbank, its bands, window: at the default layout more than half as much work as the slice
// itself); a caller doing many slices keeps one MelCpu instead. mel_power is mel_project(stft_power(x))
// bit for bit.
std::vector<float> mel_power(const float* x, int64_t L, const MelParams& p, const float* filterbank = nullptr);
std::vector<float> mel_spectrogram_db(const float* x, int64_t L, const MelParams& p, double* ref_used,
                                      const float* filterbank = nullptr);

// The filterbank as the CPU projection reads it: row m's non-zero band, columns begin[m] .. end[m] − 1,
// its weights widened to double (packed row after row from offset[m]).
struct MelFilterBands {
  std::vector<int> begin, end;
  std::vector<size_t> offset;
  std::vector<double> weights;
};
MelFilterBands mel_filter_bands(const float* filterbank, int n_mels, int n_freqs);

// The CPU mel pipeline of one layout, prepared once: the window, the filterbank and its bands, the FFT
// plan. What dataset preparation and the bench keep for all their slices; thread-safe (const).
// power / db / image are mel_power / mel_spectrogram_db / mel_image of one slice x of L samples.
class MelCpu {
 public:
  explicit MelCpu(const MelParams& p, const float* filterbank = nullptr);
  const MelParams& params() const { return p_; }
  const std::vector<float>& filterbank() const { return filterbank_; }
  std::vector<float> power(const float* x, int64_t L) const;
  std::vector<float> db(const float* x, int64_t L, double* ref_used) const;
  std::vector<float> image(const float* x, int64_t L, double* ref_used) const;

 private:
  MelParams p_;
  std::vector<float> filterbank_;
  std::vector<float> window_;  // stft_window at n_fft points, float
  MelFilterBands bands_;
};

// The antialiased resize along one axis, as PyTorch's F.interpolate(mode='bilinear', antialias=True,
// align_corners=False) and PIL's BILINEAR resample compute it (aten/src/ATen/native/cpu/UpSampleKernel.cpp,
// HelperInterpBase::_compute_indices_min_size_weights_aa): a triangle filter stretched by the reduction
// factor scale = in/out when shrinking (support ±scale input pixels; plain linear interpolation when
// growing), half-pixel centres (output i sits at input coordinate scale·(i + 0.5)), weights normalised
// to sum 1 (so edges renormalise). Output i reads inputs first[i] .. first[i] + count[i] − 1 with
// weights[i·taps + j]; taps is the largest count.
struct ResizeTaps {
  int taps = 0;
  std::vector<int> first, count;
  std::vector<double> weights;  // out_size × taps, zero past count[i]
};
ResizeTaps antialias_resize_taps(int in_size, int out_size);

// out (out_h × out_w) = the separable antialiased resize of in (in_h × in_w): rows (width) first, then
// columns (height), in double. Same size on an axis is the identity on it.
void resize_image_antialiased(float* out, const float* in, int in_h, int in_w, int out_h, int out_w);

// The training image of one slice: dB (mel_spectrogram_db), for the `seed` layout resized in the dB
// domain to resize_h × resize_w, then db_to_unit onto [−1, 1]: image_height() × image_width(). Without a
// resize, stft_frames(L) must equal p.frames (throws std::invalid_argument otherwise).
std::vector<float> mel_image(const float* x, int64_t L, const MelParams& p, double* ref_used,
                             const float* filterbank = nullptr);

}  // namespace ds
