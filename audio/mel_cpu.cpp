// CPU reference of the mel spectrogram (see mel_cpu.h). Written to follow librosa line by line; the
// comments name the librosa (0.11) source each step mirrors.
#include "audio/mel_cpu.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

namespace ds {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Slaney's constants, librosa core/convert.py hz_to_mel / mel_to_hz.
constexpr double kSlaneyHzPerMel = 200.0 / 3;  // f_sp: linear region
constexpr double kSlaneyMinLogHz = 1000.0;     // start of the log region
constexpr double kSlaneyMinLogMel = kSlaneyMinLogHz / kSlaneyHzPerMel;
const double kSlaneyLogStep = std::log(6.4) / 27.0;

// What the STFT needs of the layout, whatever the signal.
void check_stft_layout(const MelParams& p) {
  if (p.n_fft < 2 || p.n_fft % 2 != 0)
    throw std::invalid_argument("--n-fft " + std::to_string(p.n_fft) + ": expected an even number >= 2");
  if (p.hop < 1) throw std::invalid_argument("--hop " + std::to_string(p.hop) + ": expected >= 1");
  if (p.win < 1 || p.win > p.n_fft)
    throw std::invalid_argument("win " + std::to_string(p.win) + ": expected 1 .. n_fft");
  if (p.pad_mode != "constant" && p.pad_mode != "reflect")
    throw std::invalid_argument("pad_mode '" + p.pad_mode + "': expected 'constant' or 'reflect'");
}

void check_stft_params(const MelParams& p, int64_t L) {
  check_stft_layout(p);
  if (L < 1 || (!p.center && L < p.n_fft))
    throw std::invalid_argument("signal of " + std::to_string(L) + " samples: too short for n_fft " +
                                std::to_string(p.n_fft));
  if (p.center && p.pad_mode == "reflect" && L <= p.n_fft / 2)
    throw std::invalid_argument("pad_mode 'reflect' needs more than n_fft/2 = " + std::to_string(p.n_fft / 2) +
                                " samples, got " + std::to_string(L));
}

// The analysis window at full n_fft length: a periodic Hann of `win` samples centred in n_fft
// (librosa.util.pad_center: left pad (n_fft − win) // 2).
std::vector<double> stft_window(const MelParams& p) {
  std::vector<double> window(static_cast<size_t>(p.n_fft), 0.0);
  const std::vector<double> hann = hann_window_periodic_double(p.win);
  const int left = (p.n_fft - p.win) / 2;
  for (int n = 0; n < p.win; ++n) window[static_cast<size_t>(left + n)] = hann[static_cast<size_t>(n)];
  return window;
}

// The signal as the STFT frames see it: with center, n_fft/2 samples of padding on each side, zeros
// or numpy's 'reflect' (x[−j] = x[j], x[L−1+j] = x[L−1−j]: the edge sample is not repeated).
template <class T>
std::vector<T> padded_signal(const T* x, int64_t L, const MelParams& p) {
  const int64_t pad = p.center ? p.n_fft / 2 : 0;
  std::vector<T> out(static_cast<size_t>(L + 2 * pad), T(0));
  std::copy(x, x + L, out.begin() + pad);
  if (pad > 0 && p.pad_mode == "reflect") {
    for (int64_t j = 1; j <= pad; ++j) {
      out[static_cast<size_t>(pad - j)] = x[j];
      out[static_cast<size_t>(pad + L - 1 + j)] = x[L - 1 - j];
    }
  }
  return out;
}

// The per-element loops (window, power, projection, dB) compiled twice on x86-64, for AVX2 and for the
// baseline (SSE2), the loader picking one by the CPU (GCC's and Clang's function multiversioning): the
// project builds for the baseline, and these loops were half the time left besides FFTW's (which picks
// its own SIMD at run time). AVX2 without FMA: every operation rounds as in the baseline build, so the
// two versions give the same bits (the sums' order is written out, never left to the vectoriser).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DS_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DS_AVX2_CLONES
#endif

// frame[n] = window[n]·src[n], n < n_fft.
DS_AVX2_CLONES void window_frame(float* frame, const float* window, const float* src, int n_fft) {
  for (int n = 0; n < n_fft; ++n) frame[n] = window[n] * src[n];
}

// power[k] = |X[k]|² in float (as stft_power stores it), widened to double, k < n_freqs.
DS_AVX2_CLONES void frame_power(double* power, const fftwf_complex* spectrum, int n_freqs) {
  for (int k = 0; k < n_freqs; ++k) power[k] = spectrum[k][0] * spectrum[k][0] + spectrum[k][1] * spectrum[k][1];
}

// Two doubles in one SSE2 register (GCC's and Clang's vector extension: + and * act lane by lane).
// Written out because GCC, left to vectorise the block loop below on its own, gathered across frames
// and spilled its sums to the stack.
typedef double double2 __attribute__((vector_size(16)));

inline double2 load2(const double* p) {  // p need not be 16-byte aligned
  double2 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Frames projected together. One frame's projection was a chain of dependent double adds per filter
// (most filters are a few bins wide), so the adds' latency, not their count, set its time; projecting
// kFrameBlock frames at once gives each filter kFrameBlock independent sums, each a double2 that takes
// a pair of bins per multiply-add, which keep the floating-point units busy, and loads each weight
// pair once per block. The block's power, 8 frames × 1025 doubles (66 KB), is read frame after frame
// in bin order, as the FFT wrote it.
constexpr int kFrameBlock = 8;

// totals[m · kFrameBlock + j] = Σ_f filterbank[m, f]·power[j · n_freqs + f] over row m's band, in double:
// the even-offset bins' sum (lane 0) plus the odd-offset bins' (lane 1), an odd last bin added to the sum
// of the two. All kFrameBlock frames (fixed trip counts, so the sums stay in registers); a partial last
// block's extra frames hold an earlier block's power or zeros and are not stored (store_block).
DS_AVX2_CLONES void project_block(double* totals, const MelFilterBands& bands, const double* power, int n_freqs) {
  for (size_t m = 0; m < bands.begin.size(); ++m) {
    const int b = bands.begin[m], e = bands.end[m];
    const double* w = bands.weights.data() + bands.offset[m];  // w[i]: the weight of bin b + i
    const double* band = power + b;                             // band[j · n_freqs + i]: bin b + i of frame j
    const int width = e - b;
    double2 sum[kFrameBlock] = {};
    int i = 0;
    for (; i + 2 <= width; i += 2) {
      const double2 weight = load2(w + i);
      for (int j = 0; j < kFrameBlock; ++j) sum[j] += weight * load2(band + j * n_freqs + i);
    }
    double* total = totals + m * kFrameBlock;
    for (int j = 0; j < kFrameBlock; ++j) total[j] = sum[j][0] + sum[j][1];
    if (i < width)
      for (int j = 0; j < kFrameBlock; ++j) total[j] += w[i] * band[j * n_freqs + i];
  }
}

// mel[m · frames + j] = totals[m · kFrameBlock + j] for the block's first `count` frames.
template <class T>
void store_block(T* mel, int64_t frames, int count, int n_mels, const double* totals) {
  for (int m = 0; m < n_mels; ++m)
    for (int j = 0; j < count; ++j)
      mel[static_cast<int64_t>(m) * frames + j] = static_cast<T>(totals[m * kFrameBlock + j]);
}

// The real-to-complex FFT of n_fft points, planned once per size. FFTW_ESTIMATE: the plan depends only on
// the size (FFTW_MEASURE would time candidates and could pick differently from run to run, changing the
// rounding of datasets made from the same audio). Planning is not thread-safe, hence the lock;
// executing one plan from several threads on their own arrays is (FFTW manual, "Thread safety").
// The cache lives as long as the process and is never destroyed: a map destroyed at exit dropped the
// plans without fftwf_destroy_plan (LeakSanitizer's report), and destroying them instead could pull
// a plan from under a thread still transforming while the process exits.
fftwf_plan r2c_plan(int n_fft) {
  static std::mutex lock;
  static std::map<int, fftwf_plan>& plans = *new std::map<int, fftwf_plan>;
  std::lock_guard<std::mutex> guard(lock);
  auto it = plans.find(n_fft);
  if (it != plans.end()) return it->second;
  float* in = fftwf_alloc_real(static_cast<size_t>(n_fft));
  fftwf_complex* out = fftwf_alloc_complex(static_cast<size_t>(n_fft / 2 + 1));
  const fftwf_plan plan = fftwf_plan_dft_r2c_1d(n_fft, in, out, FFTW_ESTIMATE);
  fftwf_free(out);
  fftwf_free(in);
  if (!plan) throw std::runtime_error("fftwf_plan_dft_r2c_1d(" + std::to_string(n_fft) + ") failed");
  plans.emplace(n_fft, plan);
  return plan;
}

template <class T>
std::vector<T> mel_project_impl(const float* filterbank, const T* power, int64_t frames, const MelParams& p) {
  const int n_freqs = p.n_freqs();
  const MelFilterBands bands = mel_filter_bands(filterbank, p.n_mels, n_freqs);
  std::vector<T> mel(static_cast<size_t>(p.n_mels * frames));
  const int64_t blocks = (frames + kFrameBlock - 1) / kFrameBlock;
#pragma omp parallel
  {
    // A block's power in double, as MelCpu::power holds it.
    std::vector<double> block(static_cast<size_t>(kFrameBlock) * n_freqs, 0.0);
    std::vector<double> totals(static_cast<size_t>(p.n_mels) * kFrameBlock);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t t0 = blk * kFrameBlock;
      const int count = static_cast<int>(std::min<int64_t>(kFrameBlock, frames - t0));
      std::copy(power + t0 * n_freqs, power + (t0 + count) * n_freqs, block.begin());
      project_block(totals.data(), bands, block.data(), n_freqs);
      store_block(mel.data() + t0, frames, count, p.n_mels, totals.data());
    }
  }
  return mel;
}

// ln x for a positive normal float x, in float arithmetic only: x = 2^e·m with m in [√½, √2) (read off
// the bits: subtracting those of √½ puts the exponent step at m = √2), ln m = 2·atanh(s) with
// s = (m − 1)/(m + 1), |s| <= 0.1716, by its odd series to s⁹ (the first term left out is below 2e-9 of
// the sum), e·ln 2 with ln 2 split in a part exact in float (12 bits) and the rest. Error against the
// exact ln over every float from 1e-10 up: 3.9e-6 absolute, half a float ulp of |ln x| <= 89. No
// library call and no float compare, so the dB loop vectorises (a float compare under the default
// -ftrapping-math keeps GCC from it), and the bits are the same on every x86-64 (libm picks an FMA
// variant of log where the CPU has one).
inline float ln_positive(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const int32_t e = (static_cast<int32_t>(bits) - 0x3f3504f3) >> 23;  // 0x3f3504f3: √½
  const uint32_t m_bits = bits - (static_cast<uint32_t>(e) << 23);
  float m;
  std::memcpy(&m, &m_bits, sizeof m);
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  const float ln_m = 2.0f * s * (1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9)))));
  const float fe = static_cast<float>(e);
  return fe * 0.693145751953125f + (ln_m + fe * 1.428606765330187e-06f);
}

