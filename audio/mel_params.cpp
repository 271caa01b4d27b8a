// Mel presets (see mel_params.h).
#include "audio/mel_params.h"

#include <stdexcept>

namespace ds {

MelParams mel_preset(const std::string& name, int sr, double slice_seconds) {
  MelParams p;
  p.sr = sr;
  p.slice_seconds = slice_seconds;
  const int64_t L = p.slice_samples();
  if (name == "default") {
    p.n_fft = p.win = 2048;
    p.n_mels = 128;
    p.frames = 512;
    p.hop = static_cast<int>(L / (p.frames - 1));
  } else if (name == "seed") {
    p.n_fft = p.win = 2048;
    p.n_mels = 128;
    p.hop = 512;
    p.frames = static_cast<int>(p.stft_frames(L));
    p.resize_h = 128;
    p.resize_w = 128;
  } else {
    throw std::invalid_argument("--preset " + name + ": expected 'default' or 'seed'");
  }
  return p;
}

}  // namespace ds
