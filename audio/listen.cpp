// listen (see listen.h): mel images → WAV + PNG, for a dataset slice, generated slices and a latent walk.
#include "audio/listen.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <memory>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <sndfile.h>

#include "audio/griffin_lim.h"
#include "audio/mel_cpu.h"
#include "audio/mel_inverse.h"
#include "audio/mel_inversion_batch.h"
#include "engine/core/cuda_context.h"
#include "audio/prepare_audio.h"
#include "engine/formats/atomic_file.h"
#include "engine/train/checkpoint.h"
#include "engine/data/image_dataset.h"
#include "engine/formats/npy.h"
#include "engine/formats/png.h"
#include "engine/core/rng.h"

namespace fs = std::filesystem;

namespace ds {

// ---- colour and files ---------------------------------------------------------------------------

namespace {
// matplotlib's _magma_data (lib/matplotlib/_cm_listed.py) entries 0, 8, 16, ..., 248 and 255.
constexpr int kMagmaAnchors = 33;
constexpr float kMagma[kMagmaAnchors][3] = {
    {0.001462f, 0.000466f, 0.013866f}, {0.013708f, 0.011771f, 0.068667f}, {0.039608f, 0.031090f, 0.133515f},
    {0.074257f, 0.052017f, 0.202660f}, {0.113094f, 0.065492f, 0.276784f}, {0.159018f, 0.068354f, 0.352688f},
    {0.211718f, 0.061992f, 0.418647f}, {0.265447f, 0.060237f, 0.461840f}, {0.316654f, 0.071690f, 0.485380f},
    {0.366012f, 0.090314f, 0.497960f}, {0.414709f, 0.110431f, 0.504662f}, {0.463508f, 0.129893f, 0.507652f},
    {0.512831f, 0.148179f, 0.507648f}, {0.562866f, 0.165368f, 0.504692f}, {0.613617f, 0.181811f, 0.498536f},
    {0.664915f, 0.198075f, 0.488836f}, {0.716387f, 0.214982f, 0.475290f}, {0.767398f, 0.233705f, 0.457755f},
    {0.816914f, 0.255895f, 0.436461f}, {0.863320f, 0.283729f, 0.412403f}, {0.904281f, 0.319610f, 0.388137f},
    {0.937221f, 0.364929f, 0.368567f}, {0.960949f, 0.418323f, 0.359630f}, {0.976690f, 0.476226f, 0.364466f},
    {0.986700f, 0.535582f, 0.382210f}, {0.992785f, 0.594891f, 0.410283f}, {0.996096f, 0.653659f, 0.446213f},
    {0.997325f, 0.711848f, 0.488154f}, {0.996898f, 0.769591f, 0.534892f}, {0.995131f, 0.827052f, 0.585701f},
    {0.992440f, 0.884330f, 0.640099f}, {0.989434f, 0.941470f, 0.697519f}, {0.987053f, 0.991438f, 0.749504f},
};
}  // namespace

void magma_rgb(uint8_t rgb[3], double v) {
  if (!(v >= 0.0)) v = 0.0;  // NaN too
  if (v > 1.0) v = 1.0;
  const double index = v * 255.0;  // position in the 256-entry table
  int a = std::min(static_cast<int>(index / 8.0), kMagmaAnchors - 2);
  const double lo = a * 8.0, hi = (a + 1 == kMagmaAnchors - 1) ? 255.0 : (a + 1) * 8.0;
  const double f = std::clamp((index - lo) / (hi - lo), 0.0, 1.0);
  for (int c = 0; c < 3; ++c) {
    const double x = kMagma[a][c] + f * (kMagma[a + 1][c] - kMagma[a][c]);
    rgb[c] = static_cast<uint8_t>(std::lround(std::clamp(x, 0.0, 1.0) * 255.0));
  }
}

std::vector<uint8_t> mel_image_rgb(const float* image, int h, int w) {
  std::vector<uint8_t> rgb(static_cast<size_t>(h) * w * 3);
  for (int y = 0; y < h; ++y) {
    const float* row = image + static_cast<int64_t>(h - 1 - y) * w;  // lowest band at the bottom
    for (int x = 0; x < w; ++x) magma_rgb(&rgb[(static_cast<size_t>(y) * w + x) * 3], (row[x] + 1.0) * 0.5);
  }
  return rgb;
}

void write_mel_png(const std::string& path, const float* image, int h, int w) {
  const std::vector<uint8_t> rgb = mel_image_rgb(image, h, w);
  write_bytes_atomic(path, encode_png(rgb.data(), h, w, 3));
}

WavFormat parse_wav_format(const std::string& name) {
  if (name == "pcm16") return WavFormat::PCM16;
  if (name == "pcm24") return WavFormat::PCM24;
  if (name == "float") return WavFormat::Float;
  throw std::invalid_argument("--wav-format " + name + ": expected pcm16, pcm24 or float");
}

void write_wav_float(const std::string& path, const float* samples, int64_t n, int sample_rate) {
  write_wav(path, samples, n, sample_rate, WavFormat::Float);
}

namespace {
// A float WAV written by hand: libsndfile's has a 16-byte fmt chunk, which sox reports as "wave header
// missing extended part of fmt chunk" (every non-PCM fmt needs cbSize, even when 0). This one has the
// 18-byte WAVEFORMATEX with cbSize 0, the fact chunk non-PCM formats require, and little-endian data.
void write_wav_ieee_float(const std::string& path, const float* samples, int64_t n, int sample_rate) {
  if (n < 0 || n > (int64_t(1) << 30) - 16)
    throw std::runtime_error("'" + path + "': " + std::to_string(n) + " samples do not fit in a WAV file");
  const uint32_t data_bytes = static_cast<uint32_t>(n) * 4;
  std::vector<uint8_t> b;
  b.reserve(58 + data_bytes);  // RIFF header 12 + fmt 26 + fact 12 + data header 8, then the samples
  auto u16 = [&](uint32_t v) { b.push_back(v & 0xff); b.push_back((v >> 8) & 0xff); };
  auto u32 = [&](uint32_t v) { u16(v & 0xffff); u16(v >> 16); };
  auto tag = [&](const char* id) { for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(id[i])); };
  tag("RIFF");
  u32(4 + (8 + 18) + (8 + 4) + (8 + data_bytes));
  tag("WAVE");
  tag("fmt ");
  u32(18);
  u16(3);  // WAVE_FORMAT_IEEE_FLOAT
  u16(1);  // channels
  u32(static_cast<uint32_t>(sample_rate));
  u32(static_cast<uint32_t>(sample_rate) * 4);  // bytes per second
  u16(4);   // block align: one 32-bit sample per frame
  u16(32);  // bits per sample
  u16(0);   // cbSize: no extension
  tag("fact");
  u32(4);
  u32(static_cast<uint32_t>(n));  // samples per channel
  tag("data");
  u32(data_bytes);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &samples[i], 4);
    u32(bits);
  }
  write_bytes_atomic(path, b);
}
}  // namespace