// librosa core/spectrum.py power_to_db, in double: the yardstick of the float path below.
std::vector<float> power_to_db_double(const double* mel_power, int64_t n, const MelParams& p, double* ref_used) {
  double ref = p.ref;
  if (ref < 0) {
    ref = 0.0;
    for (int64_t i = 0; i < n; ++i) ref = std::max(ref, mel_power[i]);
  }
  if (ref_used) *ref_used = ref;
  const double ref_db = 10.0 * std::log10(std::max(p.amin, ref));
  std::vector<double> db(static_cast<size_t>(n));
  double db_max = -HUGE_VAL;
  for (int64_t i = 0; i < n; ++i) {
    db[static_cast<size_t>(i)] = 10.0 * std::log10(std::max(p.amin, mel_power[i])) - ref_db;
    db_max = std::max(db_max, db[static_cast<size_t>(i)]);
  }
  const double floor_db = p.top_db > 0 ? db_max - p.top_db : -HUGE_VAL;
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<float>(std::max(db[static_cast<size_t>(i)], floor_db));
  return out;
}

// power_to_db of non-negative float power, in place, in float as librosa computes it on float32 mel
// power: 10·log10(max(S, amin)) − 10·log10(max(ref, amin)), clipped below at the slice's largest dB
// value − top_db. log10 being monotone, that largest value is the one of the largest power (as
// kernels/spectral.cu), so one pass does it all and no dB buffer is kept. The clamp at amin compares
// the bit patterns as integers: for non-negative floats their order is the values' order.
// to_unit: the clipped dB also mapped onto [−1, 1] (db_to_unit, mel_image's last step without a resize)
// in the clip's pass rather than one of its own.
DS_AVX2_CLONES void power_to_db_in_place(float* values, int64_t n, const MelParams& p, double* ref_used,
                                         bool to_unit = false) {
  float largest = 0.0f;
  for (int64_t i = 0; i < n; ++i) largest = std::max(largest, values[i]);
  const double ref = p.ref >= 0 ? p.ref : static_cast<double>(largest);
  if (ref_used) *ref_used = ref;
  const float amin = static_cast<float>(p.amin);
  const float db_per_ln = static_cast<float>(10.0 / std::log(10.0));
  const float ref_db = static_cast<float>(10.0 * std::log10(std::max(p.amin, ref)));
  const float floor_db = p.top_db > 0 ? db_per_ln * ln_positive(std::max(largest, amin)) - ref_db -
                                            static_cast<float>(p.top_db)
                                      : -HUGE_VALF;
  int32_t amin_bits;
  std::memcpy(&amin_bits, &amin, sizeof amin_bits);
  for (int64_t i = 0; i < n; ++i) {
    int32_t bits;
    std::memcpy(&bits, &values[i], sizeof bits);
    bits = std::max(bits, amin_bits);
    float clamped;
    std::memcpy(&clamped, &bits, sizeof clamped);
    values[i] = db_per_ln * ln_positive(clamped) - ref_db;
  }
  if (to_unit)
    for (int64_t i = 0; i < n; ++i) values[i] = static_cast<float>(db_to_unit(std::max(values[i], floor_db), p.top_db));
  else
    for (int64_t i = 0; i < n; ++i) values[i] = std::max(values[i], floor_db);
}

}  // namespace

