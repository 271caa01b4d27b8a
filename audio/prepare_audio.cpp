// prepare-audio (see prepare_audio.h): parameter checks, the decode-while-computing pipeline, the
// float16 dataset and its sidecar, and the sidecar read back.
#include "audio/prepare_audio.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "audio/decode.h"
#include "audio/mel_cpu.h"
#include "audio/mel_gpu.h"
#include "audio/slices.h"
#include "engine/formats/atomic_file.h"
#include "engine/data/image_dataset.h"
#include "engine/formats/npy.h"

namespace fs = std::filesystem;

namespace ds {
namespace {

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

[[noreturn]] void refuse(const std::string& flag_and_value, const std::string& expected) {
  throw std::invalid_argument(flag_and_value + ": " + expected);
}

std::string slice_desc(const MelParams& p) {
  return "a " + num(p.slice_seconds) + " s slice at " + std::to_string(p.sr) + " Hz (" +
         std::to_string(p.slice_samples()) + " samples)";
}

}  // namespace

void validate_mel_params(const MelParams& p) {
  if (!(p.sr >= 1000 && p.sr <= kMaxSampleRate))
    refuse("--sr " + std::to_string(p.sr), "expected a sample rate in [1000, " +
                                              std::to_string(static_cast<int64_t>(kMaxSampleRate)) + "] Hz");
  if (!(std::isfinite(p.slice_seconds) && p.slice_seconds > 0.0))
    refuse("--slice-seconds " + num(p.slice_seconds), "expected a positive number of seconds");
  // One slice is decoded, framed and held as float images at once: an hour is already far past use.
  if (p.slice_seconds > 3600.0) refuse("--slice-seconds " + num(p.slice_seconds), "expected at most 3600 seconds");
  const int64_t L = p.slice_samples();
  if (L < 2) refuse("--slice-seconds " + num(p.slice_seconds), "gives " + std::to_string(L) + " samples at --sr " +
                                                                   std::to_string(p.sr) + "; expected at least 2");
  if (p.n_mels < 1) refuse("--n-mels " + std::to_string(p.n_mels), "expected at least 1 mel band");
  const bool resized = p.resize_h != 0 || p.resize_w != 0;
  if (resized) {
    if (!is_dcgan_size(p.resize_h) || !is_dcgan_size(p.resize_w))
      refuse("--preset (resize " + std::to_string(p.resize_h) + "×" + std::to_string(p.resize_w) + ")",
             "expected both sides 4·2^k");
  } else {
    // The image is n_mels × frames itself, so both must already be DCGAN sides.
    if (!is_dcgan_size(p.n_mels))
      refuse("--n-mels " + std::to_string(p.n_mels),
             "expected 4·2^k bands (e.g. 32, 64, 128): the image is n_mels × frames and the DCGAN generator "
             "doubles a 4-pixel map per layer");
    if (!is_dcgan_size(p.frames))
      refuse("--frames " + std::to_string(p.frames),
             "expected 4·2^k frames (e.g. 64, 128, 256, 512): the image is n_mels × frames and the DCGAN "
             "generator doubles a 4-pixel map per layer");
  }
  if (p.n_fft < 4 || p.n_fft % 2 != 0 || p.n_fft > (1 << 20))
    refuse("--n-fft " + std::to_string(p.n_fft), "expected an even FFT size in [4, 1048576]");
  if (p.win != p.n_fft)
    refuse("window length " + std::to_string(p.win), "expected win == --n-fft " + std::to_string(p.n_fft));
  if (p.hop < 1) {
    if (!resized && p.frames > 1)
      refuse("--frames " + std::to_string(p.frames),
             slice_desc(p) + " is too short for that many frames (hop floor(L/(frames-1)) would be 0)");
    refuse("--hop " + std::to_string(p.hop), "expected at least 1 sample");
  }
  if (p.n_fft < p.hop)
    refuse("--n-fft " + std::to_string(p.n_fft) + " with --hop " + std::to_string(p.hop),
           "expected n_fft >= hop (a smaller FFT than the hop leaves samples out of every frame); raise --n-fft "
           "or lower --hop / raise --frames");
  if (p.n_mels > p.n_freqs())
    refuse("--n-mels " + std::to_string(p.n_mels),
           "more mel bands than the " + std::to_string(p.n_freqs()) + " frequency bins of --n-fft " +
               std::to_string(p.n_fft) + " (bands would be empty); raise --n-fft or lower --n-mels");
  const double nyquist = p.sr / 2.0;
  if (!(std::isfinite(p.fmin) && p.fmin >= 0.0)) refuse("--fmin " + num(p.fmin), "expected a frequency >= 0 Hz");
  if (p.fmax >= 0.0 || !std::isfinite(p.fmax)) {
    if (!(std::isfinite(p.fmax) && p.fmax <= nyquist))
      refuse("--fmax " + num(p.fmax), "above the Nyquist frequency sr/2 = " + num(nyquist) + " Hz of --sr " +
                                          std::to_string(p.sr));
  }
  if (!(p.fmin < p.fmax_hz()))
    refuse("--fmin " + num(p.fmin), "expected below fmax = " + num(p.fmax_hz()) + " Hz");
  if (p.mel_scale != "slaney" && p.mel_scale != "htk")
    refuse("--htk (mel scale '" + p.mel_scale + "')", "expected 'slaney' (default) or 'htk'");
  if (p.mel_norm != "slaney" && p.mel_norm != "none")
    refuse("--mel-norm " + p.mel_norm, "expected 'slaney' or 'none'");
  if (p.pad_mode != "constant" && p.pad_mode != "reflect")
    refuse("--pad-mode " + p.pad_mode, "expected 'constant' (zeros) or 'reflect'");
  if (p.center && p.pad_mode == "reflect" && L <= p.n_fft / 2)
    refuse("--pad-mode reflect", slice_desc(p) + " is not longer than n_fft/2 = " + std::to_string(p.n_fft / 2) +
                                     ", which reflect padding needs");
  if (!p.center && L < p.n_fft)
    refuse("--slice-seconds " + num(p.slice_seconds), slice_desc(p) + " is shorter than --n-fft " +
                                                          std::to_string(p.n_fft) + " (center=false)");
  if (!(std::isfinite(p.top_db) && p.top_db > 0.0))
    refuse("--top-db " + num(p.top_db), "expected a positive dB range (it is also the [-1, 1] map's scale)");
  if (!(p.ref < 0.0) && !(std::isfinite(p.ref) && p.ref > 0.0))
    refuse("--ref " + num(p.ref), "expected a positive power (or leave it out: each slice's maximum)");
  if (!(std::isfinite(p.amin) && p.amin > 0.0)) refuse("amin " + num(p.amin), "expected a positive power floor");
  const int64_t stft = p.stft_frames(L);
  if (stft != p.frames) {
    if (resized)
      refuse("--hop " + std::to_string(p.hop), slice_desc(p) + " gives " + std::to_string(stft) +
                                                   " STFT frames but the layout says " + std::to_string(p.frames));
    const int64_t suggested = p.frames > 1 ? L / (p.frames - 1) : 0;
    refuse("--frames " + std::to_string(p.frames) + " with --hop " + std::to_string(p.hop),
           slice_desc(p) + " gives " + std::to_string(stft) + " frames at that hop; leave --hop out (it is then " +
               std::to_string(suggested) + " = floor(L/(frames-1))) or change --frames/--slice-seconds");
  }
}

MelParams build_mel_params(const std::string& preset, const MelOverrides& o) {
  if (preset != "default" && preset != "seed")
    throw std::invalid_argument("--preset " + preset + ": expected 'default' or 'seed'");
  const int sr = o.sr.value_or(22050);
  const double slice = o.slice_seconds.value_or(10.0);
  // Checked before the preset divides by anything derived from them.
  if (!(sr >= 1000 && sr <= kMaxSampleRate))
    refuse("--sr " + std::to_string(sr), "expected a sample rate in [1000, " +
                                            std::to_string(static_cast<int64_t>(kMaxSampleRate)) + "] Hz");
  if (!(std::isfinite(slice) && slice > 0.0 && slice <= 3600.0))
    refuse("--slice-seconds " + num(slice), "expected a positive number of seconds, at most 3600");
  MelParams p = mel_preset(preset, sr, slice);
  const int64_t L = p.slice_samples();
  if (o.n_fft) p.n_fft = p.win = *o.n_fft;
  if (o.n_mels) p.n_mels = *o.n_mels;
  if (o.fmin) p.fmin = *o.fmin;
  if (o.fmax) p.fmax = *o.fmax;
  if (o.top_db) p.top_db = *o.top_db;
  if (o.ref) p.ref = *o.ref;
  if (o.htk) p.mel_scale = *o.htk ? "htk" : "slaney";
  if (o.mel_norm) p.mel_norm = *o.mel_norm;
  if (o.pad_mode) p.pad_mode = *o.pad_mode;
  auto frames_at = [&](int hop) { return hop >= 1 ? static_cast<int>(std::min<int64_t>(p.stft_frames(L), 1 << 30)) : 0; };
  if (preset == "default") {
    if (o.frames) p.frames = *o.frames;
    if (o.hop) {
      p.hop = *o.hop;
      if (!o.frames) p.frames = frames_at(p.hop);
    } else {
      p.hop = p.frames > 1 ? static_cast<int>(L / (p.frames - 1)) : 0;
    }
  } else {
    if (o.frames)
      throw std::invalid_argument("--frames " + std::to_string(*o.frames) +
                                  ": the seed preset's width is its 128×128 resize; use --preset default to choose "
                                  "the frame count");
    if (o.hop) {
      p.hop = *o.hop;
      p.frames = frames_at(p.hop);
    }
  }
  validate_mel_params(p);
  return p;
}

// ---- the pipeline ------------------------------------------------------------------------------

namespace {

std::string short_reason(const std::string& what, const std::string& path) {
  const std::string prefix = "cannot decode audio file '" + path + "': ";
  if (what.compare(0, prefix.size(), prefix) == 0) return "cannot decode: " + what.substr(prefix.size());
  return what;
}

// One slice's samples (L of them, at --sr) and where it starts in its file.
struct PendingSlice {
  int64_t start = 0;
  std::vector<float> audio;
};

// One file on its way from a worker to the main thread: its slices as they are cut, then how it ended.
struct FileSlot {
  std::deque<PendingSlice> slices;
  bool finished = false;
  std::string error;            // could not be opened or failed: skipped
  DecodeEnd end;                // how decoding ended (partial: warn)
  int source_rate = 0;
  int64_t samples = 0;          // at --sr, what was decoded (kept)
  int64_t slices_cut = 0;       // before the silence filter
  int64_t dropped_silent = 0;
};

// Decoding threads, each streaming one file at a time (decode a block, resample it, cut the slices that
// are complete) into that file's slot. Memory does not grow with the input: at most `max_ahead` files
// past the one the main thread reads are open, and their queued slices stay within kQueueBudget
// (the file the main thread reads may always queue up to that much itself, so it never waits on
// files after it).
class DecodePool {
 public:
  DecodePool(const std::vector<std::string>& files, int sr, int64_t slice_len, int64_t slice_hop, bool pad_tail,
             double min_rms_db, int threads)
      : files_(files), sr_(sr), L_(slice_len), hop_(slice_hop), pad_tail_(pad_tail),
        min_rms_db_(min_rms_db) {
    max_ahead_ = 2 * static_cast<size_t>(threads) + 2;
    for (int t = 0; t < threads; ++t) workers_.emplace_back([this] { work(); });
  }
  ~DecodePool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_space_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  // The next slice of file i (files are read in order): true with `out` filled, or false once the
  // file is finished (then `status` holds how it ended). Waits at most `wait` for something new and
  // returns std::nullopt on a timeout, so the caller can keep its progress line moving.
  std::optional<bool> next(size_t i, PendingSlice& out, FileSlot& status, std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu_);
    if (current_ != i) {
      current_ = i;  // its worker may now queue past the budget: wake it
      cv_space_.notify_all();
    }
    FileSlot& slot = slots_[i];
    if (!cv_ready_.wait_for(lock, wait, [&] { return !slot.slices.empty() || slot.finished; })) return std::nullopt;
    if (!slot.slices.empty()) {
      out = std::move(slot.slices.front());
      slot.slices.pop_front();
      queued_bytes_ -= out.audio.size() * sizeof(float);
      lock.unlock();
      cv_space_.notify_all();
      return true;
    }
    status = std::move(slot);
    slots_.erase(i);
    consumed_ = i + 1;
    lock.unlock();
    cv_space_.notify_all();
    return false;
  }