void write_wav(const std::string& path, const float* samples, int64_t n, int sample_rate, WavFormat format) {
  if (format == WavFormat::Float) return write_wav_ieee_float(path, samples, n, sample_rate);
  write_file_atomic(path, [&](FILE* f) {
    SF_INFO info{};
    info.samplerate = sample_rate;
    info.channels = 1;
    // WAVE_FORMAT_EXTENSIBLE: its channel mask (libsndfile writes front centre for mono) is what keeps
    // ffmpeg from "Guessed Channel Layout" warnings, which it prints for every plain WAV; sox reads it
    // silently too. (Python's own `wave` module reads it from 3.12 on; soundfile, scipy, players do.)
    info.format = SF_FORMAT_WAVEX | (format == WavFormat::PCM16 ? SF_FORMAT_PCM_16 : SF_FORMAT_PCM_24);
    // libsndfile writes through the descriptor (seeking back to fill in the header sizes); the FILE*'s
    // own buffer stays empty, and write_file_atomic then fsyncs and renames.
    SNDFILE* snd = sf_open_fd(fileno(f), SFM_WRITE, &info, SF_FALSE);
    if (!snd) throw std::runtime_error("libsndfile cannot write '" + path + "': " + sf_strerror(nullptr));
    // Float → integer: libsndfile scales ±1 to full scale but lets larger values wrap unless told to clip.
    sf_command(snd, SFC_SET_CLIPPING, nullptr, SF_TRUE);
    const sf_count_t written = sf_write_float(snd, samples, static_cast<sf_count_t>(n));
    const std::string err = sf_error(snd) != SF_ERR_NO_ERROR ? sf_strerror(snd) : "";
    if (sf_close(snd) != 0 || written != n || !err.empty())
      throw std::runtime_error("libsndfile failed writing '" + path + "'" + (err.empty() ? "" : ": " + err));
  });
}

