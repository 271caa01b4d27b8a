// TensorBoard event-file writer (see tensorboard.h): CRC32C, TFRecord framing, hand-encoded protobuf.
#include "engine/formats/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace ds {
namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? 0x82F63B78u : 0u);
    table[byte] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

std::string errno_text() { return std::strerror(errno); }

// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/): every field is a varint
// key (field_number << 3 | wire_type) followed by its payload.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

// Explicit byte order so the file is the same on any host.
void put_little_endian(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

void put_key(std::string& out, uint32_t field, WireType type) {
  put_varint(out, (uint64_t{field} << 3) | type);
}

void put_double(std::string& out, uint32_t field, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  put_key(out, field, kFixed64);
  put_little_endian(out, bits, 8);
}

void put_float(std::string& out, uint32_t field, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  put_key(out, field, kFixed32);
  put_little_endian(out, bits, 4);
}

// int64 is encoded as the varint of its two's-complement uint64 (negative steps take 10 bytes).
void put_int64(std::string& out, uint32_t field, int64_t value) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(value));
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

// Field numbers and types from tensorflow/core/util/event.proto:
//   message Event { double wall_time = 1; int64 step = 2;
//                   oneof what { string file_version = 3; ... Summary summary = 5; ... } }
// and tensorflow/core/framework/summary.proto:
//   message Summary { repeated Value value = 1; }
//   message Summary.Value { string tag = 1; oneof value { float simple_value = 2; ... } }
// proto3 leaves out scalars equal to their default (0), so do we: the bytes then match what
// TensorFlow/TensorBoard's own writers produce. Oneof members (file_version, summary, simple_value) are
// always written, even when zero, since being set is what selects them.
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
constexpr uint32_t kSummaryValue = 1;
constexpr uint32_t kValueTag = 1, kValueSimpleValue = 2;

void put_event_header(std::string& out, double wall_time, int64_t step) {
  if (wall_time != 0.0 || std::signbit(wall_time)) put_double(out, kEventWallTime, wall_time);
  if (step != 0) put_int64(out, kEventStep, step);
}

std::string encode_file_version_event(double wall_time) {
  std::string event;
  put_event_header(event, wall_time, 0);
  put_bytes(event, kEventFileVersion, "brain.Event:2");
  return event;
}

std::string encode_scalar_event(const std::string& tag, float value, int64_t step, double wall_time) {
  std::string summary_value;
  if (!tag.empty()) put_bytes(summary_value, kValueTag, tag);
  put_float(summary_value, kValueSimpleValue, value);
  std::string summary;
  put_bytes(summary, kSummaryValue, summary_value);
  std::string event;
  put_event_header(event, wall_time, step);
  put_bytes(event, kEventSummary, summary);
  return event;
}

// The other messages, field numbers from tensorboard/compat/proto/summary.proto (the same numbers as
// tensorflow/core/framework/summary.proto), histogram.proto, tensor.proto, tensor_shape.proto, types.proto:
//   Summary.Value { string tag = 1; SummaryMetadata metadata = 9;
//                   oneof value { float simple_value = 2; Image image = 4; HistogramProto histo = 5;
//                                 Audio audio = 6; TensorProto tensor = 8; } }
//   Summary.Image { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
//   Summary.Audio { float sample_rate = 1; int64 num_channels = 2; int64 length_frames = 3;
//                   bytes encoded_audio_string = 4; string content_type = 5; }
//   HistogramProto { double min = 1; double max = 2; double num = 3; double sum = 4; double sum_squares = 5;
//                    repeated double bucket_limit = 6 [packed = true]; repeated double bucket = 7 [packed = true]; }
//   SummaryMetadata { PluginData plugin_data = 1; ... }  PluginData { string plugin_name = 1; bytes content = 2; }
//   TensorProto { DataType dtype = 1; TensorShapeProto tensor_shape = 2; ... repeated bytes string_val = 8; }
//   DataType DT_STRING = 7.  TensorShapeProto { repeated Dim dim = 2; } (no dims: a scalar)
constexpr uint32_t kValueMetadata = 9, kValueImage = 4, kValueHisto = 5, kValueAudio = 6, kValueTensor = 8;
constexpr uint32_t kImageHeight = 1, kImageWidth = 2, kImageColorspace = 3, kImageEncoded = 4;
constexpr uint32_t kAudioSampleRate = 1, kAudioNumChannels = 2, kAudioLengthFrames = 3, kAudioEncoded = 4,
                   kAudioContentType = 5;
