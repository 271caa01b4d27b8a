// A read-only memory map of an .npy file: the header parsed (parse_npy_header), the data left in the
// page cache and read in place, so a dataset larger than RAM trains and inspects without a copy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/formats/npy.h"

namespace ds {

class MappedNpy {
 public:
  // Maps path read-only (PROT_READ, MAP_SHARED). Throws std::runtime_error naming path, for a missing
  // or unreadable file and for everything read_npy refuses.
  explicit MappedNpy(const std::string& path);
  ~MappedNpy();
  MappedNpy(const MappedNpy&) = delete;
  MappedNpy& operator=(const MappedNpy&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<int64_t>& shape() const { return header_.shape; }
  DType dtype() const { return header_.dtype; }
  int64_t numel() const;
  const uint8_t* data() const { return base_ ? base_ + header_.data_offset : nullptr; }
  size_t data_bytes() const { return header_.data_bytes; }
  // Access-pattern hints to the kernel (madvise): sequential for a scan, random for training batches.
  void advise_sequential() const;
  void advise_random() const;

 private:
  std::string path_;
  NpyHeader header_;
  const uint8_t* base_ = nullptr;  // the whole file
  size_t mapped_bytes_ = 0;
};

}  // namespace ds