std::vector<float> slerp(const float* a, const float* b, int64_t n, double t) {
  double na = 0, nb = 0, dot = 0;
  for (int64_t i = 0; i < n; ++i) {
    na += double(a[i]) * a[i];
    nb += double(b[i]) * b[i];
    dot += double(a[i]) * b[i];
  }
  std::vector<float> out(static_cast<size_t>(n));
  const double cosine = (na > 0 && nb > 0) ? std::clamp(dot / std::sqrt(na * nb), -1.0, 1.0) : 1.0;
  const double omega = std::acos(cosine), s = std::sin(omega);
  double wa = 1.0 - t, wb = t;
  if (s > 1e-6) {
    wa = std::sin((1.0 - t) * omega) / s;
    wb = std::sin(t * omega) / s;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(wa * a[i] + wb * b[i]);
  return out;
}

// ---- inversion -------------------------------------------------------------------------------

namespace {

// One MelInversionGpu (NNLS plan, buffers, cuFFT plans) reused across the chunks and calls of a process:
// every slice of a dataset or a generator has the same layout, so planning once is enough. Rebuilt when
// the layout or the requested batch changes.
MelInversionGpu& cached_mel_inversion_gpu(const MelParams& p, int64_t requested_batch, int64_t n) {
  static std::unique_ptr<MelInversionGpu> cached;
  static int64_t cached_request = -1;
  static bool cut_to_count = false;  // an automatic batch that was limited by the slices of its first call
  const MelParams* q = cached ? &cached->params() : nullptr;
  const bool same = q && cached_request == requested_batch && q->sr == p.sr && q->n_fft == p.n_fft &&
                    q->hop == p.hop && q->win == p.win && q->center == p.center && q->pad_mode == p.pad_mode &&
                    q->n_mels == p.n_mels && q->fmin == p.fmin && q->fmax == p.fmax &&
                    q->slice_samples() == p.slice_samples() && mel_filterbank(*q) == mel_filterbank(p);
  if (same && !(cut_to_count && n > cached->batch())) return *cached;
  cached.reset();  // its device memory back before the free memory is measured
  int64_t batch = requested_batch;
  size_t free_bytes = 0, total_bytes = 0;
  cut_to_count = false;
  if (batch < 1) {
    CudaContext::get();  // the context (and its stream) exists before memory is asked
    DS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    batch = auto_inversion_batch(p, free_bytes, n);
    cut_to_count = batch == n && n < kMaxAutoInversionBatch;
  }
  cached = std::make_unique<MelInversionGpu>(p, batch);
  cached_request = requested_batch;
  const double mib = double(inversion_bytes_per_slice(p)) / (1 << 20);
  if (requested_batch < 1)
    std::fprintf(stderr, "listen: inverting up to %lld slices at once on the GPU (about %.0f MiB each; %.0f MiB of "
                         "%.0f MiB free; --batch N to choose)\n",
                 static_cast<long long>(batch), mib, double(free_bytes) / (1 << 20), double(total_bytes) / (1 << 20));
  else
    std::fprintf(stderr, "listen: inverting up to %lld slices at once on the GPU (--batch; about %.0f MiB each)\n",
                 static_cast<long long>(batch), mib);
  return *cached;
}

// [−1, 1] image → mel power (n_mels × frames) at level ref_db, undoing the seed layout's resize.
std::vector<float> mel_image_to_power(const float* image, const MelParams& p, double ref_db) {
  const int64_t L = p.slice_samples();
  const int H = p.image_height(), W = p.image_width();
  const int frames = static_cast<int>(p.stft_frames(L));
  std::vector<float> db(static_cast<size_t>(H) * W);
  for (size_t i = 0; i < db.size(); ++i) {
    const float x = std::isnan(image[i]) ? -1.0f : std::clamp(image[i], -1.0f, 1.0f);
    db[i] = static_cast<float>(unit_to_db(x, p.top_db));
  }
  // The seed layout was resized in the dB domain; its inverse is a resize back (an upsampling on the
  // time axis here: 128 → 431 frames), also in dB.
  if (H != p.n_mels || W != frames) {
    std::vector<float> full(static_cast<size_t>(p.n_mels) * frames);
    resize_image_antialiased(full.data(), db.data(), H, W, p.n_mels, frames);
    db.swap(full);
  }
  std::vector<float> power(db.size());
  for (size_t i = 0; i < db.size(); ++i) power[i] = static_cast<float>(std::pow(10.0, (db[i] + ref_db) / 10.0));
  return power;
}

// The header's spectral convergence of L samples of audio against the target mel power.
double mel_spectral_convergence(const float* audio, const std::vector<float>& power, const MelParams& p) {
  const std::vector<float> achieved = mel_power(audio, p.slice_samples(), p);
  std::vector<float> target_mag(power.size()), achieved_mag(power.size());
  for (size_t i = 0; i < power.size(); ++i) {
    target_mag[i] = std::sqrt(power[i]);
    achieved_mag[i] = std::sqrt(std::max(achieved[i], 0.0f));
  }
  return ds::spectral_convergence(target_mag.data(), achieved_mag.data(), static_cast<int64_t>(power.size()));
}

}  // namespace

std::vector<float> invert_mel_image(const float* image, const MelParams& p, double ref_db,
                                    const ListenOptions& options, double* spectral_convergence) {
  if (options.device == Device::CUDA) {  // the batched GPU path with a batch of one
    const uint64_t seed = options.seed;
    return invert_mel_images(image, 1, p, &ref_db, &seed, options, spectral_convergence);
  }
  const int64_t L = p.slice_samples();
  const int frames = static_cast<int>(p.stft_frames(L));
  const std::vector<float> power = mel_image_to_power(image, p, ref_db);
  const std::vector<float> filterbank = mel_filterbank(p);
  const std::vector<float> magnitude =
      mel_to_linear(power.data(), filterbank.data(), p.n_mels, p.n_freqs(), frames, options.nnls_iters);
  std::vector<float> audio = griffin_lim(magnitude.data(), frames, p, options.gl_iters, options.momentum, options.seed, L);
  if (spectral_convergence) *spectral_convergence = mel_spectral_convergence(audio.data(), power, p);
  return audio;
}

std::vector<float> invert_mel_images(const float* images, int64_t n, const MelParams& p, const double* ref_db,
                                     const uint64_t* seeds, const ListenOptions& options, double* sc) {
  const int64_t L = p.slice_samples(), image_size = static_cast<int64_t>(p.image_height()) * p.image_width();
  if (options.device != Device::CUDA) {
    std::vector<float> out(static_cast<size_t>(n * L));
    for (int64_t i = 0; i < n; ++i) {
      ListenOptions o = options;
      o.seed = seeds[i];
      const std::vector<float> audio = invert_mel_image(images + i * image_size, p, ref_db[i], o, sc ? sc + i : nullptr);
      std::copy(audio.begin(), audio.end(), out.begin() + i * L);
    }
    return out;
  }
  const int64_t per_slice_mel = static_cast<int64_t>(p.n_mels) * p.stft_frames(L);
  std::vector<float> power(static_cast<size_t>(n * per_slice_mel));
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<float> slice = mel_image_to_power(images + i * image_size, p, ref_db[i]);
    std::copy(slice.begin(), slice.end(), power.begin() + i * per_slice_mel);
  }
  MelInversionGpu& gpu = cached_mel_inversion_gpu(p, options.inversion_batch, n);
  std::vector<float> audio = gpu.invert(power.data(), n, seeds, options.nnls_iters, options.gl_iters, options.momentum);
  if (sc)
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<float> target(power.begin() + i * per_slice_mel, power.begin() + (i + 1) * per_slice_mel);
      sc[i] = mel_spectral_convergence(audio.data() + i * L, target, p);
    }
  return audio;
}