  int64_t bytes_read() const { return bytes_read_.load(); }
  int64_t samples_decoded() const { return samples_decoded_.load(); }

 private:
  static constexpr size_t kQueueBudget = size_t(24) << 20;  // 24 MiB of cut slices waiting

  void work() {
    for (;;) {
      size_t i = 0;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_space_.wait(lock, [&] { return stop_ || next_ >= files_.size() || next_ < consumed_ + max_ahead_; });
        if (stop_ || next_ >= files_.size()) return;
        i = next_++;
      }
      FileSlot result;
      int64_t counted_bytes = 0;
      try {
        stream_file(i, result, counted_bytes);
      } catch (const std::exception& e) {
        result.error = short_reason(e.what(), files_[i]);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        FileSlot& slot = slots_[i];
        slot.finished = true;
        slot.error = result.error;
        slot.end = result.end;
        slot.source_rate = result.source_rate;
        slot.samples = result.samples;
        slot.slices_cut = result.slices_cut;
        slot.dropped_silent = result.dropped_silent;
      }
      cv_ready_.notify_all();
      // A finished (or refused) file counts as read whole, so the ETA's fraction reaches 1.
      std::error_code ec;
      const auto size = std::filesystem::file_size(files_[i], ec);
      if (!ec) bytes_read_ += static_cast<int64_t>(size) - counted_bytes;
    }
  }

