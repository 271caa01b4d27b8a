// NumPy .npy reading/writing and float <-> half conversion (see npy.h). Format spec:
// numpy/lib/format.py (magic "\x93NUMPY", version, header length, Python-literal dict, 64-byte aligned).
#include "engine/formats/npy.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "engine/formats/atomic_file.h"

namespace ds {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::U8: return 1;
    case DType::F16: return 2;
    case DType::F32: return 4;
    case DType::I32: return 4;
    case DType::F64: return 8;
    case DType::I64: return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::U8: return "uint8";
    case DType::F16: return "float16";
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
  }
  return "?";
}

// ---- half precision ----------------------------------------------------------------------------

uint16_t float_to_half(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t exponent = (bits >> 23) & 0xFFu;
  const uint32_t mantissa = bits & 0x7FFFFFu;
  if (exponent == 0xFF) {
    if (mantissa == 0) return sign | 0x7C00u;  // inf
    // NaN: keep the top payload bits; a payload living only in the low bits must not become inf.
    uint16_t payload = static_cast<uint16_t>(mantissa >> 13);
    if (payload == 0) payload = 0x200;
    return sign | 0x7C00u | payload;
  }
  // Unbiased exponent; half normals cover [-14, 15].
  const int e = static_cast<int>(exponent) - 127;
  if (e > 15) return sign | 0x7C00u;  // too large even before rounding
  if (e >= -14) {
    // Normal half: 10 of 23 mantissa bits survive; round the other 13 to nearest even.
    uint32_t half = (static_cast<uint32_t>(e + 15) << 10) | (mantissa >> 13);
    const uint32_t rest = mantissa & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // a carry into the exponent is right,
    return static_cast<uint16_t>(sign | half);                      // up to 0x7C00 = inf on overflow
  }
  // Subnormal half (value = m * 2^-24) or zero. Shift the full significand (implicit 1 included)
  // so that one unit is 2^-24, rounding the shifted-out bits to nearest even.
  if (e < -25) return sign;  // below half the smallest subnormal: rounds to zero
  const uint32_t significand = mantissa | 0x800000u;  // value = significand * 2^(e-23)
  const int shift = -e - 1;                             // 2^(e-23) / 2^-24 = 2^(e+1): shift right by -(e+1)
  uint32_t half = significand >> shift;
  const uint32_t rest = significand & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (half & 1u))) ++half;  // may round up into the smallest normal
  return static_cast<uint16_t>(sign | half);
}

float half_to_float(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1Fu;
  uint32_t mantissa = half & 0x3FFu;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal half: normalise it; every one is a float normal.
    int e = -14;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    mantissa &= 0x3FFu;
    bits = sign | (static_cast<uint32_t>(e + 127) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

// ---- NpyArray ----------------------------------------------------------------------------------

int64_t NpyArray::numel() const {
  int64_t n = 1;
  // A lying header's shape can overflow int64 (found by fuzz_npy under UBSan): an error, not UB.
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) throw std::runtime_error("npy: the shape's element count overflows 64 bits");
  return n;
}

namespace {
template <class T>
bool dtype_matches(DType dtype);
template <> bool dtype_matches<uint8_t>(DType d) { return d == DType::U8; }
template <> bool dtype_matches<uint16_t>(DType d) { return d == DType::F16; }
template <> bool dtype_matches<float>(DType d) { return d == DType::F32; }
template <> bool dtype_matches<double>(DType d) { return d == DType::F64; }
template <> bool dtype_matches<int32_t>(DType d) { return d == DType::I32; }
template <> bool dtype_matches<int64_t>(DType d) { return d == DType::I64; }
}  // namespace

template <class T>
const T* NpyArray::as() const {
  if (!dtype_matches<T>(dtype)) throw std::runtime_error(std::string("array holds ") + dtype_name(dtype));
  return reinterpret_cast<const T*>(data.data());
}
template <class T>
T* NpyArray::as() {
  if (!dtype_matches<T>(dtype)) throw std::runtime_error(std::string("array holds ") + dtype_name(dtype));
  return reinterpret_cast<T*>(data.data());
}
#define DS_NPY_INSTANTIATE(T) \
  template const T* NpyArray::as<T>() const; \
  template T* NpyArray::as<T>();
DS_NPY_INSTANTIATE(uint8_t)
DS_NPY_INSTANTIATE(uint16_t)
DS_NPY_INSTANTIATE(float)
DS_NPY_INSTANTIATE(double)
DS_NPY_INSTANTIATE(int32_t)
DS_NPY_INSTANTIATE(int64_t)
#undef DS_NPY_INSTANTIATE

std::vector<float> NpyArray::to_float() const {
  const int64_t n = numel();
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::U8: out[i] = static_cast<float>(data[i]); break;
      case DType::F16: out[i] = half_to_float(as<uint16_t>()[i]); break;
      case DType::F32: out[i] = as<float>()[i]; break;
      case DType::F64: out[i] = static_cast<float>(as<double>()[i]); break;
      case DType::I32: out[i] = static_cast<float>(as<int32_t>()[i]); break;
      case DType::I64: out[i] = static_cast<float>(as<int64_t>()[i]); break;
    }
  }
  return out;
}