namespace {

double peak_of(const std::vector<float>& x) {
  double peak = 0;
  for (float v : x) peak = std::max(peak, static_cast<double>(std::fabs(v)));
  return peak;
}

void normalize_peak(std::vector<float>& x) {
  const double peak = peak_of(x);
  if (!(peak > 0)) return;
  const double gain = std::pow(10.0, -1.0 / 20.0) / peak;  // −1 dBFS
  for (float& v : x) v = static_cast<float>(v * gain);
}

std::string png_path_for(const std::string& wav) { return fs::path(wav).replace_extension(".png").string(); }

void make_parent(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
}

ListenResult write_result(const std::string& wav, std::vector<float>& audio, const float* image, int h, int w,
                          const MelParams& p, double sc, double ref_db, const ListenOptions& options) {
  if (options.normalize) normalize_peak(audio);
  make_parent(wav);
  write_wav(wav, audio.data(), static_cast<int64_t>(audio.size()), p.sr, options.wav_format);
  ListenResult r;
  r.wav_path = wav;
  if (options.write_png && image) {
    r.png_path = png_path_for(wav);
    write_mel_png(r.png_path, image, h, w);
  }
  r.sample_rate = p.sr;
  r.samples = static_cast<int64_t>(audio.size());
  r.spectral_convergence = sc;
  r.peak = peak_of(audio);
  r.ref_db = ref_db;
  return r;
}

// A mono WAV written block by block: samples go to an anonymous float WAV scratch file as they are
// made, and finish(gain) streams them, scaled by gain (peak normalisation, whose peak is only known at
// the end), into the real file in the requested format (PCM clipped at full scale, as write_wav), temp
// file + fsync + rename. A walk of an hour never exists whole in memory, and PCM output is quantised
// once, after the gain.
class WavBlockWriter {
 public:
  WavBlockWriter(const std::string& path, int sample_rate, WavFormat format)
      : path_(path), sample_rate_(sample_rate), format_(format), scratch_(std::tmpfile()) {
    if (!scratch_) throw std::runtime_error("cannot create a scratch file for '" + path + "': " + std::strerror(errno));
    SF_INFO info{};
    info.samplerate = sample_rate;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    snd_ = sf_open_fd(fileno(scratch_), SFM_RDWR, &info, SF_FALSE);
    if (!snd_) throw std::runtime_error("libsndfile cannot write a scratch file for '" + path + "': " + sf_strerror(nullptr));
  }
  ~WavBlockWriter() {
    if (snd_) sf_close(snd_);
    if (scratch_) std::fclose(scratch_);
  }
  void write(const float* x, int64_t n) {
    if (n <= 0) return;
    if (sf_write_float(snd_, x, static_cast<sf_count_t>(n)) != n) fail(snd_);
    frames_ += n;
  }
  void finish(double gain) {
    write_file_atomic(path_, [&](FILE* f) {
      SF_INFO info{};
      info.samplerate = sample_rate_;
      info.channels = 1;
      // The formats of write_wav: extensible PCM (ffmpeg guesses no layout), plain IEEE float.
      info.format = format_ == WavFormat::Float ? (SF_FORMAT_WAV | SF_FORMAT_FLOAT)
                                                : (SF_FORMAT_WAVEX | (format_ == WavFormat::PCM16 ? SF_FORMAT_PCM_16 : SF_FORMAT_PCM_24));
      SNDFILE* out = sf_open_fd(fileno(f), SFM_WRITE, &info, SF_FALSE);
      if (!out) throw std::runtime_error("libsndfile cannot write '" + path_ + "': " + sf_strerror(nullptr));
      sf_command(out, SFC_SET_CLIPPING, nullptr, SF_TRUE);
      std::vector<float> block(65536);
      bool ok = sf_seek(snd_, 0, SEEK_SET | SFM_READ) == 0;
      for (int64_t at = 0; ok && at < frames_; at += static_cast<int64_t>(block.size())) {
        const sf_count_t n = static_cast<sf_count_t>(std::min<int64_t>(static_cast<int64_t>(block.size()), frames_ - at));
        ok = sf_read_float(snd_, block.data(), n) == n;
        if (gain != 1.0)
          for (sf_count_t k = 0; k < n; ++k) block[k] = static_cast<float>(block[k] * gain);
        ok = ok && sf_write_float(out, block.data(), n) == n;
      }
      const std::string err = sf_error(out) != SF_ERR_NO_ERROR ? sf_strerror(out) : "";
      if (sf_close(out) != 0 || !ok || !err.empty())
        throw std::runtime_error("libsndfile failed writing '" + path_ + "'" + (err.empty() ? "" : ": " + err));
    });
  }

