// The tests' own TFRecord + protobuf wire-format reader (its own bitwise CRC32C and varint decoder,
// sharing nothing with engine/formats/tensorboard.cpp): used by the TensorBoard unit and e2e tests to read
// written files back (Event, Summary.Value with simple_value, Image, Audio, HistogramProto and a text
// TensorProto), and fuzzed by tests/fuzz/fuzz_tfrecord.cpp. Throws std::runtime_error on bad input.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
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

// ---- Event / Summary decoding. Field numbers from tensorboard/compat/proto/{event,summary,histogram,
// tensor,tensor_shape}.proto, written out here independently of the writer; each field's wire type is
// checked, so a wrongly typed field is an error rather than garbage.
struct ImageValue {
  int64_t height = 0, width = 0, colorspace = 0;
  std::string encoded;
};
struct AudioValue {
  float sample_rate = 0;
  int64_t num_channels = 0, length_frames = 0;
  std::string encoded, content_type;
};
struct HistogramValue {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;
};
struct TensorValue {
  int64_t dtype = 0;
  bool has_shape = false;
  std::vector<int64_t> dims;
  std::vector<std::string> string_val;
};
enum class ValueKind { None, Simple, Image, Histogram, Audio, Tensor };
struct SummaryValue {
  std::string tag;
  ValueKind kind = ValueKind::None;
  float simple_value = 0;
  ImageValue image;
  AudioValue audio;
  HistogramValue histogram;
  TensorValue tensor;
  bool has_metadata = false;
  std::string plugin_name, plugin_content;
};
struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  bool has_summary = false;
  std::vector<SummaryValue> values;
  bool has_session_log = false;
  int64_t session_status = 0;  // SessionLog.status: 1 START, 2 STOP, 3 CHECKPOINT
};

inline void expect_wire(const ProtoField& f, uint32_t wire, const char* what) {
  if (f.wire_type != wire)
    throw std::runtime_error(std::string(what) + ": field " + std::to_string(f.number) + " has wire type " +
                             std::to_string(f.wire_type) + ", expected " + std::to_string(wire));
}
inline double as_double(const ProtoField& f) {
  double d;
  std::memcpy(&d, &f.scalar, 8);
  return d;
}
inline float as_float(const ProtoField& f) {
  const auto bits = static_cast<uint32_t>(f.scalar);
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}
// A repeated double: packed (length-delimited, 8 bytes each) or one fixed64 per element.
inline void append_doubles(std::vector<double>& out, const ProtoField& f, const char* what) {
  if (f.wire_type == 1) {
    out.push_back(as_double(f));
    return;
  }
  expect_wire(f, 2, what);
  if (f.bytes.size() % 8 != 0) throw std::runtime_error(std::string(what) + ": packed doubles not a multiple of 8 bytes");
  for (size_t at = 0; at < f.bytes.size(); at += 8) {
    const uint64_t bits = load_little_endian(f.bytes, at, 8);
    double d;
    std::memcpy(&d, &bits, 8);
    out.push_back(d);
  }
}

inline ImageValue decode_image(const std::string& bytes) {
  ImageValue v;
  for (const ProtoField& f : read_proto_fields(bytes)) {
    if (f.number >= 1 && f.number <= 3) {
      expect_wire(f, 0, "Summary.Image");
      (f.number == 1 ? v.height : f.number == 2 ? v.width : v.colorspace) = static_cast<int64_t>(f.scalar);
    } else if (f.number == 4) {
      expect_wire(f, 2, "Summary.Image");
      v.encoded = f.bytes;
    } else {
      throw std::runtime_error("Summary.Image: unexpected field " + std::to_string(f.number));
    }
  }
  return v;
}

inline AudioValue decode_audio(const std::string& bytes) {
  AudioValue v;
  for (const ProtoField& f : read_proto_fields(bytes)) {
    if (f.number == 1) {
      expect_wire(f, 5, "Summary.Audio");
      v.sample_rate = as_float(f);
    } else if (f.number == 2 || f.number == 3) {
      expect_wire(f, 0, "Summary.Audio");
      (f.number == 2 ? v.num_channels : v.length_frames) = static_cast<int64_t>(f.scalar);
    } else if (f.number == 4 || f.number == 5) {
      expect_wire(f, 2, "Summary.Audio");
      (f.number == 4 ? v.encoded : v.content_type) = f.bytes;
    } else {
      throw std::runtime_error("Summary.Audio: unexpected field " + std::to_string(f.number));
    }
  }
  return v;
}

inline HistogramValue decode_histogram(const std::string& bytes) {
  HistogramValue v;
  for (const ProtoField& f : read_proto_fields(bytes)) {
    if (f.number >= 1 && f.number <= 5) {
      expect_wire(f, 1, "HistogramProto");
      double* slot[] = {&v.min, &v.max, &v.num, &v.sum, &v.sum_squares};
      *slot[f.number - 1] = as_double(f);
    } else if (f.number == 6) {
      append_doubles(v.bucket_limit, f, "HistogramProto.bucket_limit");
    } else if (f.number == 7) {
      append_doubles(v.bucket, f, "HistogramProto.bucket");
    } else {
      throw std::runtime_error("HistogramProto: unexpected field " + std::to_string(f.number));
    }
  }
  return v;
}