  void stream_file(size_t i, FileSlot& result, int64_t& counted_bytes) {
    AudioReader reader(files_[i]);
    result.source_rate = reader.sample_rate();
    StreamResampler resampler(reader.sample_rate(), sr_);
    StreamSlicer slicer(L_, hop_, pad_tail_);
    const bool drop_silent = !std::isnan(min_rms_db_);
    const StreamSlicer::Emit emit = [&](const SliceRef& r, const float* samples) {
      ++result.slices_cut;
      if (drop_silent && !(rms_db(samples, r.length) >= min_rms_db_)) {
        ++result.dropped_silent;
        return;
      }
      PendingSlice s;
      s.start = r.start;
      s.audio.assign(samples, samples + L_);
      push(i, std::move(s));
    };
    // Blocks of ~1.5 s at 44.1 kHz: small next to a slice, large enough that the calls cost nothing.
    std::vector<float> block(65536), resampled;
    for (;;) {
      const int64_t got = reader.read(block.data(), static_cast<int64_t>(block.size()));
      resampled.clear();
      if (got > 0) resampler.push(resampled, block.data(), static_cast<size_t>(got));
      else resampler.finish(resampled);
      slicer.push(resampled.data(), resampled.size(), emit);
      samples_decoded_ += static_cast<int64_t>(resampled.size());
      const int64_t at = reader.bytes_read();
      bytes_read_ += at - counted_bytes;
      counted_bytes = at;
      if (got == 0) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
      }
    }
    slicer.finish(emit);
    result.samples = slicer.samples_seen();
    result.end = reader.end();
    if (result.end.frames == 0)
      result.error = "cannot decode: " + (result.end.partial ? "nothing decodes: " + result.end.reason
                                                             : std::string("it contains no audio frames"));
  }

  void push(size_t i, PendingSlice&& s) {
    const size_t bytes = s.audio.size() * sizeof(float);
    std::unique_lock<std::mutex> lock(mu_);
    cv_space_.wait(lock, [&] {
      return stop_ || queued_bytes_ + bytes <= kQueueBudget || (i == current_ && slots_[i].slices.empty());
    });
    if (stop_) return;
    queued_bytes_ += bytes;
    slots_[i].slices.push_back(std::move(s));
    lock.unlock();
    cv_ready_.notify_all();
  }

  const std::vector<std::string>& files_;
  std::map<size_t, FileSlot> slots_;  // the files in flight only (≤ max_ahead_ + 1): none per file found
  int sr_;
  int64_t L_, hop_;
  bool pad_tail_;
  double min_rms_db_;
  size_t max_ahead_ = 4;
  std::mutex mu_;
  std::condition_variable cv_ready_, cv_space_;
  size_t next_ = 0, consumed_ = 0, current_ = 0, queued_bytes_ = 0;
  bool stop_ = false;
  std::atomic<int64_t> bytes_read_{0}, samples_decoded_{0};
  std::vector<std::thread> workers_;
};