std::vector<double> hann_window_periodic_double(int n) {
  std::vector<double> w(static_cast<size_t>(std::max(n, 0)));
  for (int k = 0; k < n; ++k) w[static_cast<size_t>(k)] = 0.5 - 0.5 * std::cos(2.0 * kPi * k / n);
  return w;
}

std::vector<float> hann_window_periodic(int n) {
  const std::vector<double> w = hann_window_periodic_double(n);
  return std::vector<float>(w.begin(), w.end());
}

double hz_to_mel(double hz, bool htk) {
  if (htk) return 2595.0 * std::log10(1.0 + hz / 700.0);
  if (hz >= kSlaneyMinLogHz) return kSlaneyMinLogMel + std::log(hz / kSlaneyMinLogHz) / kSlaneyLogStep;
  return hz / kSlaneyHzPerMel;
}

double mel_to_hz(double mel, bool htk) {
  if (htk) return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0);
  if (mel >= kSlaneyMinLogMel) return kSlaneyMinLogHz * std::exp(kSlaneyLogStep * (mel - kSlaneyMinLogMel));
  return kSlaneyHzPerMel * mel;
}

std::vector<float> mel_filterbank(const MelParams& p) {
  if (p.mel_scale != "slaney" && p.mel_scale != "htk")
    throw std::invalid_argument("mel_scale '" + p.mel_scale + "': expected 'slaney' or 'htk'");
  if (p.mel_norm != "slaney" && p.mel_norm != "none")
    throw std::invalid_argument("mel_norm '" + p.mel_norm + "': expected 'slaney' or 'none'");
  const bool htk = p.mel_scale == "htk";
  const int n_mels = p.n_mels, n_freqs = p.n_freqs();

  // fft_frequencies = np.fft.rfftfreq(n_fft, 1/sr): k · (1 / (n_fft · (1/sr))).
  std::vector<double> fft_hz(static_cast<size_t>(n_freqs));
  const double bin_hz = 1.0 / (p.n_fft * (1.0 / p.sr));
  for (int k = 0; k < n_freqs; ++k) fft_hz[static_cast<size_t>(k)] = k * bin_hz;

  // mel_frequencies(n_mels + 2, fmin, fmax, htk): mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax))),
  // numpy's linspace being start + i·step with the last point set to stop exactly.
  const int n_points = n_mels + 2;
  const double mel_lo = hz_to_mel(p.fmin, htk), mel_hi = hz_to_mel(p.fmax_hz(), htk);
  const double step = (mel_hi - mel_lo) / (n_points - 1);
  std::vector<double> band_hz(static_cast<size_t>(n_points));
  for (int i = 0; i < n_points; ++i)
    band_hz[static_cast<size_t>(i)] = mel_to_hz(i == n_points - 1 ? mel_hi : mel_lo + i * step, htk);

  // filters.mel: fdiff = np.diff(mel_f); ramps = np.subtract.outer(mel_f, fftfreqs);
  // weights[i] = max(0, min(−ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1])), stored as float32, then
  // (slaney) weights *= 2 / (mel_f[i + 2] − mel_f[i]) computed in double and rounded to float32 again.
  std::vector<float> weights(static_cast<size_t>(n_mels) * n_freqs);
  for (int i = 0; i < n_mels; ++i) {
    const double fdiff_lo = band_hz[static_cast<size_t>(i + 1)] - band_hz[static_cast<size_t>(i)];
    const double fdiff_hi = band_hz[static_cast<size_t>(i + 2)] - band_hz[static_cast<size_t>(i + 1)];
    const double enorm = 2.0 / (band_hz[static_cast<size_t>(i + 2)] - band_hz[static_cast<size_t>(i)]);
    for (int k = 0; k < n_freqs; ++k) {
      const double lower = -(band_hz[static_cast<size_t>(i)] - fft_hz[static_cast<size_t>(k)]) / fdiff_lo;
      const double upper = (band_hz[static_cast<size_t>(i + 2)] - fft_hz[static_cast<size_t>(k)]) / fdiff_hi;
      float w = static_cast<float>(std::max(0.0, std::min(lower, upper)));
      if (p.mel_norm == "slaney") w = static_cast<float>(static_cast<double>(w) * enorm);
      weights[static_cast<size_t>(i) * n_freqs + k] = w;
    }
  }
  return weights;
}