inline TensorValue decode_tensor(const std::string& bytes) {
  TensorValue v;
  for (const ProtoField& f : read_proto_fields(bytes)) {
    if (f.number == 1) {
      expect_wire(f, 0, "TensorProto.dtype");
      v.dtype = static_cast<int64_t>(f.scalar);
    } else if (f.number == 2) {
      expect_wire(f, 2, "TensorProto.tensor_shape");
      v.has_shape = true;
      for (const ProtoField& d : read_proto_fields(f.bytes)) {
        if (d.number != 2) throw std::runtime_error("TensorShapeProto: unexpected field " + std::to_string(d.number));
        expect_wire(d, 2, "TensorShapeProto.dim");
        int64_t size = 0;
        for (const ProtoField& s : read_proto_fields(d.bytes)) {
          if (s.number == 1) {
            expect_wire(s, 0, "TensorShapeProto.Dim.size");
            size = static_cast<int64_t>(s.scalar);
          }
        }
        v.dims.push_back(size);
      }
    } else if (f.number == 8) {
      expect_wire(f, 2, "TensorProto.string_val");
      v.string_val.push_back(f.bytes);
    } else {
      throw std::runtime_error("TensorProto: unexpected field " + std::to_string(f.number));
    }
  }
  return v;
}

inline SummaryValue decode_summary_value(const std::string& bytes) {
  SummaryValue v;
  auto set_kind = [&](ValueKind k) {
    if (v.kind != ValueKind::None) throw std::runtime_error("Summary.Value: two members of the value oneof");
    v.kind = k;
  };
  for (const ProtoField& f : read_proto_fields(bytes)) {
    switch (f.number) {
      case 1: expect_wire(f, 2, "Summary.Value.tag"); v.tag = f.bytes; break;
      case 2: expect_wire(f, 5, "Summary.Value.simple_value"); set_kind(ValueKind::Simple); v.simple_value = as_float(f); break;
      case 4: expect_wire(f, 2, "Summary.Value.image"); set_kind(ValueKind::Image); v.image = decode_image(f.bytes); break;
      case 5: expect_wire(f, 2, "Summary.Value.histo"); set_kind(ValueKind::Histogram); v.histogram = decode_histogram(f.bytes); break;
      case 6: expect_wire(f, 2, "Summary.Value.audio"); set_kind(ValueKind::Audio); v.audio = decode_audio(f.bytes); break;
      case 8: expect_wire(f, 2, "Summary.Value.tensor"); set_kind(ValueKind::Tensor); v.tensor = decode_tensor(f.bytes); break;
      case 9:
        expect_wire(f, 2, "Summary.Value.metadata");
        v.has_metadata = true;
        for (const ProtoField& m : read_proto_fields(f.bytes)) {
          if (m.number != 1) continue;  // display_name, summary_description, data_class: not used here
          expect_wire(m, 2, "SummaryMetadata.plugin_data");
          for (const ProtoField& p : read_proto_fields(m.bytes)) {
            expect_wire(p, 2, "PluginData");
            if (p.number == 1) v.plugin_name = p.bytes;
            else if (p.number == 2) v.plugin_content = p.bytes;
          }
        }
        break;
      default: throw std::runtime_error("Summary.Value: unexpected field " + std::to_string(f.number));
    }
  }
  return v;
}

inline Event decode_summary_event(const std::string& bytes) {
  Event e;
  for (const ProtoField& f : read_proto_fields(bytes)) {
    if (f.number == 1) {
      expect_wire(f, 1, "Event.wall_time");
      e.wall_time = as_double(f);
    } else if (f.number == 2) {
      expect_wire(f, 0, "Event.step");
      e.step = static_cast<int64_t>(f.scalar);
    } else if (f.number == 3) {
      expect_wire(f, 2, "Event.file_version");
      e.file_version = f.bytes;
    } else if (f.number == 5) {
      expect_wire(f, 2, "Event.summary");
      e.has_summary = true;
      for (const ProtoField& sf : read_proto_fields(f.bytes)) {
        if (sf.number != 1) throw std::runtime_error("Summary: unexpected field " + std::to_string(sf.number));
        expect_wire(sf, 2, "Summary.value");
        e.values.push_back(decode_summary_value(sf.bytes));
      }
    } else if (f.number == 7) {  // SessionLog { SessionStatus status = 1; string checkpoint_path = 2; string msg = 3; }
      expect_wire(f, 2, "Event.session_log");
      e.has_session_log = true;
      for (const ProtoField& sf : read_proto_fields(f.bytes)) {
        if (sf.number != 1) throw std::runtime_error("SessionLog: unexpected field " + std::to_string(sf.number));
        expect_wire(sf, 0, "SessionLog.status");
        e.session_status = static_cast<int64_t>(sf.scalar);
      }
    } else {
      throw std::runtime_error("Event: unexpected field " + std::to_string(f.number));
    }
  }
  return e;
}

inline std::vector<Event> read_event_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<Event> events;
  for (const std::string& record : read_tfrecords(file)) events.push_back(decode_summary_event(record));
  return events;
}

}  // namespace ds::test::tfrecord