 private:
  [[noreturn]] void fail(SNDFILE* snd) {
    throw std::runtime_error("libsndfile failed writing '" + path_ + "': " + sf_strerror(snd));
  }
  std::string path_;
  int sample_rate_;
  WavFormat format_;
  FILE* scratch_ = nullptr;
  SNDFILE* snd_ = nullptr;
  int64_t frames_ = 0;
};

struct LoadedMelGenerator {
  LoadedGenerator g;
  MelDatasetInfo info;
};

LoadedMelGenerator load_mel_generator(const std::string& checkpoint, const ListenOptions& options) {
  LoadedMelGenerator out;
  out.g = load_generator(checkpoint, std::max<int64_t>(1, options.generator_batch), options.device);
  if (out.g.dataset_sidecar.empty() || !is_mel_sidecar(out.g.dataset_sidecar))
    throw std::runtime_error(checkpoint + ": this checkpoint was not trained on a mel dataset (it carries no mel "
                                          "dataset sidecar); train on a prepare-audio dataset to listen to it");
  out.info = parse_mel_sidecar(out.g.dataset_sidecar, checkpoint);
  const ModelConfig& m = out.g.model;
  if (m.channels != 1 || m.height != out.info.height || m.width != out.info.width)
    throw std::runtime_error(checkpoint + ": the generator makes " + std::to_string(m.channels) + "×" +
                             std::to_string(m.height) + "×" + std::to_string(m.width) +
                             " images but its mel sidecar describes 1×" + std::to_string(out.info.height) + "×" +
                             std::to_string(out.info.width));
  return out;
}

// Slices handed to invert_mel_images at once: one on the CPU (slice after slice, as ever); on CUDA the
// --batch or the automatic chunk's ceiling (invert_mel_images cuts it to what the device holds).
int64_t inversion_chunk(const ListenOptions& options) {
  if (options.device != Device::CUDA) return 1;
  return options.inversion_batch > 0 ? options.inversion_batch : kMaxAutoInversionBatch;
}

// images (n × H×W) = G(z) for z (n × nz), in eval mode, in batches of the generator's batch size
// (a short last batch padded with zeros: eval-mode BN makes samples independent of each other).
std::vector<float> generate_images(Generator& G, const std::vector<float>& z, int64_t n, int64_t nz,
                                   int64_t image_size) {
  const int64_t B = G.batch();
  std::vector<float> images(static_cast<size_t>(n * image_size));
  std::vector<float> zb(static_cast<size_t>(B * nz));
  for (int64_t s = 0; s < n; s += B) {
    const int64_t count = std::min(B, n - s);
    std::fill(zb.begin(), zb.end(), 0.0f);
    std::copy(z.begin() + s * nz, z.begin() + (s + count) * nz, zb.begin());
    const Tensor zt = Tensor::from_host(zb, {B, nz, 1, 1}, G.device());
    G.forward(zt, false);
    const std::vector<float> out = G.output().to_host();
    std::copy(out.begin(), out.begin() + count * image_size, images.begin() + s * image_size);
  }
  return images;
}

}  // namespace

