// MappedNpy (see npy_map.h): open, fstat, mmap the whole file, parse the header in place.
#include "engine/formats/npy_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ds {

MappedNpy::MappedNpy(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const std::string why = S_ISREG(st.st_mode) ? std::strerror(errno) : "not a regular file";
    ::close(fd);
    throw std::runtime_error("cannot read '" + path + "': " + why);
  }
  mapped_bytes_ = static_cast<size_t>(st.st_size);
  if (mapped_bytes_ == 0) {
    ::close(fd);
    throw std::runtime_error("'" + path + "' is not a readable .npy file: it is empty");
  }
  void* map = ::mmap(nullptr, mapped_bytes_, PROT_READ, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file open
  if (map == MAP_FAILED) throw std::runtime_error("cannot map '" + path + "': " + std::strerror(map_errno));
  base_ = static_cast<const uint8_t*>(map);
  try {
    header_ = parse_npy_header(base_, mapped_bytes_, path);
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(base_), mapped_bytes_);
    base_ = nullptr;
    throw;
  }
}

MappedNpy::~MappedNpy() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), mapped_bytes_);
}

int64_t MappedNpy::numel() const {
  int64_t n = 1;
  for (int64_t d : header_.shape) n *= d;
  return n;
}

void MappedNpy::advise_sequential() const {
  if (base_) ::madvise(const_cast<uint8_t*>(base_), mapped_bytes_, MADV_SEQUENTIAL);
}
void MappedNpy::advise_random() const {
  if (base_) ::madvise(const_cast<uint8_t*>(base_), mapped_bytes_, MADV_RANDOM);
}

}  // namespace ds