std::vector<float> stft_power(const float* x, int64_t L, const MelParams& p) {
  check_stft_params(p, L);
  const int n_fft = p.n_fft, n_freqs = p.n_freqs();
  const int64_t frames = p.stft_frames(L);
  const std::vector<float> padded = padded_signal(x, L, p);
  const std::vector<double> window_d = stft_window(p);
  const std::vector<float> window(window_d.begin(), window_d.end());
  std::vector<float> power(static_cast<size_t>(frames * n_freqs));
  const fftwf_plan plan = r2c_plan(n_fft);
#pragma omp parallel
  {
    // Every thread its own FFTW-aligned arrays; the shared plan is executed on them (new-array execute).
    float* frame = fftwf_alloc_real(static_cast<size_t>(n_fft));
    fftwf_complex* spectrum = fftwf_alloc_complex(static_cast<size_t>(n_freqs));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < frames; ++t) {
      const float* src = padded.data() + t * p.hop;
      for (int n = 0; n < n_fft; ++n) frame[n] = window[static_cast<size_t>(n)] * src[n];
      fftwf_execute_dft_r2c(plan, frame, spectrum);
      float* out = power.data() + t * n_freqs;
      for (int k = 0; k < n_freqs; ++k) out[k] = spectrum[k][0] * spectrum[k][0] + spectrum[k][1] * spectrum[k][1];
    }
    fftwf_free(spectrum);
    fftwf_free(frame);
  }
  return power;
}