// ---- the header --------------------------------------------------------------------------------

namespace {

const char kMagic[] = "\x93NUMPY";

const char* descr_of(DType dtype) {
  switch (dtype) {
    case DType::U8: return "|u1";
    case DType::F16: return "<f2";
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::I32: return "<i4";
    case DType::I64: return "<i8";
  }
  return "?";
}

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw std::runtime_error("'" + path + "' is not a readable .npy file: " + why);
}

// The header is a Python dict literal as written by numpy's repr; this reads exactly that subset.
struct HeaderParser {
  const std::string& text;
  const std::string& path;
  size_t pos = 0;

  void skip_space() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n')) ++pos;
  }
  bool accept(char c) {
    skip_space();
    if (pos < text.size() && text[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) fail(path, std::string("malformed header (expected '") + c + "'): " + text);
  }
  std::string string_literal() {
    skip_space();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"')) fail(path, "malformed header: " + text);
    const char quote = text[pos++];
    const size_t end = text.find(quote, pos);
    if (end == std::string::npos) fail(path, "malformed header: " + text);
    std::string value = text.substr(pos, end - pos);
    pos = end + 1;
    return value;
  }
  std::string word() {
    skip_space();
    const size_t start = pos;
    while (pos < text.size() && (std::isalnum(static_cast<unsigned char>(text[pos])) || text[pos] == '_')) ++pos;
    return text.substr(start, pos - start);
  }
};

DType parse_descr(const std::string& descr, const std::string& path) {
  if (descr == "|u1" || descr == "<u1" || descr == ">u1" || descr == "u1") return DType::U8;
  if (descr == "<f2") return DType::F16;
  if (descr == "<f4") return DType::F32;
  if (descr == "<f8") return DType::F64;
  if (descr == "<i4") return DType::I32;
  if (descr == "<i8") return DType::I64;
  fail(path, "unsupported dtype '" + descr +
                 "' (expected little-endian uint8 '|u1', float16 '<f2', float32 '<f4', float64 '<f8', int32 "
                 "'<i4' or int64 '<i8')");
}

}  // namespace

