// libFuzzer: the TensorBoard event-file reader of the tests (tests/tfrecord_reader.h: TFRecord framing,
// CRCs, protobuf wire format, nested messages decoded as the tests do); std::runtime_error is the only
// accepted failure.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "tests/tfrecord_reader.h"

namespace {
// Every length-delimited field tried as a nested message, as Event -> Summary -> Value are read.
void walk(const std::string& bytes, int depth) {
  if (depth > 4) return;
  for (const auto& field : ds::test::tfrecord::read_proto_fields(bytes)) {
    if (field.wire_type == 2) {
      try {
        walk(field.bytes, depth + 1);
      } catch (const std::runtime_error&) {
      }
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file(reinterpret_cast<const char*>(data), size);
  try {
    for (const std::string& record : ds::test::tfrecord::read_tfrecords(file)) {
      walk(record, 0);
      try {
        ds::test::tfrecord::decode_summary_event(record);  // the typed Event/Summary decoder the tests use
      } catch (const std::runtime_error&) {
      }
    }
  } catch (const std::runtime_error&) {
  }
  // Records are CRC-checked, so also walk the raw bytes as one event: the protobuf decoder gets fuzzed
  // without the fuzzer having to forge CRCs first.
  try {
    walk(file, 0);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