std::vector<double> stft_power(const double* x, int64_t L, const MelParams& p) {
  check_stft_params(p, L);
  const int n_fft = p.n_fft, n_freqs = p.n_freqs();
  const int64_t frames = p.stft_frames(L);
  const std::vector<double> padded = padded_signal(x, L, p);
  const std::vector<double> window = stft_window(p);
  // Exact twiddles: e^{−2πi·j/n_fft} for j = k·n mod n_fft, each computed once from its own angle.
  std::vector<double> cos_table(static_cast<size_t>(n_fft)), sin_table(static_cast<size_t>(n_fft));
  for (int j = 0; j < n_fft; ++j) {
    cos_table[static_cast<size_t>(j)] = std::cos(2.0 * kPi * j / n_fft);
    sin_table[static_cast<size_t>(j)] = std::sin(2.0 * kPi * j / n_fft);
  }
  std::vector<double> power(static_cast<size_t>(frames * n_freqs));
#pragma omp parallel
  {
    std::vector<double> frame(static_cast<size_t>(n_fft));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < frames; ++t) {
      const double* src = padded.data() + t * p.hop;
      for (int n = 0; n < n_fft; ++n) frame[static_cast<size_t>(n)] = window[static_cast<size_t>(n)] * src[n];
      for (int k = 0; k < n_freqs; ++k) {
        double re = 0.0, im = 0.0;
        int j = 0;
        for (int n = 0; n < n_fft; ++n) {
          re += frame[static_cast<size_t>(n)] * cos_table[static_cast<size_t>(j)];
          im -= frame[static_cast<size_t>(n)] * sin_table[static_cast<size_t>(j)];
          j += k;
          if (j >= n_fft) j -= n_fft;
        }
        power[static_cast<size_t>(t * n_freqs + k)] = re * re + im * im;
      }
    }
  }
  return power;
}