ListenResult listen_slice(const std::string& npy, int64_t index, const std::string& out_wav,
                          const ListenOptions& options) {
  const std::string sidecar = sidecar_path_for(npy);
  std::error_code ec;
  if (!fs::exists(sidecar, ec))
    throw std::runtime_error(npy + ": no sidecar '" + sidecar + "' beside it; listen --data needs the mel dataset's "
                                   "sidecar written by prepare-audio");
  const MelDatasetInfo info = read_mel_dataset_info(sidecar);
  const NpyArray array = read_npy(npy);
  if (array.dtype != DType::F16 || array.shape.size() != 4 || array.shape[1] != 1 ||
      array.shape[2] != info.height || array.shape[3] != info.width || array.shape[0] != info.count)
    throw std::runtime_error(npy + ": expected float16 " + std::to_string(info.count) + "×1×" +
                             std::to_string(info.height) + "×" + std::to_string(info.width) +
                             " as its sidecar says; the two files do not belong together");
  if (index < 0 || index >= info.count)
    throw std::runtime_error("--index " + std::to_string(index) + ": " + npy + " holds " +
                             std::to_string(info.count) + " slices (0.." + std::to_string(info.count - 1) + ")");
  const int64_t size = info.height * info.width;
  std::vector<float> image(static_cast<size_t>(size));
  const uint16_t* halves = array.as<uint16_t>() + index * size;
  for (int64_t i = 0; i < size; ++i) image[i] = half_to_float(halves[i]);
  const double ref_db = info.slices[index].ref_db;
  double sc = 0;
  std::vector<float> audio = invert_mel_image(image.data(), info.mel, ref_db, options, &sc);
  return write_result(out_wav, audio, image.data(), static_cast<int>(info.height), static_cast<int>(info.width),
                      info.mel, sc, ref_db, options);
}

std::vector<std::string> generated_wav_paths(const std::string& out, int64_t n) {
  const fs::path base(out);
  std::string ext = base.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  const bool wav = ext == ".wav";
  if (wav && n == 1) return {out};
  std::error_code ec;
  if (!wav && fs::exists(base, ec) && !fs::is_directory(base, ec))
    throw std::runtime_error("--out " + out + ": a file, not a folder; give a folder for the " + std::to_string(n) +
                             " slices, or a name ending in .wav");
  const int digits = std::max(3, static_cast<int>(std::to_string(n - 1).size()));
  std::vector<std::string> paths;
  for (int64_t s = 0; s < n; ++s) {
    std::string number = std::to_string(s);
    number = std::string(static_cast<size_t>(std::max(0, digits - static_cast<int>(number.size()))), '0') + number;
    paths.push_back(wav ? (base.parent_path() / (base.stem().string() + "_" + number + base.extension().string())).string()
                        : (base / (number + ".wav")).string());
  }
  return paths;
}