NpyHeader parse_npy_header(const uint8_t* bytes, size_t file_size, const std::string& path) {
  if (file_size < 10 || std::memcmp(bytes, kMagic, 6) != 0) {
    fail(path, "bad magic (expected a file starting with \\x93NUMPY)");
  }
  const int major = bytes[6];
  size_t header_len, header_start;
  if (major == 1) {
    header_len = bytes[8] | (static_cast<size_t>(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (file_size < 12) fail(path, "truncated header");
    header_len = bytes[8] | (static_cast<size_t>(bytes[9]) << 8) | (static_cast<size_t>(bytes[10]) << 16) |
                 (static_cast<size_t>(bytes[11]) << 24);
    header_start = 12;
  } else {
    fail(path, "unsupported format version " + std::to_string(major) + "." + std::to_string(bytes[7]) +
                   " (expected 1.0, 2.0 or 3.0)");
  }
  if (header_start + header_len > file_size) fail(path, "truncated header");
  const std::string header(bytes + header_start, bytes + header_start + header_len);

  NpyHeader result;
  bool have_descr = false, have_order = false, have_shape = false;
  HeaderParser p{header, path};
  p.expect('{');
  while (!p.accept('}')) {
    const std::string key = p.string_literal();
    p.expect(':');
    if (key == "descr") {
      p.skip_space();
      if (p.pos < header.size() && header[p.pos] == '[') fail(path, "structured dtypes are not supported");
      result.dtype = parse_descr(p.string_literal(), path);
      have_descr = true;
    } else if (key == "fortran_order") {
      const std::string value = p.word();
      if (value == "True") {
        fail(path, "fortran_order is True; only C-order arrays are supported (save with np.ascontiguousarray)");
      }
      if (value != "False") fail(path, "malformed fortran_order in header: " + header);
      have_order = true;
    } else if (key == "shape") {
      p.expect('(');
      while (!p.accept(')')) {
        const std::string digits = p.word();
        if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
          fail(path, "malformed shape in header: " + header);
        }
        // At most 18 digits: stoll cannot overflow, and the product is checked below.
        if (digits.size() > 18) fail(path, "dimension " + digits + " in header is absurdly large");
        result.shape.push_back(std::stoll(digits));
        if (!p.accept(',')) {
          p.expect(')');
          break;
        }
      }
      have_shape = true;
    } else {
      fail(path, "unexpected key '" + key + "' in header");
    }
    if (!p.accept(',')) {
      p.expect('}');
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape) {
    fail(path, "header lacks descr, fortran_order or shape: " + header);
  }

  result.data_offset = header_start + header_len;
  const size_t present = file_size - result.data_offset;
  // The header's shape is checked against the bytes present before anything is sized by it, and
  // multiplied without overflow (a lying header must give this message, not a wrapped product).
  const bool empty = std::find(result.shape.begin(), result.shape.end(), int64_t{0}) != result.shape.end();
  uint64_t expected = empty ? 0 : dtype_size(result.dtype);
  for (int64_t d : result.shape) {
    if (empty) break;
    const uint64_t dim = static_cast<uint64_t>(d);
    if (dim != 0 && expected > present / dim) {
      std::string shape;
      for (size_t i = 0; i < result.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(result.shape[i]);
      fail(path, "truncated data: shape (" + shape + ") of " + dtype_name(result.dtype) + " needs more than the " +
                     std::to_string(present) + " bytes the file has");
    }
    expected *= dim;
  }
  if (present < expected) {
    fail(path, "truncated data: shape needs " + std::to_string(expected) + " bytes of " +
                   dtype_name(result.dtype) + ", file has " + std::to_string(present));
  }
  if (present > expected) {
    fail(path, std::to_string(present - expected) + " unexpected bytes after the " + std::to_string(expected) +
                   " bytes of data");
  }
  result.data_bytes = expected;
  return result;
}

NpyArray read_npy(const std::string& path) { return decode_npy(read_file_bytes(path), path); }

NpyArray decode_npy(const std::vector<uint8_t>& bytes, const std::string& path) {
  const NpyHeader header = parse_npy_header(bytes.data(), bytes.size(), path);
  NpyArray array;
  array.shape = header.shape;
  array.dtype = header.dtype;
  array.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header.data_offset), bytes.end());
  return array;
}

namespace {

// The 1.0 header ("\x93NUMPY", version, length, dict, spaces, '\n') of shape, at least min_bytes long:
// numpy pads with spaces so the data starts at a multiple of 64 bytes, and more spaces are as valid
// (NpyRowWriter's room for the final count).
std::vector<uint8_t> npy_header(DType dtype, const std::vector<int64_t>& shape, size_t min_bytes) {
  std::string dict = std::string("{'descr': '") + descr_of(dtype) + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) throw std::runtime_error("encode_npy: negative dimension");
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
  }
  dict += "), }";
  const size_t unpadded = 10 + dict.size() + 1;
  size_t total = unpadded + (64 - unpadded % 64) % 64;
  if (total < min_bytes) total = min_bytes;
  dict.append(total - unpadded, ' ');
  dict += '\n';
  if (dict.size() > 65535) throw std::runtime_error("encode_npy: header too long for format 1.0");
  std::vector<uint8_t> out(10 + dict.size());
  std::memcpy(out.data(), kMagic, 6);
  out[6] = 1;  // format 1.0
  out[7] = 0;
  out[8] = static_cast<uint8_t>(dict.size() & 0xFF);
  out[9] = static_cast<uint8_t>(dict.size() >> 8);
  std::memcpy(out.data() + 10, dict.data(), dict.size());
  return out;
}

}  // namespace

