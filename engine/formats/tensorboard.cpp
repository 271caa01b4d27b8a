// TensorBoard event-file writer (see tensorboard.h): CRC32C, TFRecord framing, hand-encoded protobuf.
#include "engine/formats/tensorboard.h"

#include <unistd.h>

#include <array>
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

void TensorBoardWriter::flush() {
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
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    throw std::runtime_error("cannot write TensorBoard events file '" + path_ + "': " + errno_text());
  }
}

}  // namespace ds
