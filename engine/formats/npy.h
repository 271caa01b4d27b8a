// NumPy .npy files (write version 1.0, read 1.0/2.0/3.0; C order; u1/f2/f4/f8/i4/i8 little-endian),
// the element types shared with safetensors, and exact float <-> IEEE half conversion.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/formats/atomic_file.h"

namespace ds {

enum class DType { U8, F16, F32, F64, I32, I64 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "uint8", "float16", ... (for messages)

// IEEE 754 binary16 bits <-> float. float_to_half rounds to nearest, ties to even; overflow gives inf;
// NaN stays NaN (sign and top payload bits kept). half_to_float is exact for every half.
uint16_t float_to_half(float value);
float half_to_float(uint16_t half);

// An array as stored: shape (C order), element type, and the raw little-endian bytes.
struct NpyArray {
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  std::vector<uint8_t> data;

  int64_t numel() const;
  // Typed view of data; throws if T does not match dtype (uint16_t is the view for F16).
  template <class T>
  const T* as() const;
  template <class T>
  T* as();
  // Every element converted to float (F16 exactly, integers and F64 rounded).
  std::vector<float> to_float() const;
};

// Throws std::runtime_error naming path and what was expected: missing file, bad magic, unsupported
// version/dtype, fortran_order, truncated data.
NpyArray read_npy(const std::string& path);
// The same checks on bytes already in memory; name_for_errors stands for the path in messages.
NpyArray decode_npy(const std::vector<uint8_t>& bytes, const std::string& name_for_errors);

// What an .npy header says, checked against the file's size: data_bytes = numel · dtype_size follow
// the header at data_offset, exactly (read_npy's and MappedNpy's one parser). bytes: the file's
// first file_size bytes (at least the whole header). Throws as read_npy.
struct NpyHeader {
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  size_t data_offset = 0, data_bytes = 0;
};
NpyHeader parse_npy_header(const uint8_t* bytes, size_t file_size, const std::string& path);

// Writes format 1.0 atomically; data holds numel(shape) elements of dtype.
void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data);
void write_npy(const std::string& path, const NpyArray& array);
std::vector<uint8_t> encode_npy(DType dtype, const std::vector<int64_t>& shape, const void* data);

// An .npy of rows written as they are made (a dataset larger than memory): the header is written
// first with room for any row count (padded with spaces, as numpy pads), rows are appended, and
// commit() patches the final count into the header and publishes the file atomically (see
// AtomicFileWriter: destroyed without commit(), nothing is left behind). Shape: (rows, row_shape...).
class NpyRowWriter {
 public:
  NpyRowWriter(const std::string& path, DType dtype, const std::vector<int64_t>& row_shape);
  // n_rows rows of numel(row_shape) elements of dtype each.
  void append(const void* rows, int64_t n_rows);
  int64_t rows() const { return rows_; }
  // Patches the header with the row count and flushes + fsyncs (AtomicFileWriter::sync: a full disk
  // fails here); commit() then only renames. Appending after sync() is allowed (sync again).
  void sync();
  void commit();

 private:
  AtomicFileWriter file_;
  DType dtype_;
  std::vector<int64_t> row_shape_;
  size_t row_bytes_ = 0, header_bytes_ = 0;
  int64_t rows_ = 0;
  int64_t synced_rows_ = -1;  // rows_ at the last sync() (its header says so)
};

}  // namespace ds