std::vector<float> mel_project(const float* filterbank, const float* power, int64_t frames, const MelParams& p) {
  return mel_project_impl(filterbank, power, frames, p);
}
std::vector<double> mel_project(const float* filterbank, const double* power, int64_t frames, const MelParams& p) {
  return mel_project_impl(filterbank, power, frames, p);
}

std::vector<float> power_to_db(const double* mel_power, int64_t n, const MelParams& p, double* ref_used) {
  return power_to_db_double(mel_power, n, p, ref_used);
}
std::vector<float> power_to_db(const float* mel_power, int64_t n, const MelParams& p, double* ref_used) {
  std::vector<float> db(mel_power, mel_power + n);
  power_to_db_in_place(db.data(), n, p, ref_used);
  return db;
}

MelFilterBands mel_filter_bands(const float* filterbank, int n_mels, int n_freqs) {
  MelFilterBands bands;
  bands.begin.resize(static_cast<size_t>(n_mels));
  bands.end.resize(static_cast<size_t>(n_mels));
  bands.offset.resize(static_cast<size_t>(n_mels));
  for (int m = 0; m < n_mels; ++m) {
    const float* row = filterbank + static_cast<int64_t>(m) * n_freqs;
    int b = 0, e = n_freqs;
    while (b < n_freqs && row[b] == 0.0f) ++b;
    while (e > b && row[e - 1] == 0.0f) --e;
    bands.begin[static_cast<size_t>(m)] = b;
    bands.end[static_cast<size_t>(m)] = e;
    bands.offset[static_cast<size_t>(m)] = bands.weights.size();
    for (int f = b; f < e; ++f) bands.weights.push_back(static_cast<double>(row[f]));
  }
  return bands;
}

MelCpu::MelCpu(const MelParams& p, const float* filterbank) : p_(p) {
  check_stft_layout(p);
  filterbank_ = filterbank ? std::vector<float>(filterbank, filterbank + static_cast<size_t>(p.n_mels) * p.n_freqs())
                           : mel_filterbank(p);
  const std::vector<double> window = stft_window(p);
  window_.assign(window.begin(), window.end());
  bands_ = mel_filter_bands(filterbank_.data(), p.n_mels, p.n_freqs());
  r2c_plan(p.n_fft);  // planned here rather than inside the first slice
}