// Mel images of a batch of slices (each L samples, contiguous) on the chosen device.
class MelBatcher {
 public:
  MelBatcher(const MelParams& p, Device device, int64_t max_slices) : p_(p), device_(device), max_(max_slices) {
    // The CPU path's filterbank, bands, window and FFT plan, prepared once for all slices (made per slice
    // before issue 9: a filterbank and its bands rebuilt for each 10 s slice).
    if (device_ == Device::CPU) cpu_ = std::make_unique<MelCpu>(p_);
    if (device_ == Device::CUDA) {
      gpu_ = std::make_unique<MelGpu>(p_, max_);
      d_audio_ = DeviceBuffer<float>(static_cast<size_t>(max_ * p_.slice_samples()));
      d_images_ = DeviceBuffer<float>(static_cast<size_t>(max_ * image_size()));
      d_refs_ = DeviceBuffer<float>(static_cast<size_t>(max_));
    }
  }
  int64_t image_size() const { return static_cast<int64_t>(p_.image_height()) * p_.image_width(); }
  // images: n × image_size; ref_db: n.
  void compute(float* images, double* ref_db, const float* audio, int64_t n) {
    const int64_t L = p_.slice_samples();
    if (device_ == Device::CUDA) {
      d_audio_.upload(audio, static_cast<size_t>(n * L));
      gpu_->compute(d_images_.get(), d_audio_.get(), n, L, d_refs_.get());
      d_images_.download(images, static_cast<size_t>(n * image_size()));
      std::vector<float> refs(static_cast<size_t>(n));
      d_refs_.download(refs.data(), refs.size());
      for (int64_t s = 0; s < n; ++s) ref_db[s] = 10.0 * std::log10(std::max<double>(refs[s], p_.amin));
    } else {
      for (int64_t s = 0; s < n; ++s) {
        double ref = 0.0;
        const std::vector<float> img = cpu_->image(audio + s * L, L, &ref);
        std::copy(img.begin(), img.end(), images + s * image_size());
        ref_db[s] = 10.0 * std::log10(std::max(ref, p_.amin));
      }
    }
  }

 private:
  MelParams p_;
  Device device_;
  int64_t max_;
  std::unique_ptr<MelCpu> cpu_;
  std::unique_ptr<MelGpu> gpu_;
  DeviceBuffer<float> d_audio_, d_images_, d_refs_;
};

// One line of X.slices.jsonl (the keys the embedded "slices" list of older sidecars had).
std::string slice_index_line(const MelSliceInfo& s) {
  nlohmann::ordered_json line = {{"file", s.file}, {"start", s.start_seconds}, {"ref_db", s.ref_db}};
  return line.dump() + "\n";
}

MelSliceInfo parse_slice(const nlohmann::json& s) {
  // get<int64_t>() of a non-integer (1e30) would be a float-to-integer conversion out of range.
  const nlohmann::json& file = s.at("file");
  if (!file.is_number_integer() || file.get<int64_t>() < -1)
    throw std::runtime_error("a slice entry's \"file\" is not an index into \"files\": " + file.dump());
  return {file.get<int64_t>(), s.at("start").get<double>(), s.at("ref_db").get<double>()};
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec1, ec2;
  const fs::path ca = fs::weakly_canonical(a, ec1), cb = fs::weakly_canonical(b, ec2);
  return !ec1 && !ec2 && ca == cb;
}

