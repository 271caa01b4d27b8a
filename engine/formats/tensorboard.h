// TensorBoard event files for the trainer's scalar logs: TFRecord framing, CRC32C and the few protobuf
// fields of Event/Summary that scalars need, encoded by hand (no protobuf library).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

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

// One event file in run_dir, appended to for the writer's lifetime. Not thread-safe.
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

  // Hands everything written so far to the OS so a running TensorBoard sees it; call once per logged step.
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);

  std::string path_;
  FILE* file_ = nullptr;
};

}  // namespace ds