std::vector<float> MelCpu::power(const float* x, int64_t L) const {
  // stft_power then mel_project, kFrameBlock frames at a time: each frame is windowed straight from x
  // (padding made on the fly for the few edge frames), transformed and squared into the block's power, and
  // the block is projected onto the non-zero filter bands while it is still in cache. The
  // slice-sized padded signal and power spectrogram (2 MB at the default layout) are never made. The
  // arithmetic is the unfused path's, operation for operation (same window, same FFT plan on
  // FFTW-aligned arrays, same float power widened to double, same project_block), so the result is
  // bit-identical to mel_project(stft_power(x)) (tests/test_unit_mel_cpu.cpp checks it).
  const MelParams& p = p_;
  check_stft_params(p, L);
  const int n_fft = p.n_fft, n_freqs = p.n_freqs();
  const int64_t frames = p.stft_frames(L);
  const int64_t pad = p.center ? p.n_fft / 2 : 0;
  const bool reflect = p.pad_mode == "reflect";
  const float* window = window_.data();
  std::vector<float> mel(static_cast<size_t>(p.n_mels * frames));
  const fftwf_plan plan = r2c_plan(n_fft);
  const int64_t blocks = (frames + kFrameBlock - 1) / kFrameBlock;
#pragma omp parallel
  {
    float* frame = fftwf_alloc_real(static_cast<size_t>(n_fft));
    fftwf_complex* spectrum = fftwf_alloc_complex(static_cast<size_t>(n_freqs));
    std::vector<double> block(static_cast<size_t>(kFrameBlock) * n_freqs, 0.0);  // kFrameBlock frames' power
    std::vector<double> totals(static_cast<size_t>(p.n_mels) * kFrameBlock);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t t0 = blk * kFrameBlock;
      const int count = static_cast<int>(std::min<int64_t>(kFrameBlock, frames - t0));
      for (int j = 0; j < count; ++j) {
        const int64_t start = (t0 + j) * p.hop - pad;  // index into x of the frame's first sample
        if (start >= 0 && start + n_fft <= L) {
          window_frame(frame, window, x + start, n_fft);
        } else {  // an edge frame: padded_signal's value of every sample
          for (int n = 0; n < n_fft; ++n) {
            int64_t i = start + n;
            float v = 0.0f;
            if (i >= 0 && i < L)
              v = x[i];
            else if (reflect)
              v = x[i < 0 ? -i : 2 * (L - 1) - i];
            frame[n] = window[n] * v;
          }
        }
        fftwf_execute_dft_r2c(plan, frame, spectrum);
        frame_power(block.data() + static_cast<size_t>(j) * n_freqs, spectrum, n_freqs);
      }
      project_block(totals.data(), bands_, block.data(), n_freqs);
      store_block(mel.data() + t0, frames, count, p.n_mels, totals.data());
    }
    fftwf_free(spectrum);
    fftwf_free(frame);
  }
  return mel;
}

std::vector<float> MelCpu::db(const float* x, int64_t L, double* ref_used) const {
  std::vector<float> mel = power(x, L);
  power_to_db_in_place(mel.data(), static_cast<int64_t>(mel.size()), p_, ref_used);
  return mel;
}

std::vector<float> mel_power(const float* x, int64_t L, const MelParams& p, const float* filterbank) {
  return MelCpu(p, filterbank).power(x, L);
}

std::vector<float> mel_spectrogram_db(const float* x, int64_t L, const MelParams& p, double* ref_used,
                                      const float* filterbank) {
  return MelCpu(p, filterbank).db(x, L, ref_used);
}

