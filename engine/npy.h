// NumPy .npy files (write version 1.0, read 1.0/2.0/3.0; C order; u1/f2/f4/f8/i4/i8 little-endian),
// the element types shared with safetensors, and exact float <-> IEEE half conversion.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

// Writes format 1.0 atomically; data holds numel(shape) elements of dtype.
void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data);
void write_npy(const std::string& path, const NpyArray& array);
std::vector<uint8_t> encode_npy(DType dtype, const std::vector<int64_t>& shape, const void* data);

}  // namespace ds
