// TensorBoard event files for the trainer's logs: TFRecord framing, CRC32C and the few protobuf messages
// TensorBoard shows (Summary.Value simple_value, Summary.Image, Summary.Audio, HistogramProto, text as a
// DT_STRING TensorProto for the text plugin), encoded by hand (no protobuf library).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

namespace ds {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF), the checksum of
// TFRecord files. Pass a previous result as crc to continue it over more bytes:
// crc32c(b, nb, crc32c(a, na)) == crc32c(a followed by b).
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

// TFRecord stores CRCs masked, because a CRC of data that itself holds CRCs is weak
// (tensorflow/core/lib/hash/crc32c.h): ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t mask_crc32c(uint32_t crc);

// Seconds since the Unix epoch, with sub-second resolution (Event.wall_time's unit).
double unix_time_now();

// HistogramProto's fields. Buckets as TensorFlow's own C++ histogram (tensorflow/core/lib/histogram/
// histogram.cc, what tf.summary.histogram v1 and TensorBoard's HistogramSummary op write): limits
// ±1e-12·1.1^k up to 1e20, 0 and ±DBL_MAX; bucket i counts bucket_limit[i-1] <= x < bucket_limit[i]; a
// run of empty buckets is collapsed into one (EncodeToProto with preserve_zero_buckets = false).
struct TensorBoardHistogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;
};
// values may hold ±inf/NaN: they land in the outermost bucket (TensorFlow would index past its table).
// An empty input gives num 0, min = max = 0 and no buckets.
TensorBoardHistogram make_histogram(const float* values, size_t count);
// TensorFlow's default bucket limits (the uncollapsed table, ascending; exposed for tests).
const std::vector<double>& default_histogram_limits();

// The encoded Event payloads (exposed so tests can compare bytes with TensorBoard's own writer).
std::string encode_image_event(const std::string& tag, const std::string& png, int height, int width,
                               int colorspace, int64_t step, double wall_time);
std::string encode_audio_event(const std::string& tag, const std::string& wav, float sample_rate,
                               int64_t num_channels, int64_t length_frames, int64_t step, double wall_time);
std::string encode_histogram_event(const std::string& tag, const TensorBoardHistogram& histogram, int64_t step,
                                   double wall_time);
std::string encode_text_event(const std::string& tag, const std::string& text, int64_t step, double wall_time);
std::string encode_session_start_event(int64_t step, double wall_time);

// One event file in run_dir, appended to for the writer's lifetime. Thread-safe: every add_* and
// flush() may be called from any thread (audio arrives from a background worker); records never
// interleave.
class TensorBoardWriter {
 public:
  // Creates run_dir if needed and the file run_dir/events.out.tfevents.<unix seconds>.<hostname>.darkstar
  // (".N" appended if that name is taken, so two writers never clobber each other), then writes and
  // flushes the file_version event "brain.Event:2". Throws std::runtime_error naming the file.
  explicit TensorBoardWriter(const std::string& run_dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One Event{wall_time, step, summary{value{tag, simple_value}}}; buffered until flush().
  // Throws std::runtime_error naming the file on a write error.
  void add_scalar(const std::string& tag, float value, int64_t step, double wall_time = unix_time_now());
  // Summary.Image of an encoded PNG; colorspace 1 = grey, 3 = RGB, 4 = RGBA (summary.proto's comment).
  void add_image(const std::string& tag, const std::string& png, int height, int width, int colorspace,
                 int64_t step, double wall_time = unix_time_now());
  // Summary.Audio of an encoded WAV, content_type "audio/wav".
  void add_audio(const std::string& tag, const std::string& wav, float sample_rate, int64_t num_channels,
                 int64_t length_frames, int64_t step, double wall_time = unix_time_now());
  void add_histogram(const std::string& tag, const TensorBoardHistogram& histogram, int64_t step,
                     double wall_time = unix_time_now());
  void add_histogram(const std::string& tag, const float* values, size_t count, int64_t step,
                     double wall_time = unix_time_now()) {
    add_histogram(tag, make_histogram(values, count), step, wall_time);
  }
  // Text for TensorBoard's text plugin (markdown): a scalar DT_STRING tensor with plugin_name "text".
  void add_text(const std::string& tag, const std::string& text, int64_t step, double wall_time = unix_time_now());

  // SessionLog{status: START} at `step`: train writes one at the first step it trains. TensorBoard's
  // Python loaders (EventAccumulator, and `--load_fast=false`'s plugin accumulator, which takes a run's
  // first START as its start) drop, at every later START, the data of steps >= its step: so a resume hides
  // what the interrupted run logged past the checkpoint. tensorboardX's and PyTorch's
  // SummaryWriter(purge_step=...) write the same mark. The Rust data server (`--load_fast=true`) ignores
  // it and evicts a series' points at steps >= a step it sees again, which a resume logging at the same
  // --log-every does at its first logged step. (Checked with tensorboard 2.21 / data server 0.7.2.)
  void add_session_start(int64_t step, double wall_time = unix_time_now());

  // Hands everything written so far to the OS so a running TensorBoard sees it; call once per logged step.
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);

  std::mutex mutex_;  // guards file_ (write_record and flush)
  std::string path_;
  FILE* file_ = nullptr;
};

}  // namespace ds
