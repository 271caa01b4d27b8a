// safetensors reading/writing (see safetensors.h). Layout and validation rules follow the reference
// implementation, huggingface/safetensors safetensors/src/tensor.rs (prepare, read_metadata, validate).
#include "engine/formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/formats/atomic_file.h"

namespace ds {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100000000;  // the reference reader's MAX_HEADER_SIZE

// The reference writer's order within equal element sizes (its Dtype enum, compared descending).
int layout_rank(DType dtype) {
  switch (dtype) {
    case DType::F64: return 6;
    case DType::I64: return 5;
    case DType::F32: return 4;
    case DType::I32: return 3;
    case DType::F16: return 2;
    case DType::U8: return 1;
  }
  return 0;
}

bool parse_dtype(const std::string& name, DType* dtype) {
  static const std::pair<const char*, DType> kNames[] = {{"U8", DType::U8},   {"F16", DType::F16},
                                                          {"F32", DType::F32}, {"F64", DType::F64},
                                                          {"I32", DType::I32}, {"I64", DType::I64}};
  for (const auto& [text, value] : kNames) {
    if (name == text) {
      *dtype = value;
      return true;
    }
  }
  return false;
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::U8: return "U8";
    case DType::F16: return "F16";
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}

int64_t SafeTensor::numel() const { return product(shape); }

std::vector<float> SafeTensor::to_float() const {
  NpyArray view;
  view.shape = shape;
  view.dtype = dtype;
  view.data = data;
  return view.to_float();
}

void SafeTensorsFile::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                          const void* data) {
  SafeTensor tensor;
  tensor.dtype = dtype;
  tensor.shape = shape;
  const size_t bytes = static_cast<size_t>(product(shape)) * dtype_size(dtype);
  const uint8_t* begin = static_cast<const uint8_t*>(data);
  tensor.data.assign(begin, begin + bytes);
  tensors[name] = std::move(tensor);
}

void SafeTensorsFile::add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data) {
  add(name, DType::F32, shape, data);
}

const SafeTensor& SafeTensorsFile::get(const std::string& name, DType dtype,
                                       const std::vector<int64_t>& shape) const {
  auto shape_text = [](const std::vector<int64_t>& s) {
    std::string text = "[";
    for (size_t i = 0; i < s.size(); ++i) text += (i ? ", " : "") + std::to_string(s[i]);
    return text + "]";
  };
  const auto found = tensors.find(name);
  if (found == tensors.end()) throw std::runtime_error("tensor '" + name + "' is missing");
  const SafeTensor& tensor = found->second;
  if (tensor.dtype != dtype) {
    throw std::runtime_error("tensor '" + name + "' is " + safetensors_dtype_name(tensor.dtype) + ", expected " +
                             safetensors_dtype_name(dtype));
  }
  if (tensor.shape != shape) {
    throw std::runtime_error("tensor '" + name + "' has shape " + shape_text(tensor.shape) + ", expected " +
                             shape_text(shape));
  }
  return tensor;
}

std::vector<uint8_t> encode_safetensors(const SafeTensorsFile& file) {
  std::vector<const std::pair<const std::string, SafeTensor>*> order;
  for (const auto& entry : file.tensors) {
    const SafeTensor& t = entry.second;
    if (t.data.size() != static_cast<size_t>(t.numel()) * dtype_size(t.dtype)) {
      throw std::runtime_error("tensor '" + entry.first + "': data size does not match its shape and dtype");
    }
    order.push_back(&entry);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    const int ra = layout_rank(a->second.dtype), rb = layout_rank(b->second.dtype);
    if (ra != rb) return ra > rb;
    return a->first < b->first;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) {
    nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
    for (const auto& [key, value] : file.metadata) metadata[key] = value;
    header["__metadata__"] = metadata;
  }
  uint64_t offset = 0;
  for (const auto* entry : order) {
    const SafeTensor& t = entry->second;
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    info["dtype"] = safetensors_dtype_name(t.dtype);
    info["shape"] = t.shape;
    info["data_offsets"] = {offset, offset + t.data.size()};
    header[entry->first] = info;
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  for (const auto* entry : order) out.insert(out.end(), entry->second.data.begin(), entry->second.data.end());
  return out;
}

void write_safetensors(const std::string& path, const SafeTensorsFile& file) {
  write_bytes_atomic(path, encode_safetensors(file));
}

SafeTensorsFile decode_safetensors(const std::vector<uint8_t>& bytes, const std::string& name) {
  auto fail = [&](const std::string& why) -> void {
    throw std::runtime_error("'" + name + "' is not a valid safetensors file: " + why);
  };
  if (bytes.size() < 8) fail("shorter than the 8-byte header length (" + std::to_string(bytes.size()) + " bytes)");
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  if (header_len > kMaxHeaderBytes) fail("header length " + std::to_string(header_len) + " exceeds 100 MB");
  if (8 + header_len > bytes.size()) {
    fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
         std::to_string(bytes.size()) + " bytes): truncated?");
  }
  const std::string text(bytes.begin() + 8, bytes.begin() + 8 + static_cast<size_t>(header_len));
  if (text.empty() || text[0] != '{') fail("header does not start with '{'");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail("header is not a JSON object");

  const uint64_t data_len = bytes.size() - 8 - header_len;
  const uint8_t* data = bytes.data() + 8 + header_len;
  SafeTensorsFile file;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail("__metadata__ is not an object");
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) fail("__metadata__ value '" + mkey + "' is not a string");
        file.metadata[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "': ";
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets")) {
      fail(where + "expected an object with dtype, shape and data_offsets");
    }
    SafeTensor tensor;
    if (!value["dtype"].is_string() || !parse_dtype(value["dtype"].get<std::string>(), &tensor.dtype)) {
      fail(where + "unsupported dtype " + value["dtype"].dump() + " (expected U8, F16, F32, F64, I32 or I64)");
    }
    const auto& shape = value["shape"];
    if (!shape.is_array()) fail(where + "shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) fail(where + "shape has a non-integer or negative entry");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 8 / dim) fail(where + "shape overflows");
      numel *= dim;
      tensor.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      fail(where + "data_offsets must be two non-negative integers");
    }
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_len) {
      fail(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
           "] outside the data area of " + std::to_string(data_len) + " bytes" +
           (end > data_len ? " (file truncated?)" : ""));
    }
    const uint64_t expected = numel * dtype_size(tensor.dtype);
    if (end - begin != expected) {
      fail(where + "data_offsets span " + std::to_string(end - begin) + " bytes, but dtype and shape need " +
           std::to_string(expected));
    }
    tensor.data.assign(data + begin, data + end);
    spans.push_back({begin, end, key});
    file.tensors[key] = std::move(tensor);
  }
  // Like the reference validate(): sorted by offsets, each tensor starts where the previous ended and
  // the last ends at the end of the file, so no byte is shared or unaccounted for.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Span& span : spans) {
    if (span.begin != cursor) {
      fail("tensor '" + span.name + "' starts at " + std::to_string(span.begin) + " but the previous one ends at " +
           std::to_string(cursor) + (span.begin < cursor ? " (overlap)" : " (gap)"));
    }
    cursor = span.end;
  }
  if (cursor != data_len) {
    fail("tensors cover " + std::to_string(cursor) + " bytes of a " + std::to_string(data_len) +
         "-byte data area (truncated or trailing bytes)");
  }
  return file;
}

SafeTensorsFile read_safetensors(const std::string& path) { return decode_safetensors(read_file_bytes(path), path); }

}  // namespace ds