constexpr uint32_t kHistoMin = 1, kHistoMax = 2, kHistoNum = 3, kHistoSum = 4, kHistoSumSquares = 5,
                   kHistoBucketLimit = 6, kHistoBucket = 7;
constexpr uint32_t kMetadataPluginData = 1, kPluginDataName = 1;
constexpr uint32_t kTensorDtype = 1, kTensorShape = 2, kTensorStringVal = 8;
constexpr uint64_t kDtString = 7;

// proto3 scalars: left out when zero (as the library does).
void put_int64_nonzero(std::string& out, uint32_t field, int64_t value) {
  if (value != 0) put_int64(out, field, value);
}
void put_double_nonzero(std::string& out, uint32_t field, double value) {
  if (value != 0.0 || std::signbit(value)) put_double(out, field, value);
}
void put_packed_doubles(std::string& out, uint32_t field, const std::vector<double>& values) {
  if (values.empty()) return;
  std::string packed;
  packed.reserve(values.size() * 8);
  for (double v : values) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    put_little_endian(packed, bits, 8);
  }
  put_bytes(out, field, packed);
}

// Event{wall_time, step, summary{value{tag, [metadata], <one value field>}}}.
std::string encode_value_event(const std::string& tag, uint32_t value_field, const std::string& value,
                               const std::string& metadata, int64_t step, double wall_time) {
  std::string summary_value;
  if (!tag.empty()) put_bytes(summary_value, kValueTag, tag);
  put_bytes(summary_value, value_field, value);
  if (!metadata.empty()) put_bytes(summary_value, kValueMetadata, metadata);
  std::string summary;
  put_bytes(summary, kSummaryValue, summary_value);
  std::string event;
  put_event_header(event, wall_time, step);
  put_bytes(event, kEventSummary, summary);
  return event;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  std::string host(name);
  for (char& c : host) {
    if (c == '/') c = '_';  // a name with a slash would point into another folder
  }
  return host;
}

}  // namespace

const std::vector<double>& default_histogram_limits() {
  static const std::vector<double> limits = [] {
    std::vector<double> positive, negative;
    for (double v = 1.0e-12; v < 1.0e20; v *= 1.1) {  // histogram.cc's InitDefaultBucketsInner
      positive.push_back(v);
      negative.push_back(-v);
    }
    positive.push_back(DBL_MAX);
    negative.push_back(-DBL_MAX);
    std::vector<double> all(negative.rbegin(), negative.rend());
    all.push_back(0.0);
    all.insert(all.end(), positive.begin(), positive.end());
    return all;
  }();
  return limits;
}

TensorBoardHistogram make_histogram(const float* values, size_t count) {
  TensorBoardHistogram h;
  if (count == 0) return h;
  const std::vector<double>& limits = default_histogram_limits();
  std::vector<double> counts(limits.size(), 0.0);
  h.min = DBL_MAX;
  h.max = -DBL_MAX;
  for (size_t i = 0; i < count; ++i) {
    const double x = values[i];
    // Histogram::Add: the first limit above x (upper_bound); NaN and +inf find none: the last bucket.
    const size_t b = std::min<size_t>(std::upper_bound(limits.begin(), limits.end(), x) - limits.begin(),
                                      limits.size() - 1);
    counts[b] += 1.0;
    h.min = std::min(h.min, x);
    h.max = std::max(h.max, x);
    h.sum += x;
    h.sum_squares += x * x;
  }
  h.num = static_cast<double>(count);
  // Histogram::EncodeToProto(preserve_zero_buckets = false): a run of empty buckets becomes one, with
  // the limit of the run's last bucket.
  for (size_t i = 0; i < counts.size();) {
    double end = limits[i], c = counts[i];
    size_t j = i + 1;
    while (c <= 0 && j < counts.size() && counts[j] <= 0) {
      end = limits[j];
      c = counts[j];
      ++j;
    }
    h.bucket_limit.push_back(end);
    h.bucket.push_back(c);
    i = j;
  }
  return h;
}

