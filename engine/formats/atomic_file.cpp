// Atomic file writes and whole-file reads (see atomic_file.h).
#include "engine/formats/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ds {
namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_folder(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Without this the rename itself may not survive a power loss (ext4/xfs only order data, not the entry).
void fsync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // some file systems refuse to open folders; the data is already synced
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(FILE*)>& write_contents) {
  if (path.empty()) throw std::runtime_error("write_file_atomic: empty output path");
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  FILE* file = std::fopen(temp.c_str(), "wb");
  if (!file) {
    throw std::runtime_error("cannot write '" + path + "': cannot create '" + temp + "': " + errno_text());
  }
  auto fail = [&](const std::string& why) {
    if (file) std::fclose(file);
    std::remove(temp.c_str());
    throw std::runtime_error("cannot write '" + path + "': " + why);
  };
  try {
    write_contents(file);
  } catch (const std::exception& e) {
    fail(e.what());
  }
  if (std::ferror(file)) fail("write error: " + errno_text());
  if (std::fflush(file) != 0) fail("flush failed: " + errno_text());
  if (::fsync(::fileno(file)) != 0) fail("fsync failed: " + errno_text());
  const int close_result = std::fclose(file);
  file = nullptr;
  if (close_result != 0) fail("close failed: " + errno_text());
  if (std::rename(temp.c_str(), path.c_str()) != 0) fail("rename from '" + temp + "' failed: " + errno_text());
  fsync_folder(parent_folder(path));
}

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  if (path.empty()) throw std::runtime_error("AtomicFileWriter: empty output path");
  temp_ = path + ".tmp." + std::to_string(::getpid());
  file_ = std::fopen(temp_.c_str(), "w+b");  // readable too: libsndfile may read back what it wrote
  if (!file_) throw std::runtime_error("cannot write '" + path + "': cannot create '" + temp_ + "': " + errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (committed_) return;
  if (file_) std::fclose(file_);
  std::remove(temp_.c_str());
}

void AtomicFileWriter::fail(const std::string& why) {
  const std::string message = "cannot write '" + path_ + "': " + why;
  if (file_) std::fclose(file_);
  file_ = nullptr;
  std::remove(temp_.c_str());
  committed_ = true;  // nothing left for the destructor
  throw std::runtime_error(message);
}

void AtomicFileWriter::write(const void* data, size_t size) {
  if (!file_) throw std::runtime_error("cannot write '" + path_ + "': already committed or failed");
  if (size > 0 && std::fwrite(data, 1, size, file_) != size)
    fail("short write (" + std::to_string(size) + " bytes): " + errno_text());
  size_ += size;
  synced_ = synced_ && size == 0;
}

void AtomicFileWriter::write_at(uint64_t offset, const void* data, size_t size) {
  if (!file_) throw std::runtime_error("cannot write '" + path_ + "': already committed or failed");
  if (offset + size > size_) fail("write_at past the end (" + std::to_string(offset + size) + " > " + std::to_string(size_) + ")");
  if (std::fseek(file_, static_cast<long>(offset), SEEK_SET) != 0) fail("seek failed: " + errno_text());
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) fail("short write: " + errno_text());
  if (std::fseek(file_, 0, SEEK_END) != 0) fail("seek failed: " + errno_text());
  synced_ = false;
}

void AtomicFileWriter::sync() {
  if (!file_) throw std::runtime_error("cannot write '" + path_ + "': already committed or failed");
  if (std::ferror(file_)) fail("write error: " + errno_text());
  if (std::fflush(file_) != 0) fail("flush failed: " + errno_text());
  if (::fsync(::fileno(file_)) != 0) fail("fsync failed: " + errno_text());
  synced_ = true;
}

void AtomicFileWriter::commit() {
  if (!file_) throw std::runtime_error("cannot write '" + path_ + "': already committed or failed");
  if (!synced_) sync();
  const int close_result = std::fclose(file_);
  file_ = nullptr;
  if (close_result != 0) fail("close failed: " + errno_text());
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) fail("rename from '" + temp_ + "' failed: " + errno_text());
  committed_ = true;
  fsync_folder(parent_folder(path_));
}

void write_bytes_atomic(const std::string& path, const void* data, size_t size) {
  write_file_atomic(path, [&](FILE* file) {
    if (size > 0 && std::fwrite(data, 1, size, file) != size) {
      throw std::runtime_error("short write (" + std::to_string(size) + " bytes): " + errno_text());
    }
  });
}

void write_bytes_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_bytes_atomic(path, text.data(), text.size());
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw std::runtime_error("cannot open '" + path + "': " + errno_text());
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t got;
  while ((got = std::fread(chunk, 1, sizeof chunk, file)) > 0) bytes.insert(bytes.end(), chunk, chunk + got);
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) throw std::runtime_error("cannot read '" + path + "': " + errno_text());
  return bytes;
}

std::string read_file_text(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace ds
