// Audio input: reading any file libsndfile reads (and MPEG audio through libmpg123) to mono float PCM
// block by block, resampling with libsoxr (streaming or one-shot), and finding the files of a folder.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace ds {

// Highest sample rate accepted from a file or asked of resample(): above every real audio interface
// (768 kHz), so a larger value is a corrupt header or a typo, refused before any memory is spent.
constexpr double kMaxSampleRate = 1000000.0;

// How a decode ended. A file is "partly decoded" when the decoder stopped on an error (damaged data,
// a cut FLAC frame, garbage after the audio) or when it ended clearly short of a length the container
// states exactly (FLAC/WAV/... headers, an Ogg stream without its last page, an MP3 whose Xing/Info or
// VBRI header counts its frames). An MP3 without such a header has only an estimated length (from its
// size and first bitrate): decoding until the decoder stops is then the truth, never a warning.
struct DecodeEnd {
  bool partial = false;
  int64_t frames = 0;            // frames decoded
  int64_t missing_frames = 0;    // announced but not decoded; −1: unknown (an Ogg stream cut before its end)
  std::string reason;            // why, when partial: the decoder's message or what was missing
};

// One file opened for decoding. Reads mono frames (the mean of the source channels) in blocks, so a
// file of any length needs only its block in memory. Not copyable; one thread at a time.
class AudioReader {
 public:
  // Throws std::runtime_error "cannot decode audio file '<path>': <reason>" when the file cannot be
  // opened (missing, unreadable, a link loop, not a sound file libsndfile or libmpg123 reads: the
  // reason then names containers it cannot read, such as MP4/AAC, Shorten or APE, with a hint), or has
  // no channels or a sample rate outside (0, kMaxSampleRate].
  explicit AudioReader(const std::string& path);
  ~AudioReader();
  AudioReader(const AudioReader&) = delete;
  AudioReader& operator=(const AudioReader&) = delete;

  int sample_rate() const;
  int channels() const;           // before the downmix
  const std::string& format() const;  // e.g. "OGG (OGG Container format), Vorbis"
  // Frames the header announces (−1: unknown). For an MP3 without a Xing/Info/VBRI frame count this is
  // libmpg123's estimate (length_is_estimate()).
  int64_t header_frames() const;
  bool length_is_estimate() const;
  int64_t file_bytes() const;
  int64_t bytes_read() const;     // the file position: how far decoding has gone (for an ETA)

  // Up to max_frames mono frames into out; 0 once the decoder stopped (its end or an error).
  int64_t read(float* out, int64_t max_frames);
  int64_t frames_read() const;
  // Valid once read() returned 0: whether the file was decoded whole (see DecodeEnd).
  DecodeEnd end() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct DecodedAudio {
  std::vector<float> samples;  // mono: the mean of the source channels, one value per frame
  int sample_rate = 0;         // the source's rate (Hz), not resampled
  int channels = 0;            // the source's channel count before the downmix
  int64_t frames = 0;          // frames decoded == samples.size()
  std::string format;          // libsndfile's names, e.g. "OGG (OGG Container format), Vorbis"
  int64_t header_frames = 0;   // as AudioReader::header_frames
  DecodeEnd end;               // whether it was decoded whole
  bool is_truncated() const { return end.partial; }
  double seconds() const { return sample_rate > 0 ? static_cast<double>(frames) / sample_rate : 0.0; }
};

// A whole file through AudioReader (any format and bit depth it reads, any channel count) to mono
// float in [-1, 1] (integer PCM is scaled; float files pass through as stored). A damaged or cut file
// keeps the head that decoded (end.partial says so). Throws std::runtime_error naming the file and
// the reason when it cannot be opened (see AudioReader) or nothing decodes.
DecodedAudio decode_audio(const std::string& path);

// Resamples mono `in` from in_rate to out_rate with libsoxr (SOXR_HQ, linear phase): the output has
// round(n · out_rate / in_rate) samples, time-aligned with the input (soxr removes its filter delay).
// Equal rates return a copy. Throws std::invalid_argument naming a rate that is not in
// (0, kMaxSampleRate], std::runtime_error if soxr fails.
std::vector<float> resample(const std::vector<float>& in, double in_rate, double out_rate);

// resample() fed block by block (soxr_process): the concatenated output of every push() and finish()
// is resample() of the concatenated input, to float precision (the same filter; soxr's internal
// blocking does not depend on how the input is cut). Equal rates pass the samples through.
class StreamResampler {
 public:
  StreamResampler(double in_rate, double out_rate);  // throws like resample()
  ~StreamResampler();
  StreamResampler(const StreamResampler&) = delete;
  StreamResampler& operator=(const StreamResampler&) = delete;
  // Appends to out what n more input samples give.
  void push(std::vector<float>& out, const float* in, size_t n);
  // Flushes the filter and appends the rest, so that the total is round(total_in · out_rate / in_rate).
  void finish(std::vector<float>& out);

 private:
  void* soxr_ = nullptr;  // soxr_t
  double in_rate_, out_rate_;
  uint64_t total_in_ = 0, total_out_ = 0;
  std::vector<float> block_;
};

// A folder scan: the files to decode, and the entries that cannot be (a link loop, a link to a folder,
// which is not followed, a broken link), each with its reason.
struct AudioFolderScan {
  std::vector<std::string> files;
  struct Refused {
    std::string path, reason;
  };
  std::vector<Refused> refused;
};

// Every regular, non-hidden file under dir (recursively; hidden folders are not entered), sorted by
// path. No filter by extension: AudioReader decides what is audio, so the caller can warn about and
// count each file it skips. A path to a single file returns just that file. Throws
// std::runtime_error naming dir if it does not exist.
AudioFolderScan scan_audio_folder(const std::string& dir);
std::vector<std::string> find_audio_files(const std::string& dir);  // scan_audio_folder(dir).files

}  // namespace ds
