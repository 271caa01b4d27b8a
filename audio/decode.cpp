// Decoding with libsndfile, resampling with libsoxr, and the folder scan (see decode.h).
#include "audio/decode.h"

#include <sndfile.h>
#include <soxr.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace ds {
namespace {

struct SndfileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndfilePtr = std::unique_ptr<SNDFILE, SndfileCloser>;

std::runtime_error decode_error(const std::string& path, const std::string& reason) {
  return std::runtime_error("cannot decode audio file '" + path + "': " + reason);
}

// libsndfile's own names for the container and the codec, e.g. "WAV (Microsoft), Signed 16 bit PCM".
std::string format_name(SNDFILE* file, int format) {
  SF_FORMAT_INFO major{}, sub{};
  major.format = format & SF_FORMAT_TYPEMASK;
  sub.format = format & SF_FORMAT_SUBMASK;
  const bool has_major = sf_command(file, SFC_GET_FORMAT_INFO, &major, sizeof major) == 0 && major.name;
  const bool has_sub = sf_command(file, SFC_GET_FORMAT_INFO, &sub, sizeof sub) == 0 && sub.name;
  std::ostringstream name;
  if (has_major) name << major.name; else name << "format 0x" << std::hex << (format & SF_FORMAT_TYPEMASK);
  name << ", ";
  if (has_sub) name << sub.name; else name << "codec 0x" << std::hex << (format & SF_FORMAT_SUBMASK);
  return name.str();
}

}  // namespace

DecodedAudio decode_audio(const std::string& path) {
  SF_INFO info{};
  SndfilePtr file;
  {
    // libsndfile keeps the reason of a failed sf_open in one global (sf_errno in sndfile.c, read by
    // sf_strerror(nullptr)); files are decoded on several threads, so opening and reading the reason
    // happen under one lock, or two failures at once could report each other's reasons.
    static std::mutex open_mutex;
    std::lock_guard<std::mutex> lock(open_mutex);
    file.reset(sf_open(path.c_str(), SFM_READ, &info));
    if (!file) throw decode_error(path, sf_strerror(nullptr));
  }
  if (info.channels <= 0) throw decode_error(path, "libsndfile reports " + std::to_string(info.channels) + " channels");
  if (info.samplerate <= 0 || info.samplerate > kMaxSampleRate)
    throw decode_error(path, "sample rate " + std::to_string(info.samplerate) + " Hz is outside (0, " +
                                 std::to_string(static_cast<int64_t>(kMaxSampleRate)) + "] Hz");

  DecodedAudio out;
  out.sample_rate = info.samplerate;
  out.channels = info.channels;
  out.format = format_name(file.get(), info.format);
  // libsndfile answers SF_COUNT_MAX when it cannot tell (e.g. an Ogg stream cut before its last page).
  const bool frames_known = info.frames >= 0 && info.frames < SF_COUNT_MAX;
  out.header_frames = frames_known ? info.frames : -1;
  // The header's count is only a hint (MP3 estimates it, a damaged file may claim more than it has):
  // reserve at most ~6 min at 44.1 kHz up front and let the vector grow past that.
  if (frames_known) out.samples.reserve(static_cast<size_t>(std::min<sf_count_t>(info.frames, sf_count_t{1} << 24)));

  // Blocks of interleaved frames, so a long many-channel file never exists interleaved in memory.
  constexpr sf_count_t kBlockFrames = 16384;
  const int channels = info.channels;
  std::vector<float> block(static_cast<size_t>(kBlockFrames) * channels);
  for (;;) {
    const sf_count_t got = sf_readf_float(file.get(), block.data(), kBlockFrames);
    if (got <= 0) break;
    if (channels == 1) {
      out.samples.insert(out.samples.end(), block.begin(), block.begin() + got);
      continue;
    }
    for (sf_count_t f = 0; f < got; ++f) {
      const float* frame = block.data() + f * channels;
      float sum = 0.0f;
      for (int c = 0; c < channels; ++c) sum += frame[c];
      out.samples.push_back(sum / static_cast<float>(channels));
    }
  }
  if (sf_error(file.get()) != SF_ERR_NO_ERROR) throw decode_error(path, sf_strerror(file.get()));
  out.frames = static_cast<int64_t>(out.samples.size());
  if (out.frames == 0) throw decode_error(path, "it contains no audio frames");
  return out;
}

std::vector<float> resample(const std::vector<float>& in, double in_rate, double out_rate) {
  for (const double rate : {in_rate, out_rate}) {
    if (!(rate > 0.0 && rate <= kMaxSampleRate)) {  // written so NaN fails too
      std::ostringstream msg;
      msg << "resample: sample rate " << rate << " Hz is outside (0, " << kMaxSampleRate << "] Hz";
      throw std::invalid_argument(msg.str());
    }
  }
  if (in_rate == out_rate || in.empty()) {
    if (in_rate == out_rate) return in;
    return {};
  }
  const size_t out_len = static_cast<size_t>(std::llround(static_cast<double>(in.size()) * out_rate / in_rate));
  std::vector<float> out(out_len, 0.0f);
  if (out_len == 0) return out;

  // SOXR_HQ (20-bit precision, ~120 dB, linear phase: soxr.h) is what librosa >= 0.10 resamples with
  // by default (res_type="soxr_hq"), so our datasets match librosa-made ones; its error is far below
  // the 80 dB range (top_db) kept in the mels. VHQ (28-bit) would cost more and change nothing there.
  // Note librosa fixes the length to ceil(n·out/in); we round (the two differ by at most one sample).
  // One thread: prepare decodes many files in parallel, one per core.
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  const soxr_runtime_spec_t runtime = soxr_runtime_spec(1);
  size_t in_done = 0, out_done = 0;
  // soxr_oneshot flushes the filter at the end of input, so out gets the whole signal, delay removed.
  const soxr_error_t err = soxr_oneshot(in_rate, out_rate, 1, in.data(), in.size(), &in_done, out.data(), out_len,
                                        &out_done, &io, &quality, &runtime);
  if (err) {
    std::ostringstream msg;
    msg << "resample " << in_rate << " Hz -> " << out_rate << " Hz: soxr failed: " << err;
    throw std::runtime_error(msg.str());
  }
  // soxr emits floor-or-ceil of n·out/in; a rounded-up length leaves at most one trailing zero.
  return out;
}

std::vector<std::string> find_audio_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (ec || !fs::exists(status)) throw std::runtime_error("audio folder '" + dir + "' does not exist");
  if (fs::is_regular_file(status)) return {dir};
  if (!fs::is_directory(status)) throw std::runtime_error("'" + dir + "' is neither a folder nor a file");

  std::vector<std::string> files;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) throw std::runtime_error("cannot list audio folder '" + dir + "': " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw std::runtime_error("cannot list audio folder '" + dir + "': " + ec.message());
    const std::string name = it->path().filename().string();
    const bool hidden = !name.empty() && name[0] == '.';
    if (hidden) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    // is_regular_file follows symlinks: a link to a file counts; links to folders are not entered
    // (the iterator does not follow them), which also rules out cycles.
    if (it->is_regular_file(ec)) files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace ds