std::vector<float> generate_mel_images(const std::string& checkpoint, int64_t n, const ListenOptions& options,
                                       MelDatasetInfo* info) {
  if (n < 1) throw std::invalid_argument("--n " + std::to_string(n) + ": expected at least 1");
  LoadedMelGenerator lg = load_mel_generator(checkpoint, options);
  const int64_t nz = lg.g.model.nz, image_size = lg.info.height * lg.info.width;
  std::vector<float> z(static_cast<size_t>(n * nz));
  Philox(options.seed, 0).fill_normal(z.data(), 0.0f, 1.0f, n * nz);
  std::vector<float> images = generate_images(*lg.g.generator, z, n, nz, image_size);
  if (info) *info = std::move(lg.info);
  return images;
}

std::vector<ListenResult> listen_generated(const std::string& checkpoint, int64_t n, const std::string& out_dir,
                                           const ListenOptions& options) {
  if (n < 1) throw std::invalid_argument("--n " + std::to_string(n) + ": expected at least 1");
  const std::vector<std::string> paths = generated_wav_paths(out_dir, n);
  MelDatasetInfo info;
  const std::vector<float> images = generate_mel_images(checkpoint, n, options, &info);
  const MelParams& p = info.mel;
  const int64_t image_size = info.height * info.width;
  const double ref_db = info.median_ref_db();
  const int64_t L = p.slice_samples();
  std::vector<ListenResult> results;
  // Every slice gets options.seed's phases (as one invert_mel_image call each would); on CUDA a chunk of
  // slices is inverted at once, on the CPU one after another.
  const int64_t chunk = inversion_chunk(options);
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t count = std::min(chunk, n - first);
    const std::vector<double> ref_dbs(static_cast<size_t>(count), ref_db);
    const std::vector<uint64_t> seeds(static_cast<size_t>(count), options.seed);
    std::vector<double> sc(static_cast<size_t>(count), 0.0);
    const std::vector<float> audio = invert_mel_images(images.data() + first * image_size, count, p, ref_dbs.data(),
                                                       seeds.data(), options, sc.data());
    for (int64_t b = 0; b < count; ++b) {
      const int64_t s = first + b;
      std::vector<float> slice(audio.begin() + b * L, audio.begin() + (b + 1) * L);
      results.push_back(write_result(paths[s], slice, images.data() + s * image_size, static_cast<int>(info.height),
                                     static_cast<int>(info.width), p, sc[b], ref_db, options));
    }
  }
  return results;
}

