// The tests' own TFRecord + protobuf wire-format reader (its own bitwise CRC32C and varint decoder,
// sharing nothing with engine/formats/tensorboard.cpp): used by the TensorBoard unit tests to read written
// files back, and fuzzed by tests/fuzz/fuzz_tfrecord.cpp. Throws std::runtime_error on bad input.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ds::test::tfrecord {

// Bit at a time, straight from the definition (reflected Castagnoli polynomial), so it shares nothing
// with the table-driven code under test.
inline uint32_t crc32c_bitwise(const std::string& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : bytes) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return crc ^ 0xFFFFFFFFu;
}

inline uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

inline uint64_t load_little_endian(const std::string& bytes, size_t at, int size) {
  uint64_t value = 0;
  for (int i = 0; i < size; ++i) value |= uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
  return value;
}

// TFRecord: uint64 length, uint32 masked crc of the length, data, uint32 masked crc of the data.
inline std::vector<std::string> read_tfrecords(const std::string& file) {
  std::vector<std::string> records;
  size_t at = 0;
  while (at < file.size()) {
    if (file.size() - at < 12) throw std::runtime_error("truncated record header");
    const std::string length_bytes = file.substr(at, 8);
    const uint64_t length = load_little_endian(file, at, 8);
    if (load_little_endian(file, at + 8, 4) != masked(crc32c_bitwise(length_bytes))) {
      throw std::runtime_error("bad length crc");
    }
    at += 12;
    // Written so a huge length cannot wrap around (length + 4 would, and pass the check).
    if (length > file.size() - at || file.size() - at - length < 4) throw std::runtime_error("truncated record data");
    const std::string data = file.substr(at, length);
    if (load_little_endian(file, at + length, 4) != masked(crc32c_bitwise(data))) {
      throw std::runtime_error("bad data crc");
    }
    at += length + 4;
    records.push_back(data);
  }
  return records;
}

struct ProtoField {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  uint64_t scalar = 0;  // varint, fixed64 or fixed32 payload
  std::string bytes;    // length-delimited payload
};

inline uint64_t read_varint(const std::string& bytes, size_t& at) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (at >= bytes.size()) throw std::runtime_error("truncated varint");
    const auto byte = static_cast<unsigned char>(bytes[at++]);
    value |= uint64_t{byte & 0x7Fu} << shift;
    if (!(byte & 0x80)) return value;
  }
  throw std::runtime_error("varint longer than 10 bytes");
}

inline std::vector<ProtoField> read_proto_fields(const std::string& bytes) {
  std::vector<ProtoField> fields;
  size_t at = 0;
  while (at < bytes.size()) {
    const uint64_t key = read_varint(bytes, at);
    ProtoField field;
    field.number = static_cast<uint32_t>(key >> 3);
    field.wire_type = static_cast<uint32_t>(key & 7);
    if (field.wire_type == 0) {
      field.scalar = read_varint(bytes, at);
    } else if (field.wire_type == 1 || field.wire_type == 5) {
      const int size = field.wire_type == 1 ? 8 : 4;
      if (bytes.size() - at < static_cast<size_t>(size)) throw std::runtime_error("truncated fixed field");
      field.scalar = load_little_endian(bytes, at, size);
      at += size;
    } else if (field.wire_type == 2) {
      const uint64_t length = read_varint(bytes, at);
      if (bytes.size() - at < length) throw std::runtime_error("truncated length-delimited field");
      field.bytes = bytes.substr(at, length);
      at += length;
    } else {
      throw std::runtime_error("unexpected wire type " + std::to_string(field.wire_type));
    }
    fields.push_back(field);
  }
  return fields;
}

}  // namespace ds::test::tfrecord
