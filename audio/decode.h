// Audio input: decoding any file libsndfile reads to mono float PCM, resampling with libsoxr, and
// finding the files of a folder to decode.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ds {

// Highest sample rate accepted from a file or asked of resample(): above every real audio interface
// (768 kHz), so a larger value is a corrupt header or a typo, refused before any memory is spent.
constexpr double kMaxSampleRate = 1000000.0;

struct DecodedAudio {
  std::vector<float> samples;  // mono: the mean of the source channels, one value per frame
  int sample_rate = 0;         // the source's rate (Hz), not resampled
  int channels = 0;            // the source's channel count before the downmix
  int64_t frames = 0;          // frames decoded == samples.size()
  std::string format;          // libsndfile's names, e.g. "OGG (OGG Container format), Vorbis"
  // Frames the header announced, −1 if libsndfile could not tell (an Ogg stream cut before its last
  // page). libsndfile decodes what it can of a damaged file, so header_frames == −1 or > frames means
  // a truncated or damaged file whose head was still usable; see is_truncated().
  int64_t header_frames = 0;
  bool is_truncated() const { return header_frames < 0 || header_frames > frames; }
  double seconds() const { return sample_rate > 0 ? static_cast<double>(frames) / sample_rate : 0.0; }
};

// Decodes a whole file (WAV/FLAC/Ogg Vorbis/Opus/MP3, ... any bit depth, any channel count) to mono
// float in [-1, 1] (integer PCM is scaled by libsndfile; float files pass through as stored).
// Throws std::runtime_error naming the file and libsndfile's reason when the file cannot be opened
// (not a sound file, unsupported codec, empty), has no frames, a sample rate outside
// (0, kMaxSampleRate], or fails while decoding.
DecodedAudio decode_audio(const std::string& path);

// Resamples mono `in` from in_rate to out_rate with libsoxr (SOXR_HQ, linear phase): the output has
// round(n · out_rate / in_rate) samples, time-aligned with the input (soxr removes its filter delay).
// Equal rates return a copy. Throws std::invalid_argument naming a rate that is not in
// (0, kMaxSampleRate], std::runtime_error if soxr fails.
std::vector<float> resample(const std::vector<float>& in, double in_rate, double out_rate);

// Every regular, non-hidden file under dir (recursively; hidden folders are not entered), sorted by
// path. No filter by extension: decode_audio decides what is audio, so the caller can warn about and
// count each file it skips. A path to a single file returns just that file. Throws
// std::runtime_error naming dir if it does not exist.
std::vector<std::string> find_audio_files(const std::string& dir);

}  // namespace ds