ListenResult listen_walk(const std::string& checkpoint, double seconds, const std::string& out_wav,
                         const ListenOptions& options) {
  if (!(std::isfinite(seconds) && seconds > 0.0 && seconds <= 24 * 3600.0))
    throw std::invalid_argument("--walk " + std::to_string(seconds) + ": expected a positive number of seconds");
  LoadedMelGenerator lg = load_mel_generator(checkpoint, options);
  const MelParams& p = lg.info.mel;
  const int64_t L = p.slice_samples();
  const int64_t total = std::max<int64_t>(1, std::llround(seconds * p.sr));
  const int64_t fade = std::clamp<int64_t>(std::llround(std::max(0.0, options.crossfade_seconds) * p.sr), 0, L / 2);
  const int64_t step = L - fade;
  const int64_t n_slices = total <= L ? 1 : 1 + (total - L + step - 1) / step;
  const int64_t per_point = std::max(1, options.walk_slices_per_point);
  const int64_t n_points = (n_slices + per_point - 1) / per_point + 1;
  const int64_t nz = lg.g.model.nz, image_size = lg.info.height * lg.info.width;

  std::vector<float> points(static_cast<size_t>(n_points * nz));
  Philox(options.seed, 0).fill_normal(points.data(), 0.0f, 1.0f, n_points * nz);

  // Raised-cosine (Hann) crossfade: over the `fade` shared samples the outgoing slice's weight
  // 0.5 + 0.5·cos(π(j + ½)/fade) and the incoming one's 0.5 − 0.5·cos(π(j + ½)/fade) sum to 1.
  std::vector<double> fade_in(static_cast<size_t>(fade));
  for (int64_t j = 0; j < fade; ++j) fade_in[j] = 0.5 - 0.5 * std::cos(M_PI * (j + 0.5) / fade);
  const double ref_db = lg.info.median_ref_db();

  // The WAV is written as it is made: after slice i, samples before (i+1)·step are final (the next
  // slice only adds to its first `fade`), so only one slice of mix is held, whatever the length.
  make_parent(out_wav);
  WavBlockWriter wav(out_wav, p.sr, options.wav_format);
  const int H = static_cast<int>(lg.info.height), W = static_cast<int>(lg.info.width);
  std::vector<float> strip(options.write_png ? static_cast<size_t>(H) * W * n_slices : 0);
  std::vector<double> mix(static_cast<size_t>(L), 0.0);  // samples [i·step, i·step + L) of the walk
  std::vector<float> out_block(static_cast<size_t>(L));
  int64_t written = 0;
  double sc_sum = 0, peak = 0;
  // Slices generated (in generator batches) and inverted together: one generator batch on the CPU, as
  // many slices as a GPU inversion chunk on CUDA.
  const int64_t B = std::max<int64_t>(std::max<int64_t>(1, lg.g.generator->batch()),
                                      options.device == Device::CUDA ? inversion_chunk(options) : 1);
  for (int64_t first = 0; first < n_slices; first += B) {
    const int64_t count = std::min(B, n_slices - first);
    std::vector<float> z(static_cast<size_t>(count * nz));
    for (int64_t b = 0; b < count; ++b) {
      const int64_t i = first + b, k = i / per_point;
      const double t = static_cast<double>(i % per_point) / per_point;
      const std::vector<float> zi = slerp(points.data() + k * nz, points.data() + (k + 1) * nz, nz, t);
      std::copy(zi.begin(), zi.end(), z.begin() + b * nz);
    }
    const std::vector<float> images = generate_images(*lg.g.generator, z, count, nz, image_size);
    const std::vector<double> ref_dbs(static_cast<size_t>(count), ref_db);
    std::vector<uint64_t> seeds(static_cast<size_t>(count));
    for (int64_t b = 0; b < count; ++b)
      seeds[b] = options.seed + static_cast<uint64_t>(first + b);  // Griffin-Lim phases differ per slice
    std::vector<double> scs(static_cast<size_t>(count), 0.0);
    const std::vector<float> inverted =
        invert_mel_images(images.data(), count, p, ref_dbs.data(), seeds.data(), options, scs.data());
    for (int64_t b = 0; b < count; ++b) {
      const int64_t i = first + b;
      const float* image = images.data() + b * image_size;
      if (options.write_png)
        for (int y = 0; y < H; ++y)
          std::copy(image + y * W, image + (y + 1) * W, strip.begin() + (static_cast<int64_t>(y) * n_slices + i) * W);
      const float* audio = inverted.data() + b * L;
      sc_sum += scs[b];
      for (int64_t j = 0; j < L; ++j) {
        double w = 1.0;
        if (i > 0 && j < fade) w = fade_in[j];
        if (i + 1 < n_slices && j >= L - fade) w = 1.0 - fade_in[j - (L - fade)];
        mix[j] += w * audio[j];
      }
      // Final now: the first `step` samples (all of them after the last slice), up to `total`.
      const int64_t ready = std::min<int64_t>(i + 1 < n_slices ? step : L, total - written);
      for (int64_t j = 0; j < ready; ++j) {
        out_block[j] = static_cast<float>(mix[j]);
        peak = std::max(peak, static_cast<double>(std::fabs(out_block[j])));
      }
      wav.write(out_block.data(), ready);
      written += ready;
      std::copy(mix.begin() + step, mix.end(), mix.begin());
      std::fill(mix.begin() + (L - step), mix.end(), 0.0);
    }
  }
  double gain = 1.0;
  if (options.normalize && peak > 0) gain = std::pow(10.0, -1.0 / 20.0) / peak;  // −1 dBFS, as normalize_peak
  wav.finish(gain);
  ListenResult r;
  r.wav_path = out_wav;
  if (options.write_png) {
    // The slices' images side by side (each slice's full width; the crossfades overlap in sound).
    r.png_path = png_path_for(out_wav);
    write_mel_png(r.png_path, strip.data(), H, static_cast<int>(W * n_slices));
  }
  r.sample_rate = p.sr;
  r.samples = written;
  r.spectral_convergence = sc_sum / n_slices;
  r.peak = peak * gain;
  r.ref_db = ref_db;
  return r;
}

}  // namespace ds
