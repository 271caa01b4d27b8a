// Mel-spectrogram parameters shared by the CPU reference, the GPU path, the inversion and the dataset
// sidecar, with the two named layouts (presets). One slice of L samples becomes a 1×n_mels×frames
// image: row 0 is the lowest mel band, column 0 the first frame (PNGs flip rows so lows are at the
// bottom).
#pragma once
#include <cstdint>
#include <string>

namespace ds {

struct MelParams {
  // Signal.
  int sr = 22050;
  double slice_seconds = 10.0;
  // STFT (librosa >= 0.9 semantics: periodic Hann of win = n_fft, center=True with zero padding).
  int n_fft = 2048;
  int hop = 431;
  int win = 2048;                      // window length; == n_fft here (librosa pads shorter windows)
  bool center = true;
  std::string pad_mode = "constant";   // "constant" (zeros, librosa >= 0.9 default) or "reflect"
  // Mel filterbank exactly as librosa.filters.mel.
  int n_mels = 128;
  double fmin = 0.0;
  double fmax = -1.0;                  // < 0: sr / 2
  std::string mel_scale = "slaney";    // "slaney" (librosa default) or "htk"
  std::string mel_norm = "slaney";     // "slaney" (area normalisation) or "none"
  // power_to_db: 10·log10(max(S, amin)) − 10·log10(max(ref, amin)), then clipped at max − top_db.
  double amin = 1e-10;
  double top_db = 80.0;
  double ref = -1.0;                   // < 0: ref = max of each slice's mel power (librosa ref=np.max)
  // Output image: `frames` columns. For the default layout frames == STFT frames; the `seed` layout
  // resizes the dB image (antialiased, half-pixel centres) to resize_h × resize_w.
  int frames = 512;
  int resize_h = 0, resize_w = 0;      // 0: no resize

  int64_t slice_samples() const { return static_cast<int64_t>(slice_seconds * sr + 0.5); }
  double fmax_hz() const { return fmax < 0 ? sr / 2.0 : fmax; }
  int n_freqs() const { return n_fft / 2 + 1; }
  // STFT frames of an L-sample signal: 1 + L / hop with center=True, else 1 + (L − n_fft) / hop.
  int64_t stft_frames(int64_t L) const { return center ? 1 + L / hop : 1 + (L - n_fft) / hop; }
  int image_height() const { return resize_h ? resize_h : n_mels; }
  int image_width() const { return resize_w ? resize_w : frames; }
};

// The documented affine map of dB in [−top_db, 0] onto [−1, 1] for the tanh generator, and back.
inline double db_to_unit(double db, double top_db) { return db / top_db * 2.0 + 1.0; }
inline double unit_to_db(double x, double top_db) { return (x - 1.0) * 0.5 * top_db; }

// Named layouts. "default": 128 mel bands × 512 frames per 10 s slice, hop = floor(L / (frames − 1))
// (431 at 22.05 kHz), so exactly 512 frames with center=True and nothing cropped. "seed": the blog's
// n_fft 2048, hop 512, 128 bands (431 frames), resized in the dB domain to 128×128.
MelParams mel_preset(const std::string& name, int sr = 22050, double slice_seconds = 10.0);

}  // namespace ds