std::string encode_image_event(const std::string& tag, const std::string& png, int height, int width,
                               int colorspace, int64_t step, double wall_time) {
  std::string image;
  put_int64_nonzero(image, kImageHeight, height);
  put_int64_nonzero(image, kImageWidth, width);
  put_int64_nonzero(image, kImageColorspace, colorspace);
  if (!png.empty()) put_bytes(image, kImageEncoded, png);
  return encode_value_event(tag, kValueImage, image, "", step, wall_time);
}

std::string encode_audio_event(const std::string& tag, const std::string& wav, float sample_rate,
                               int64_t num_channels, int64_t length_frames, int64_t step, double wall_time) {
  std::string audio;
  if (sample_rate != 0.0f) put_float(audio, kAudioSampleRate, sample_rate);
  put_int64_nonzero(audio, kAudioNumChannels, num_channels);
  put_int64_nonzero(audio, kAudioLengthFrames, length_frames);
  if (!wav.empty()) put_bytes(audio, kAudioEncoded, wav);
  put_bytes(audio, kAudioContentType, "audio/wav");
  return encode_value_event(tag, kValueAudio, audio, "", step, wall_time);
}

std::string encode_histogram_event(const std::string& tag, const TensorBoardHistogram& h, int64_t step, double wall_time) {
  std::string histo;
  put_double_nonzero(histo, kHistoMin, h.min);
  put_double_nonzero(histo, kHistoMax, h.max);
  put_double_nonzero(histo, kHistoNum, h.num);
  put_double_nonzero(histo, kHistoSum, h.sum);
  put_double_nonzero(histo, kHistoSumSquares, h.sum_squares);
  put_packed_doubles(histo, kHistoBucketLimit, h.bucket_limit);
  put_packed_doubles(histo, kHistoBucket, h.bucket);
  return encode_value_event(tag, kValueHisto, histo, "", step, wall_time);
}

// tensorflow/core/util/event.proto: Event { ... oneof what { ... SessionLog session_log = 7; ... } }
//   message SessionLog { enum SessionStatus { STATUS_UNSPECIFIED = 0; START = 1; STOP = 2; CHECKPOINT = 3; }
//                        SessionStatus status = 1; string checkpoint_path = 2; string msg = 3; }
std::string encode_session_start_event(int64_t step, double wall_time) {
  constexpr uint32_t kEventSessionLog = 7, kSessionLogStatus = 1;
  constexpr uint64_t kSessionStart = 1;
  std::string session_log;
  put_key(session_log, kSessionLogStatus, kVarint);
  put_varint(session_log, kSessionStart);
  std::string event;
  put_event_header(event, wall_time, step);
  put_bytes(event, kEventSessionLog, session_log);
  return event;
}

std::string encode_text_event(const std::string& tag, const std::string& text, int64_t step, double wall_time) {
  // As tensorboard.plugins.text.summary: the plugin's content (TextPluginData{version = 0}) encodes to
  // nothing; the tensor is a rank-0 string (tensor_shape present and empty, as make_tensor_proto writes it).
  std::string plugin_data;
  put_bytes(plugin_data, kPluginDataName, "text");
  std::string metadata;
  put_bytes(metadata, kMetadataPluginData, plugin_data);
  std::string tensor;
  put_key(tensor, kTensorDtype, kVarint);
  put_varint(tensor, kDtString);
  put_bytes(tensor, kTensorShape, "");
  put_bytes(tensor, kTensorStringVal, text);
  return encode_value_event(tag, kValueTensor, tensor, metadata, step, wall_time);
}

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = (crc >> 8) ^ kCrc32cTable[(crc ^ bytes[i]) & 0xFF];
  return ~crc;
}