nlohmann::ordered_json mel_params_json(const MelParams& p) {
  nlohmann::ordered_json j;
  j["sr"] = p.sr;
  j["slice_seconds"] = p.slice_seconds;
  j["slice_samples"] = p.slice_samples();
  j["n_fft"] = p.n_fft;
  j["hop"] = p.hop;
  j["win"] = p.win;
  j["window"] = "hann";
  j["window_periodic"] = true;
  j["center"] = p.center;
  j["pad_mode"] = p.pad_mode;
  j["power"] = 2.0;
  j["n_mels"] = p.n_mels;
  j["fmin"] = p.fmin;
  j["fmax"] = p.fmax_hz();
  j["mel_scale"] = p.mel_scale;
  j["mel_norm"] = p.mel_norm;
  j["amin"] = p.amin;
  j["top_db"] = p.top_db;
  if (p.ref < 0) j["ref"] = "max";
  else j["ref"] = p.ref;
  j["frames"] = p.frames;
  if (p.resize_h || p.resize_w) {
    j["resize"] = {{"height", p.resize_h},
                   {"width", p.resize_w},
                   {"domain", "dB"},
                   {"filter", "antialiased triangle (PyTorch bilinear antialias=True / PIL BILINEAR), half-pixel "
                              "centres"}};
  } else {
    j["resize"] = nullptr;
  }
  j["db"] = "10*log10(max(S, amin)) - ref_db, clipped below at its max - top_db";
  j["normalisation"] = "x = db/top_db*2+1";
  return j;
}

}  // namespace