ResizeTaps antialias_resize_taps(int in_size, int out_size) {
  if (in_size < 1 || out_size < 1)
    throw std::invalid_argument("resize " + std::to_string(in_size) + " -> " + std::to_string(out_size) +
                                ": sizes must be >= 1");
  // UpSampleKernel.cpp, _compute_indices_min_size_weights_aa with the bilinear filter (interp_size 2).
  const double scale = static_cast<double>(in_size) / out_size;
  const double support = scale >= 1.0 ? scale : 1.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  ResizeTaps r;
  r.first.resize(static_cast<size_t>(out_size));
  r.count.resize(static_cast<size_t>(out_size));
  std::vector<std::vector<double>> rows(static_cast<size_t>(out_size));
  for (int i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);  // truncation, as the cast there
    const int xsize = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    std::vector<double>& w = rows[static_cast<size_t>(i)];
    double total = 0.0;
    for (int j = 0; j < xsize; ++j) {
      const double d = std::abs((j + xmin - center + 0.5) * invscale);
      w.push_back(d < 1.0 ? 1.0 - d : 0.0);
      total += w.back();
    }
    if (total != 0.0)
      for (double& v : w) v /= total;
    r.first[static_cast<size_t>(i)] = xmin;
    r.count[static_cast<size_t>(i)] = xsize;
    r.taps = std::max(r.taps, xsize);
  }
  r.weights.assign(static_cast<size_t>(out_size) * r.taps, 0.0);
  for (int i = 0; i < out_size; ++i)
    std::copy(rows[static_cast<size_t>(i)].begin(), rows[static_cast<size_t>(i)].end(),
              r.weights.begin() + static_cast<int64_t>(i) * r.taps);
  return r;
}

void resize_image_antialiased(float* out, const float* in, int in_h, int in_w, int out_h, int out_w) {
  const ResizeTaps along_w = antialias_resize_taps(in_w, out_w);
  const ResizeTaps along_h = antialias_resize_taps(in_h, out_h);
  std::vector<double> rows_done(static_cast<size_t>(in_h) * out_w);  // in_h × out_w
  for (int y = 0; y < in_h; ++y)
    for (int x = 0; x < out_w; ++x) {
      double sum = 0.0;
      for (int j = 0; j < along_w.count[static_cast<size_t>(x)]; ++j)
        sum += along_w.weights[static_cast<size_t>(x) * along_w.taps + j] *
               in[static_cast<int64_t>(y) * in_w + along_w.first[static_cast<size_t>(x)] + j];
      rows_done[static_cast<size_t>(y) * out_w + x] = sum;
    }
  for (int y = 0; y < out_h; ++y)
    for (int x = 0; x < out_w; ++x) {
      double sum = 0.0;
      for (int j = 0; j < along_h.count[static_cast<size_t>(y)]; ++j)
        sum += along_h.weights[static_cast<size_t>(y) * along_h.taps + j] *
               rows_done[static_cast<size_t>(along_h.first[static_cast<size_t>(y)] + j) * out_w + x];
      out[static_cast<int64_t>(y) * out_w + x] = static_cast<float>(sum);
    }
}

std::vector<float> MelCpu::image(const float* x, int64_t L, double* ref_used) const {
  const MelParams& p = p_;
  const int64_t frames = p.stft_frames(L);
  if (!p.resize_h && frames != p.frames)
    throw std::invalid_argument("a slice of " + std::to_string(L) + " samples gives " + std::to_string(frames) +
                                " STFT frames, the layout expects --frames " + std::to_string(p.frames));
  std::vector<float> image = power(x, L);
  if (!p.resize_h) {
    power_to_db_in_place(image.data(), static_cast<int64_t>(image.size()), p, ref_used, /*to_unit=*/true);
    return image;
  }
  power_to_db_in_place(image.data(), static_cast<int64_t>(image.size()), p, ref_used);
  std::vector<float> resized(static_cast<size_t>(p.resize_h) * p.resize_w);
  resize_image_antialiased(resized.data(), image.data(), p.n_mels, static_cast<int>(frames), p.resize_h, p.resize_w);
  for (float& v : resized) v = static_cast<float>(db_to_unit(v, p.top_db));
  return resized;
}

std::vector<float> mel_image(const float* x, int64_t L, const MelParams& p, double* ref_used,
                             const float* filterbank) {
  return MelCpu(p, filterbank).image(x, L, ref_used);
}

}  // namespace ds