uint32_t mask_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

double unix_time_now() {
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration<double>(since_epoch).count();
}

TensorBoardWriter::TensorBoardWriter(const std::string& run_dir) {
  const double now = unix_time_now();
  const std::string base = (std::filesystem::path(run_dir) / "events.out.tfevents.").string() +
                           std::to_string(static_cast<int64_t>(now)) + "." + host_name() + ".darkstar";
  std::error_code dir_error;
  std::filesystem::create_directories(run_dir, dir_error);
  if (dir_error) {
    throw std::runtime_error("cannot write TensorBoard events file '" + base + "': cannot create folder '" +
                             run_dir + "': " + dir_error.message());
  }
  // "x" (C11 exclusive create) so a second writer started in the same second gets its own file.
  for (int attempt = 0; attempt < 1000 && !file_; ++attempt) {
    path_ = attempt == 0 ? base : base + "." + std::to_string(attempt);
    file_ = std::fopen(path_.c_str(), "wbx");
    if (!file_ && errno != EEXIST) {
      throw std::runtime_error("cannot create TensorBoard events file '" + path_ + "': " + errno_text());
    }
  }
  if (!file_) {
    throw std::runtime_error("cannot create TensorBoard events file '" + base + "': every name is taken");
  }
  try {
    write_record(encode_file_version_event(now));
    flush();
  } catch (...) {
    std::fclose(file_);
    file_ = nullptr;
    throw;
  }
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);  // errors here have nowhere to go; flush() is where they are reported
}

void TensorBoardWriter::add_scalar(const std::string& tag, float value, int64_t step, double wall_time) {
  write_record(encode_scalar_event(tag, value, step, wall_time));
}

void TensorBoardWriter::add_image(const std::string& tag, const std::string& png, int height, int width,
                                  int colorspace, int64_t step, double wall_time) {
  write_record(encode_image_event(tag, png, height, width, colorspace, step, wall_time));
}

void TensorBoardWriter::add_audio(const std::string& tag, const std::string& wav, float sample_rate,
                                  int64_t num_channels, int64_t length_frames, int64_t step, double wall_time) {
  write_record(encode_audio_event(tag, wav, sample_rate, num_channels, length_frames, step, wall_time));
}

void TensorBoardWriter::add_histogram(const std::string& tag, const TensorBoardHistogram& histogram, int64_t step,
                                      double wall_time) {
  write_record(encode_histogram_event(tag, histogram, step, wall_time));
}

void TensorBoardWriter::add_session_start(int64_t step, double wall_time) {
  write_record(encode_session_start_event(step, wall_time));
}

void TensorBoardWriter::add_text(const std::string& tag, const std::string& text, int64_t step, double wall_time) {
  write_record(encode_text_event(tag, text, step, wall_time));
}

void TensorBoardWriter::flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (std::fflush(file_) != 0 || std::ferror(file_)) {
    throw std::runtime_error("cannot write TensorBoard events file '" + path_ + "': " + errno_text());
  }
}

// TFRecord framing (tensorflow/core/lib/io/record_writer.cc; the format is spelled out in
// tensorflow/python/lib/io/python_io.py): uint64 LE length, uint32 LE masked CRC32C of those 8 bytes,
// the payload, uint32 LE masked CRC32C of the payload.
void TensorBoardWriter::write_record(const std::string& payload) {
  std::string record;
  record.reserve(payload.size() + 16);
  put_little_endian(record, payload.size(), 8);
  put_little_endian(record, mask_crc32c(crc32c(record.data(), 8)), 4);
  record += payload;
  put_little_endian(record, mask_crc32c(crc32c(payload.data(), payload.size())), 4);
  std::lock_guard<std::mutex> lock(mutex_);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    throw std::runtime_error("cannot write TensorBoard events file '" + path_ + "': " + errno_text());
  }
}

}  // namespace ds