PrepareAudioResult prepare_audio(const std::string& input, const std::string& out_npy,
                                 const PrepareAudioOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const MelParams& p = options.mel;
  validate_mel_params(p);
  const int64_t L = p.slice_samples();
  const double hop_seconds = options.slice_hop_seconds;
  if (std::isnan(hop_seconds) || hop_seconds < 0.0 || !std::isfinite(hop_seconds))
    refuse("--slice-hop " + num(hop_seconds), "expected a positive number of seconds (or leave it out: the slice length)");
  const int64_t slice_hop = hop_seconds > 0.0 ? static_cast<int64_t>(std::llround(hop_seconds * p.sr)) : L;
  if (slice_hop < 1) refuse("--slice-hop " + num(hop_seconds), "is less than one sample at --sr " + std::to_string(p.sr));
  const bool drop_silent = !std::isnan(options.min_rms_db);
  if (drop_silent && !std::isfinite(options.min_rms_db))
    refuse("--min-rms-db " + num(options.min_rms_db), "expected a finite level in dBFS (e.g. -60)");
  if (out_npy.empty()) throw std::invalid_argument("--out: expected a path for the .npy dataset");
  // Legal (any 4·2^k image trains), but Griffin-Lim needs overlapping frames: with less than 50%, its
  // iSTFT divides by a window sum near 0 between frames and `listen` comes out loud and wrong.
  if (2 * p.hop > p.n_fft)
    std::fprintf(stderr,
                 "prepare-audio: warning: --hop %d is more than half of --n-fft %d: frames overlap less than 50%%, "
                 "so listen (Griffin-Lim) will reconstruct this dataset poorly; raise --n-fft to %d or more\n",
                 p.hop, p.n_fft, 2 * p.hop);

  const AudioFolderScan scan = scan_audio_folder(input);
  const std::string sidecar_path = sidecar_path_for(out_npy);
  const std::string index_path = slice_index_path_for(out_npy);
  std::vector<std::string> files;
  for (const std::string& f : scan.files)
    if (!same_file(f, out_npy) && !same_file(f, sidecar_path) && !same_file(f, index_path)) files.push_back(f);
  if (files.empty() && scan.refused.empty()) throw std::runtime_error("no files found under '" + input + "'");
  int64_t total_bytes = 0;
  for (const std::string& f : files) {
    std::error_code size_ec;
    const auto size = fs::file_size(f, size_ec);
    if (!size_ec) total_bytes += static_cast<int64_t>(size);
  }

  const int threads = std::max(1, options.decode_threads > 0 ? options.decode_threads
                                                             : static_cast<int>(std::thread::hardware_concurrency()));
  const int64_t batch =
      options.slices_per_batch > 0 ? options.slices_per_batch : std::max<int64_t>(1, (int64_t(64) << 20) / (4 * L));
  MelBatcher mel(p, options.device, batch);  // before the decoders start: a CUDA failure stops at once
  const int64_t image_size = mel.image_size();

  PrepareAudioResult result;
  result.files_total = static_cast<int64_t>(files.size() + scan.refused.size());
  result.height = p.image_height();
  result.width = p.image_width();
  std::error_code ec;
  const fs::path parent = fs::path(out_npy).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  // Written as they are made; published (renamed into place) only if at least one slice was written.
  NpyRowWriter npy(out_npy, DType::F16, {1, result.height, result.width});
  AtomicFileWriter index(index_path);
  std::vector<std::string> used_files;
  std::vector<double> ref_dbs;                 // for the median level (8 bytes a slice)
  std::vector<MelSliceInfo> batch_slices;      // the slices of the batch being filled
  std::vector<float> batch_audio(static_cast<size_t>(batch * L)), batch_images(static_cast<size_t>(batch * image_size));
  std::vector<double> batch_ref(static_cast<size_t>(batch));
  std::vector<uint16_t> batch_halves(static_cast<size_t>(batch * image_size));
  int64_t in_batch = 0;
  bool progress_line_open = false;
  auto last_progress = t0 - std::chrono::seconds(1);

  auto flush = [&] {
    if (in_batch == 0) return;
    mel.compute(batch_images.data(), batch_ref.data(), batch_audio.data(), in_batch);
    for (int64_t v = 0; v < in_batch * image_size; ++v) batch_halves[v] = float_to_half(batch_images[v]);
    npy.append(batch_halves.data(), in_batch);
    std::string lines;
    for (int64_t s = 0; s < in_batch; ++s) {
      batch_slices[s].ref_db = batch_ref[s];
      lines += slice_index_line(batch_slices[s]);
      ref_dbs.push_back(batch_ref[s]);
    }
    index.write(lines.data(), lines.size());
    batch_slices.clear();
    in_batch = 0;
  };
  auto show_progress = [&](bool force, size_t files_done, const DecodePool& pool) {
    if (!options.progress) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_progress < std::chrono::milliseconds(250)) return;
    last_progress = now;
    const double elapsed = std::chrono::duration<double>(now - t0).count();
    const double audio_seconds = static_cast<double>(pool.samples_decoded()) / p.sr;
    const int64_t done = std::min(pool.bytes_read(), total_bytes);
    std::string eta = "";
    if (done > 0 && done < total_bytes && elapsed > 1.0) {
      const double left = elapsed * static_cast<double>(total_bytes - done) / static_cast<double>(done);
      char text[64];
      if (left >= 3600) std::snprintf(text, sizeof text, " · ETA %dh%02dm", int(left / 3600), int(left / 60) % 60);
      else std::snprintf(text, sizeof text, " · ETA %dm%02ds", int(left / 60), int(left) % 60);
      eta = text;
    }
    std::fprintf(stderr, "\rprepare-audio: files %zu/%zu · %.3f h audio · %lld slices · %.0f× realtime%s   ",
                 files_done, files.size(), audio_seconds / 3600.0,
                 static_cast<long long>(npy.rows() + in_batch), elapsed > 0 ? audio_seconds / elapsed : 0.0,
                 eta.c_str());
    std::fflush(stderr);
    progress_line_open = true;
  };
  auto warn = [&](const std::string& line) {
    if (progress_line_open) std::fputc('\n', stderr);
    progress_line_open = false;
    std::fprintf(stderr, "prepare-audio: warning: %s\n", line.c_str());
  };
  auto skip = [&](const std::string& file, const std::string& reason) {
    warn("skipped '" + file + "': " + reason);
    result.skipped.push_back({file, reason});
  };

  for (const AudioFolderScan::Refused& r : scan.refused) skip(r.path, r.reason);
  {
    DecodePool pool(files, p.sr, L, slice_hop, options.pad_tail, options.min_rms_db, threads);
    for (size_t i = 0; i < files.size(); ++i) {
      int64_t file_index = -1;
      PendingSlice slice;
      FileSlot status;
      for (;;) {
        const std::optional<bool> got = pool.next(i, slice, status, std::chrono::milliseconds(250));
        if (!got) {
          show_progress(false, i, pool);
          continue;
        }
        if (!*got) break;
        if (file_index < 0) {
          file_index = static_cast<int64_t>(used_files.size());
          used_files.push_back(files[i]);
        }
        std::copy(slice.audio.begin(), slice.audio.end(), batch_audio.begin() + in_batch * L);
        batch_slices.push_back({file_index, static_cast<double>(slice.start) / p.sr, 0.0});
        if (++in_batch == batch) flush();
        show_progress(false, i, pool);
      }
      result.dropped_silent += status.dropped_silent;
      if (!status.error.empty()) {
        skip(files[i], status.error);
      } else {
        const double kept = static_cast<double>(status.samples) / p.sr;
        result.audio_seconds += kept;
        if (status.slices_cut == 0) {
          std::string reason = "shorter than one slice (" + num(kept) + " s < " + num(p.slice_seconds) +
                               " s; --pad-tail keeps it, zero-padded)";
          if (status.end.partial) reason = "partly decoded (" + status.end.reason + ") and " + reason;
          skip(files[i], reason);
        } else if (status.end.partial) {
          PartlyDecodedFile partial;
          partial.file = files[i];
          partial.kept_seconds = kept;
          partial.missing_seconds = status.end.missing_frames < 0
                                        ? -1.0
                                        : static_cast<double>(status.end.missing_frames) / status.source_rate;
          partial.reason = status.end.reason;
          warn("'" + files[i] + "': partly decoded: kept " + num(kept) + " s, " +
               (partial.missing_seconds < 0 ? std::string("an unknown length")
                                            : num(partial.missing_seconds) + " s") +
               " announced but missing (" + partial.reason + ")");
          result.partly_decoded.push_back(partial);
        }
      }
      show_progress(false, i + 1, pool);
    }
    flush();
    show_progress(true, files.size(), pool);
  }
  if (progress_line_open) std::fputc('\n', stderr);

  result.count = npy.rows();
  result.files_used = static_cast<int64_t>(used_files.size());
  result.files_read = result.files_total - static_cast<int64_t>(result.skipped.size());
  if (result.count == 0) {
    std::string why = std::to_string(result.skipped.size()) + " of " + std::to_string(result.files_total) +
                      " files skipped";
    if (!result.skipped.empty()) why += " (first: '" + result.skipped[0].file + "': " + result.skipped[0].reason + ")";
    if (result.dropped_silent) why += ", " + std::to_string(result.dropped_silent) + " slices below --min-rms-db";
    throw std::runtime_error("no usable audio under '" + input + "': " + why + "; nothing written");
  }
  nlohmann::ordered_json j;
  j["kind"] = "mel";
  j["dtype"] = "float16";
  j["layout"] = "NCHW";
  j["count"] = result.count;
  j["channels"] = 1;
  j["height"] = result.height;
  j["width"] = result.width;
  j["preset"] = options.preset;
  const nlohmann::ordered_json params = mel_params_json(p);  // named: items() of a temporary would dangle
  for (auto& [key, value] : params.items()) j[key] = value;
  j["slice_hop"] = static_cast<double>(slice_hop) / p.sr;
  j["slice_hop_samples"] = slice_hop;
  j["pad_tail"] = options.pad_tail;
  if (drop_silent) j["min_rms_db"] = options.min_rms_db;
  else j["min_rms_db"] = nullptr;
  j["source"] = fs::absolute(input, ec).lexically_normal().generic_string();
  j["audio_seconds"] = result.audio_seconds;
  j["files"] = used_files;
  j["slice_index"] = fs::path(index_path).filename().generic_string();
  {
    MelDatasetInfo levels;  // the median of MelDatasetInfo, on the levels alone
    for (const double r : ref_dbs) levels.slices.push_back({0, 0.0, r});
    j["median_ref_db"] = levels.median_ref_db();
  }
  nlohmann::ordered_json skipped = nlohmann::ordered_json::array();
  for (const SkippedAudioFile& s : result.skipped) skipped.push_back({{"file", s.file}, {"reason", s.reason}});
  j["skipped"] = std::move(skipped);
  j["files_read"] = result.files_read;
  nlohmann::ordered_json partial = nlohmann::ordered_json::array();
  for (const PartlyDecodedFile& f : result.partly_decoded) {
    nlohmann::ordered_json e = {{"file", f.file}, {"kept_seconds", f.kept_seconds}};
    if (f.missing_seconds < 0) e["missing_seconds"] = nullptr;
    else e["missing_seconds"] = f.missing_seconds;
    e["reason"] = f.reason;
    partial.push_back(std::move(e));
  }
  j["partly_decoded"] = std::move(partial);
  j["dropped_silent"] = result.dropped_silent;
  // All three written and synced before any is renamed into place: a full disk fails with none of
  // them published (temp files removed), never a dataset beside no sidecar or an old one.
  AtomicFileWriter sidecar(sidecar_path);
  const std::string sidecar_text = j.dump(1) + "\n";
  sidecar.write(sidecar_text.data(), sidecar_text.size());
  npy.sync();
  index.sync();
  sidecar.sync();
  npy.commit();
  index.commit();
  sidecar.commit();

  result.npy_path = out_npy;
  result.sidecar_path = sidecar_path;
  result.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

