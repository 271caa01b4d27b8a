// safetensors files (Hugging Face's format: u64 LE header length, JSON header, raw little-endian data):
// a writer laid out as the reference writer does and a reader that validates every offset and size.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/formats/npy.h"  // DType

namespace ds {

struct SafeTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // numel(shape) * dtype_size(dtype) bytes, little-endian

  int64_t numel() const;
  std::vector<float> to_float() const;  // F16 exactly, others converted
};

struct SafeTensorsFile {
  std::map<std::string, SafeTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__": string -> string only

  // Convenience for writers; data is copied.
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data);
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data);
  // Throws std::runtime_error naming the tensor if it is absent, has another dtype or another shape.
  const SafeTensor& get(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const;
};

// safetensors dtype strings: "U8" "F16" "F32" "F64" "I32" "I64".
const char* safetensors_dtype_name(DType dtype);

// Tensors laid out as the reference writer (huggingface/safetensors, tensor.rs `prepare`) does:
// by element size descending, then by name; "__metadata__" first in the header; header padded with
// spaces to a multiple of 8 bytes.
std::vector<uint8_t> encode_safetensors(const SafeTensorsFile& file);
void write_safetensors(const std::string& path, const SafeTensorsFile& file);  // atomic

// Validates: header length within the file and under 100 MB, JSON object, known dtypes, non-negative
// shapes, data_offsets in range with end - begin == numel * dtype size, tensors tiling the data area
// exactly (no overlap, no gap, nothing after the last one), metadata values strings. Any violation
// throws std::runtime_error naming path (and the tensor, where there is one).
SafeTensorsFile read_safetensors(const std::string& path);
SafeTensorsFile decode_safetensors(const std::vector<uint8_t>& bytes, const std::string& name_for_errors);

}  // namespace ds
