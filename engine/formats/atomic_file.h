// Atomic file writes (temp file in the same folder, fsync, rename, fsync the folder): a crash mid-write
// leaves either the old file or the new one, never a torn one. Every checkpoint/dataset/sample goes here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace ds {

// Calls write_contents on a FILE* opened on "<path>.tmp.<pid>", then flushes, fsyncs, renames it over
// path and fsyncs the folder. write_contents reports its own failures by throwing; short writes are
// caught here through ferror. On any failure the temp file is removed and std::runtime_error names path.
void write_file_atomic(const std::string& path, const std::function<void(FILE*)>& write_contents);

void write_bytes_atomic(const std::string& path, const void* data, size_t size);
void write_bytes_atomic(const std::string& path, const std::vector<uint8_t>& bytes);
void write_text_atomic(const std::string& path, const std::string& text);

// Whole file into memory; throws std::runtime_error naming path if it is missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::string& path);
std::string read_file_text(const std::string& path);

// A file written in pieces and published atomically, for outputs too large to hold in memory: the
// temp file "<path>.tmp.<pid>" is opened at construction, appended to (and patched: write_at), and
// commit() flushes, fsyncs, renames it over path and fsyncs the folder. Destroyed without commit()
// (an exception, nothing to write), the temp file is removed and path is left as it was. Failures
// throw std::runtime_error naming path.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  void write(const void* data, size_t size);
  // Overwrites size bytes at offset (< the size written so far), then goes back to the end.
  void write_at(uint64_t offset, const void* data, size_t size);
  // Flushes and fsyncs what was written so far, keeping the file open: where a full disk shows
  // (ENOSPC). commit() after it only closes and renames. To publish files that belong together (a
  // dataset and its sidecar), sync() each, then commit() each: a full disk then fails before any of
  // them is renamed into place, so no final name ever holds half a set.
  void sync();
  void commit();
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  FILE* file() { return file_; }  // for fprintf-style writers; keep size() in step via write()

 private:
  [[noreturn]] void fail(const std::string& why);
  std::string path_, temp_;
  FILE* file_ = nullptr;
  uint64_t size_ = 0;
  bool committed_ = false;
  bool synced_ = false;  // nothing written since the last sync()
};

}  // namespace ds