std::vector<uint8_t> encode_npy(DType dtype, const std::vector<int64_t>& shape, const void* data) {
  std::vector<uint8_t> out = npy_header(dtype, shape, 0);
  int64_t numel = 1;
  for (const int64_t d : shape) numel *= d;
  const size_t data_bytes = static_cast<size_t>(numel) * dtype_size(dtype);
  const size_t header_bytes = out.size();
  // Filled by memcpy into a presized buffer (vector::insert of chars trips a GCC 12 false positive).
  out.resize(header_bytes + data_bytes);
  if (data_bytes > 0) std::memcpy(out.data() + header_bytes, data, data_bytes);
  return out;
}

void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data) {
  write_bytes_atomic(path, encode_npy(dtype, shape, data));
}

void write_npy(const std::string& path, const NpyArray& array) {
  if (array.data.size() != static_cast<size_t>(array.numel()) * dtype_size(array.dtype)) {
    throw std::runtime_error("write_npy '" + path + "': data size does not match shape and dtype");
  }
  write_npy(path, array.dtype, array.shape, array.data.data());
}

NpyRowWriter::NpyRowWriter(const std::string& path, DType dtype, const std::vector<int64_t>& row_shape)
    : file_(path), dtype_(dtype), row_shape_(row_shape) {
  int64_t numel = 1;
  for (const int64_t d : row_shape) {
    if (d < 0) throw std::runtime_error("NpyRowWriter '" + path + "': negative dimension");
    numel *= d;
  }
  row_bytes_ = static_cast<size_t>(numel) * dtype_size(dtype);
  // The largest count a header can be patched to: its room is that header's size.
  std::vector<int64_t> widest{std::numeric_limits<int64_t>::max()};
  widest.insert(widest.end(), row_shape.begin(), row_shape.end());
  std::vector<int64_t> none{0};
  none.insert(none.end(), row_shape.begin(), row_shape.end());
  const std::vector<uint8_t> room = npy_header(dtype, widest, 0);
  header_bytes_ = room.size();
  const std::vector<uint8_t> header = npy_header(dtype, none, header_bytes_);
  file_.write(header.data(), header.size());
}

void NpyRowWriter::append(const void* rows, int64_t n_rows) {
  if (n_rows <= 0) return;
  file_.write(rows, static_cast<size_t>(n_rows) * row_bytes_);
  rows_ += n_rows;
}

void NpyRowWriter::sync() {
  std::vector<int64_t> shape{rows_};
  shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
  const std::vector<uint8_t> header = npy_header(dtype_, shape, header_bytes_);
  if (header.size() != header_bytes_) throw std::runtime_error("NpyRowWriter '" + file_.path() + "': header grew");
  file_.write_at(0, header.data(), header.size());
  file_.sync();
  synced_rows_ = rows_;
}

void NpyRowWriter::commit() {
  if (synced_rows_ != rows_) sync();
  file_.commit();
}

}  // namespace ds