// ---- the sidecar read back ---------------------------------------------------------------------

std::string slice_index_path_for(const std::string& npy_path) {
  const std::string suffix = ".npy";
  if (npy_path.size() > suffix.size() && npy_path.compare(npy_path.size() - suffix.size(), suffix.size(), suffix) == 0)
    return npy_path.substr(0, npy_path.size() - suffix.size()) + ".slices.jsonl";
  return npy_path + ".slices.jsonl";
}

double MelDatasetInfo::median_ref_db() const {
  if (slices.empty()) return std::isfinite(recorded_median_ref_db) ? recorded_median_ref_db : 0.0;
  std::vector<double> r;
  r.reserve(slices.size());
  for (const MelSliceInfo& s : slices) r.push_back(s.ref_db);
  const size_t mid = r.size() / 2;
  std::nth_element(r.begin(), r.begin() + mid, r.end());
  if (r.size() % 2) return r[mid];
  const double upper = r[mid];
  const double lower = *std::max_element(r.begin(), r.begin() + mid);
  return 0.5 * (lower + upper);
}

bool is_mel_sidecar(const std::string& text) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    return j.is_object() && j.contains("kind") && j["kind"] == "mel";
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

MelDatasetInfo parse_mel_sidecar(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(where + ": the dataset sidecar is not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("kind") || j["kind"] != "mel")
    throw std::runtime_error(where + ": not a mel dataset (its sidecar's \"kind\" is not \"mel\")");
  auto need = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) throw std::runtime_error(where + ": the mel sidecar lacks \"" + key + "\"");
    return j[key];
  };
  // Integers are checked before conversion: nlohmann's get<int>() of 1e300 or 2^40 is a silent
  // truncation (undefined behaviour for a float), which would turn a lying sidecar into wrong sizes.
  auto integer = [&](const nlohmann::json& value, const char* key, int64_t lo, int64_t hi) -> int64_t {
    if (!value.is_number_integer() ||
        (value.is_number_unsigned() ? value.get<uint64_t>() > static_cast<uint64_t>(hi)
                                    : value.get<int64_t>() < lo || value.get<int64_t>() > hi)) {
      throw std::runtime_error(where + ": malformed mel sidecar: \"" + key + "\" is " + value.dump() +
                               ", expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return value.get<int64_t>();
  };
  auto int_key = [&](const char* key) {
    return static_cast<int>(integer(need(key), key, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
  };
  MelDatasetInfo info;
  MelParams& p = info.mel;
  try {
    p.sr = int_key("sr");
    p.slice_seconds = need("slice_seconds").get<double>();
    p.n_fft = int_key("n_fft");
    p.hop = int_key("hop");
    p.win = int_key("win");
    p.center = need("center").get<bool>();
    p.pad_mode = need("pad_mode").get<std::string>();
    p.n_mels = int_key("n_mels");
    p.fmin = need("fmin").get<double>();
    p.fmax = need("fmax").get<double>();
    p.mel_scale = need("mel_scale").get<std::string>();
    p.mel_norm = need("mel_norm").get<std::string>();
    p.amin = need("amin").get<double>();
    p.top_db = need("top_db").get<double>();
    const nlohmann::json& ref = need("ref");
    p.ref = ref.is_number() ? ref.get<double>() : -1.0;
    p.frames = int_key("frames");
    const nlohmann::json& resize = need("resize");
    if (resize.is_object()) {
      p.resize_h = static_cast<int>(integer(resize.at("height"), "resize.height", 0, std::numeric_limits<int>::max()));
      p.resize_w = static_cast<int>(integer(resize.at("width"), "resize.width", 0, std::numeric_limits<int>::max()));
    }
    info.count = integer(need("count"), "count", 0, std::numeric_limits<int64_t>::max());
    info.height = integer(need("height"), "height", 0, std::numeric_limits<int64_t>::max());
    info.width = integer(need("width"), "width", 0, std::numeric_limits<int64_t>::max());
    if (j.contains("files")) info.files = j["files"].get<std::vector<std::string>>();
    if (j.contains("median_ref_db") && j["median_ref_db"].is_number())
      info.recorded_median_ref_db = j["median_ref_db"].get<double>();
    if (j.contains("slices")) {
      for (const auto& s : j["slices"]) info.slices.push_back(parse_slice(s));
    } else if (!j.contains("slice_index")) {
      throw std::runtime_error(where + ": the mel sidecar lacks \"slice_index\" (and has no embedded \"slices\")");
    }
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(where + ": malformed mel sidecar: " + e.what());
  }
  if (info.height != p.image_height() || info.width != p.image_width())
    throw std::runtime_error(where + ": the mel sidecar's image " + std::to_string(info.height) + "×" +
                             std::to_string(info.width) + " disagrees with its parameters (" +
                             std::to_string(p.image_height()) + "×" + std::to_string(p.image_width()) + ")");
  if (j.contains("slices") && static_cast<int64_t>(info.slices.size()) != info.count)
    throw std::runtime_error(where + ": the mel sidecar lists " + std::to_string(info.slices.size()) +
                             " slices but count is " + std::to_string(info.count));
  try {
    validate_mel_params(p);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(where + ": the mel sidecar's parameters are unusable: " + e.what());
  }
  return info;
}

MelDatasetInfo read_mel_dataset_info(const std::string& sidecar_path) {
  const std::string text = read_file_text(sidecar_path);
  MelDatasetInfo info = parse_mel_sidecar(text, sidecar_path);
  const nlohmann::json j = nlohmann::json::parse(text);  // parse_mel_sidecar checked it is JSON
  if (!j.contains("slices")) {
    if (!j["slice_index"].is_string() || j["slice_index"].get<std::string>().empty())
      throw std::runtime_error(sidecar_path + ": the mel sidecar's \"slice_index\" is not a file name");
    const fs::path index = fs::path(sidecar_path).parent_path() / j["slice_index"].get<std::string>();
    std::ifstream in(index, std::ios::binary);
    if (!in)
      throw std::runtime_error(index.string() + ": cannot open the slice index named by " + sidecar_path +
                               " (it is written beside the dataset by prepare-audio)");
    info.slices.reserve(static_cast<size_t>(std::clamp<int64_t>(info.count, 0, int64_t(1) << 24)));
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.empty()) continue;
      try {
        info.slices.push_back(parse_slice(nlohmann::json::parse(line)));
      } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(index.string() + ":" + std::to_string(line_no) +
                                 ": expected {\"file\": n, \"start\": s, \"ref_db\": dB}: " + e.what());
      }
    }
    if (in.bad()) throw std::runtime_error(index.string() + ": read error");
    if (static_cast<int64_t>(info.slices.size()) != info.count)
      throw std::runtime_error(index.string() + ": the slice index lists " + std::to_string(info.slices.size()) +
                               " slices but " + sidecar_path + " says count " + std::to_string(info.count));
  }
  for (size_t i = 0; i < info.slices.size(); ++i)
    if (info.slices[i].file < 0 || info.slices[i].file >= static_cast<int64_t>(info.files.size()))
      throw std::runtime_error(sidecar_path + ": slice " + std::to_string(i) + " names file " +
                               std::to_string(info.slices[i].file) + " but the sidecar lists " +
                               std::to_string(info.files.size()) + " files");
  return info;
}

}  // namespace ds
