// STFT / iSTFT (kissfft), fast Griffin-Lim and spectral convergence on the CPU (see griffin_lim.h).
#include "audio/griffin_lim.h"

#include <kiss_fftr.h>

#include <cfloat>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/core/rng.h"

namespace ds {
namespace {

static_assert(sizeof(complexf) == sizeof(kiss_fft_cpx), "std::complex<float> is two floats, as kiss_fft_cpx");

// A kiss_fftr state (it keeps scratch space, so it is never shared between threads).
struct KissRealPlan {
  kiss_fftr_cfg cfg;
  KissRealPlan(int n_fft, bool inverse) : cfg(kiss_fftr_alloc(n_fft, inverse ? 1 : 0, nullptr, nullptr)) {
    if (!cfg) throw std::runtime_error("kiss_fftr_alloc failed for n_fft " + std::to_string(n_fft));
  }
  ~KissRealPlan() { kiss_fftr_free(cfg); }
  KissRealPlan(const KissRealPlan&) = delete;
  KissRealPlan& operator=(const KissRealPlan&) = delete;
};

void check_stft_params(const MelParams& p) {
  if (p.n_fft <= 0 || p.n_fft % 2 != 0)
    throw std::invalid_argument("--n-fft " + std::to_string(p.n_fft) + ": expected a positive even number");
  if (p.hop <= 0) throw std::invalid_argument("--hop " + std::to_string(p.hop) + ": expected > 0");
  if (p.win <= 0 || p.win > p.n_fft)
    throw std::invalid_argument("win " + std::to_string(p.win) + ": expected 1..n_fft (" + std::to_string(p.n_fft) + ")");
  if (p.pad_mode != "constant" && p.pad_mode != "reflect")
    throw std::invalid_argument("pad_mode '" + p.pad_mode + "': expected 'constant' or 'reflect'");
}

// Sample i of the centred (padded) signal, i in [0, L + n_fft).
inline float padded_sample(const float* x, int64_t L, int64_t i, int64_t pad, bool reflect) {
  int64_t j = i - pad;
  if (j >= 0 && j < L) return x[j];
  if (!reflect) return 0.0f;
  // numpy.pad mode='reflect': mirror about the edge sample without repeating it (needs L > pad).
  return j < 0 ? x[-j] : x[2 * (L - 1) - j];
}

}  // namespace

std::vector<float> stft_window(const MelParams& p) {
  check_stft_params(p);
  std::vector<float> w(p.n_fft, 0.0f);
  const int offset = (p.n_fft - p.win) / 2;  // librosa.util.pad_center: left = (size − n) // 2
  for (int n = 0; n < p.win; ++n)
    w[offset + n] = static_cast<float>(0.5 - 0.5 * std::cos(2.0 * M_PI * n / p.win));
  return w;
}

std::vector<complexf> stft(const float* x, int64_t L, const MelParams& p) {
  check_stft_params(p);
  const int n_fft = p.n_fft, n_freqs = p.n_freqs();
  const int64_t pad = p.center ? n_fft / 2 : 0;
  const bool reflect = p.center && p.pad_mode == "reflect";
  if (reflect && L <= pad)
    throw std::invalid_argument("stft: reflect padding needs more than n_fft/2 = " + std::to_string(pad) +
                                " samples, got " + std::to_string(L));
  if (!p.center && L < n_fft)
    throw std::invalid_argument("stft: center=false needs at least n_fft = " + std::to_string(n_fft) +
                                " samples, got " + std::to_string(L));
  const int64_t frames = p.stft_frames(L);
  const std::vector<float> window = stft_window(p);
  std::vector<complexf> out(static_cast<size_t>(frames) * n_freqs);
  // Single-threaded on purpose: Griffin-Lim calls this twice per iteration on a few hundred frames, and
  // an OpenMP region per call measured 5× slower than one thread on a loaded 2-core machine.
  KissRealPlan plan(n_fft, /*inverse=*/false);
  std::vector<float> frame(n_fft);
  for (int64_t t = 0; t < frames; ++t) {
    const int64_t start = t * p.hop;
    for (int n = 0; n < n_fft; ++n) frame[n] = window[n] * padded_sample(x, L, start + n, pad, reflect);
    kiss_fftr(plan.cfg, frame.data(), reinterpret_cast<kiss_fft_cpx*>(out.data() + t * n_freqs));
  }
  return out;
}

std::vector<float> istft(const complexf* spectrum, int64_t frames, const MelParams& p, int64_t length) {
  check_stft_params(p);
  if (frames <= 0) throw std::invalid_argument("istft: no frames");
  const int n_fft = p.n_fft, n_freqs = p.n_freqs();
  const std::vector<float> window = stft_window(p);
  const float inv_n = 1.0f / n_fft;  // kiss_fftri is unnormalised; numpy's irfft divides by n
  KissRealPlan plan(n_fft, /*inverse=*/true);  // single-threaded, as stft
  std::vector<float> seg(n_fft);
  const int64_t full = n_fft + p.hop * (frames - 1);
  std::vector<float> y(full, 0.0f), window_sum_square(full, 0.0f);
  for (int64_t t = 0; t < frames; ++t) {
    kiss_fftri(plan.cfg, reinterpret_cast<const kiss_fft_cpx*>(spectrum + t * n_freqs), seg.data());
    for (int n = 0; n < n_fft; ++n) seg[n] *= window[n] * inv_n;
    float* yt = y.data() + t * p.hop;
    float* wt = window_sum_square.data() + t * p.hop;
    for (int n = 0; n < n_fft; ++n) {
      yt[n] += seg[n];
      wt[n] += window[n] * window[n];
    }
  }
  const int64_t start = p.center ? n_fft / 2 : 0;
  if (length < 0) length = p.center ? full - 2 * start : full;
  std::vector<float> out(length, 0.0f);  // librosa.util.fix_length zero-extends past the last frame
  for (int64_t i = 0; i < length && start + i < full; ++i) {
    const float wss = window_sum_square[start + i];
    out[i] = wss > FLT_MIN ? y[start + i] / wss : y[start + i];
  }
  return out;
}

void griffin_lim_phase_update(complexf* angles, complexf* tprev, const complexf* rebuilt,
                              const float* magnitude, int64_t n, float momentum) {
  const float accel = momentum / (1.0f + momentum);
  for (int64_t i = 0; i < n; ++i) {
    const complexf r = rebuilt[i];
    complexf a(r.real() - accel * tprev[i].real(), r.imag() - accel * tprev[i].imag());
    const float scale = 1.0f / (std::abs(a) + FLT_MIN);
    a = complexf(a.real() * scale, a.imag() * scale);
    if (magnitude) a = complexf(a.real() * magnitude[i], a.imag() * magnitude[i]);
    angles[i] = a;
    tprev[i] = r;
  }
}

std::vector<float> griffin_lim(const float* magnitude, int64_t frames, const MelParams& p, int iters,
                               float momentum, uint64_t seed, int64_t length, bool random_init) {
  check_stft_params(p);
  if (iters < 0) throw std::invalid_argument("--gl-iters " + std::to_string(iters) + ": expected >= 0");
  const int n_freqs = p.n_freqs();
  const int64_t n = frames * n_freqs;
  if (length < 0) length = p.center ? p.hop * (frames - 1) : p.n_fft + p.hop * (frames - 1);
  if (p.stft_frames(length) != frames)
    throw std::invalid_argument("griffin_lim: " + std::to_string(length) + " samples give " +
                                std::to_string(p.stft_frames(length)) + " STFT frames, the magnitude has " +
                                std::to_string(frames));

  std::vector<float> mag(n);  // n_freqs × frames → frames × n_freqs
  for (int64_t t = 0; t < frames; ++t)
    for (int k = 0; k < n_freqs; ++k) mag[t * n_freqs + k] = magnitude[k * frames + t];

  // angles holds magnitude · phasor (librosa 0.10 absorbs S into angles).
  std::vector<complexf> angles(n), tprev(n, complexf(0.0f, 0.0f));
  if (random_init) {
    std::vector<float> u(n);
    Philox(seed, 0).fill_uniform(u.data(), n);
    for (int64_t i = 0; i < n; ++i) angles[i] = std::polar(mag[i], static_cast<float>(2.0 * M_PI) * u[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) angles[i] = complexf(mag[i], 0.0f);
  }
  for (int it = 0; it < iters; ++it) {
    const std::vector<float> inverse = istft(angles.data(), frames, p, length);
    const std::vector<complexf> rebuilt = stft(inverse.data(), length, p);
    griffin_lim_phase_update(angles.data(), tprev.data(), rebuilt.data(), mag.data(), n, momentum);
  }
  return istft(angles.data(), frames, p, length);
}

double spectral_convergence(const float* target, const float* achieved, int64_t n) {
  double diff = 0.0, ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(target[i]) - achieved[i];
    diff += d * d;
    ref += static_cast<double>(target[i]) * target[i];
  }
  if (ref == 0.0) return diff == 0.0 ? 0.0 : INFINITY;
  return std::sqrt(diff / ref);
}

std::vector<float> stft_magnitude(const complexf* spectrum, int64_t frames, int n_freqs) {
  std::vector<float> out(static_cast<size_t>(frames) * n_freqs);
  for (int64_t t = 0; t < frames; ++t)
    for (int k = 0; k < n_freqs; ++k) out[k * frames + t] = std::abs(spectrum[t * n_freqs + k]);
  return out;
}

}  // namespace ds
