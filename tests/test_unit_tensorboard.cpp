// Unit tests of the TensorBoard event writer: CRC32C known answers, and written files read back by an
// independent minimal TFRecord + protobuf reader (its own bitwise CRC32C, its own wire-format decoder).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/formats/tensorboard.h"
#include "tests/test_util.h"
#include "tests/tfrecord_reader.h"

namespace fs = std::filesystem;
using namespace ds;

namespace {

using ds::test::fresh_dir;
using namespace ds::test::tfrecord;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct ScalarValue {
  std::string tag;
  float simple_value = 0;
};

// The Event fields this writer uses (event.proto / summary.proto field numbers), with the wire type
// each must have checked, so a wrongly typed field fails instead of decoding as garbage.
struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  bool has_summary = false;
  std::vector<ScalarValue> values;
};

DecodedEvent decode_event(const std::string& bytes) {
  DecodedEvent event;
  for (const ProtoField& field : read_proto_fields(bytes)) {
    if (field.number == 1) {
      REQUIRE(field.wire_type == 1);
      std::memcpy(&event.wall_time, &field.scalar, 8);
    } else if (field.number == 2) {
      REQUIRE(field.wire_type == 0);
      event.step = static_cast<int64_t>(field.scalar);
    } else if (field.number == 3) {
      REQUIRE(field.wire_type == 2);
      event.file_version = field.bytes;
    } else if (field.number == 5) {
      REQUIRE(field.wire_type == 2);
      event.has_summary = true;
      for (const ProtoField& summary_field : read_proto_fields(field.bytes)) {
        REQUIRE(summary_field.number == 1);
        REQUIRE(summary_field.wire_type == 2);
        ScalarValue value;
        bool has_simple_value = false;
        for (const ProtoField& value_field : read_proto_fields(summary_field.bytes)) {
          if (value_field.number == 1) {
            REQUIRE(value_field.wire_type == 2);
            value.tag = value_field.bytes;
          } else {
            REQUIRE(value_field.number == 2);
            REQUIRE(value_field.wire_type == 5);
            const auto bits = static_cast<uint32_t>(value_field.scalar);
            std::memcpy(&value.simple_value, &bits, 4);
            has_simple_value = true;
          }
        }
        REQUIRE(has_simple_value);
        event.values.push_back(value);
      }
    } else {
      FAIL("unexpected Event field " << field.number);
    }
  }
  return event;
}

std::vector<std::string> event_files_in(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path().string());
  return files;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("unit tensorboard crc32c known answers") {
  // The standard check value of CRC-32C (e.g. the "check" column of the CRC RevEng catalogue).
  const std::string digits = "123456789";
  CHECK(crc32c(digits.data(), digits.size()) == 0xE3069283u);
  CHECK(crc32c(nullptr, 0) == 0u);

  // RFC 3720 (iSCSI) appendix B.4; the RFC lists the CRC's bytes in transmission (little-endian) order.
  std::string zeros(32, '\0'), ones(32, '\xff'), up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  CHECK(crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);
  CHECK(crc32c(ones.data(), ones.size()) == 0x62A8AB43u);
  CHECK(crc32c(up.data(), up.size()) == 0x46DD794Eu);
  CHECK(crc32c(down.data(), down.size()) == 0x113FDB5Cu);

  // The test's bitwise reference agrees on the same answers, so the file checks below rest on it.
  CHECK(crc32c_bitwise(digits) == 0xE3069283u);
  CHECK(crc32c_bitwise(zeros) == 0x8A9136AAu);
}

TEST_CASE("unit tensorboard crc32c matches the bitwise definition and extends across calls") {
  std::mt19937 rng(7);
  for (size_t size : {1u, 3u, 17u, 255u, 1000u}) {
    std::string bytes(size, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    CHECK(crc32c(bytes.data(), bytes.size()) == crc32c_bitwise(bytes));
    const size_t split = size / 3;
    const uint32_t head = crc32c(bytes.data(), split);
    CHECK(crc32c(bytes.data() + split, size - split, head) == crc32c_bitwise(bytes));
  }
}

TEST_CASE("unit tensorboard crc mask") {
  // By hand: 0x12345678 rotated right by 15 is 0xACF02468; plus 0xA282EAD8 wraps to 0x4F730F40.
  CHECK(mask_crc32c(0x12345678u) == 0x4F730F40u);
  CHECK(mask_crc32c(0u) == 0xA282EAD8u);
}

TEST_CASE("unit tensorboard written file reads back: framing, both crcs, file_version, scalars") {
  const std::string dir = fresh_dir("tensorboard/readback");
  const double before = unix_time_now();
  TensorBoardWriter writer(dir);

  const std::string name = fs::path(writer.path()).filename().string();
  CHECK(fs::path(writer.path()).parent_path() == fs::path(dir));
  CHECK(name.rfind("events.out.tfevents.", 0) == 0);
  CHECK(name.size() > std::strlen(".darkstar"));
  CHECK(name.substr(name.size() - std::strlen(".darkstar")) == ".darkstar");
  // <unix seconds> is the creation time.
  const long long seconds = std::stoll(name.substr(std::strlen("events.out.tfevents.")));
  CHECK(seconds >= static_cast<long long>(before) - 1);
  CHECK(seconds <= static_cast<long long>(unix_time_now()) + 1);

  // Awkward values on purpose: step 0 and value 0 (proto3 defaults), a negative step (10-byte varint),
  // a step past 2^32, a subnormal, infinity, a tag with a slash (TensorBoard's grouping) and UTF-8.
  struct Expected {
    std::string tag;
    float value;
    int64_t step;
    double wall_time;
  };
  const std::vector<Expected> expected = {
      {"Loss_D", 1.3862944f, 0, 1700000000.25},
      {"Loss_G", 0.0f, 1, 1700000001.5},
      {"D(x)", -0.75f, -3, 1700000002.125},
      {"train/images_per_s", 1.0e-40f, int64_t{1} << 40, 1700000003.0},
      {"ü/∞", std::numeric_limits<float>::infinity(), std::numeric_limits<int64_t>::max(), 1.0e-3},
  };
  for (size_t i = 0; i < 2; ++i) {
    writer.add_scalar(expected[i].tag, expected[i].value, expected[i].step, expected[i].wall_time);
  }
  writer.flush();
  // flush() must make the scalars visible to a reader while the writer is still open.
  CHECK(read_tfrecords(read_all(writer.path())).size() == 3);
  for (size_t i = 2; i < expected.size(); ++i) {
    writer.add_scalar(expected[i].tag, expected[i].value, expected[i].step, expected[i].wall_time);
  }
  writer.add_scalar("now", 2.5f, 7);  // default wall_time: the current time
  writer.flush();

  const std::vector<std::string> records = read_tfrecords(read_all(writer.path()));
  REQUIRE(records.size() == 1 + expected.size() + 1);

  const DecodedEvent first = decode_event(records[0]);
  CHECK(first.file_version == "brain.Event:2");
  CHECK_FALSE(first.has_summary);
  CHECK(first.step == 0);
  CHECK(first.wall_time >= before);
  CHECK(first.wall_time <= unix_time_now());

  for (size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    const DecodedEvent event = decode_event(records[1 + i]);
    CHECK(event.file_version.empty());
    CHECK(event.has_summary);
    CHECK(event.step == expected[i].step);
    CHECK(event.wall_time == expected[i].wall_time);  // a double stored as its 8 bytes: exact
    REQUIRE(event.values.size() == 1);
    CHECK(event.values[0].tag == expected[i].tag);
    CHECK(same_bits(event.values[0].simple_value, expected[i].value));
  }
  const DecodedEvent last = decode_event(records.back());
  REQUIRE(last.values.size() == 1);
  CHECK(last.values[0].tag == "now");
  CHECK(last.values[0].simple_value == 2.5f);
  CHECK(last.step == 7);
  CHECK(last.wall_time >= first.wall_time);
  CHECK(last.wall_time <= unix_time_now());
}

TEST_CASE("unit tensorboard the test reader rejects a corrupted file") {
  // Without this, a reader that skipped its CRC checks would pass the test above just the same.
  const std::string dir = fresh_dir("tensorboard/corrupt");
  std::string path;
  {
    TensorBoardWriter writer(dir);
    writer.add_scalar("Loss_D", 0.5f, 3, 1700000000.0);
    writer.flush();
    path = writer.path();
  }
  const std::string good = read_all(path);
  REQUIRE(read_tfrecords(good).size() == 2);
  std::string bad_data = good;
  bad_data[good.size() - 6] ^= 0x01;  // inside the last record's float
  CHECK_THROWS_WITH(read_tfrecords(bad_data), "bad data crc");
  std::string bad_data_crc = good;
  bad_data_crc[good.size() - 1] ^= 0x01;  // the last record's stored data crc itself
  CHECK_THROWS_WITH(read_tfrecords(bad_data_crc), "bad data crc");
  std::string bad_header = good;
  const size_t second_record = read_tfrecords(good)[0].size() + 16;
  bad_header[second_record + 8] ^= 0x01;  // the masked crc of the second record's length
  CHECK_THROWS_WITH(read_tfrecords(bad_header), "bad length crc");
}

TEST_CASE("unit tensorboard matches TensorBoard's own record bytes") {
  // Made once with tensorboard 2.21.0 (PyPI), which has its own protobuf and TFRecord writer:
  //   from tensorboard.compat.proto import event_pb2, summary_pb2
  //   from tensorboard.summary.writer.record_writer import RecordWriter
  //   e = event_pb2.Event(wall_time=1700000000.5, step=42, summary=summary_pb2.Summary(
  //       value=[summary_pb2.Summary.Value(tag="Loss_D", simple_value=0.6931472)]))
  //   RecordWriter(f).write(e.SerializeToString())
  const unsigned char tensorboard_record[] = {
      0x1c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc8, 0xc1, 0x95, 0x1d,  // length 28, masked crc of it
      0x09, 0x00, 0x00, 0x20, 0x40, 0xfc, 0x54, 0xd9, 0x41,  // wall_time 1700000000.5
      0x10, 0x2a,                                            // step 42
      0x2a, 0x0f, 0x0a, 0x0d, 0x0a,                          // summary (15 bytes), value (13), tag key
      0x06, 0x4c, 0x6f, 0x73, 0x73, 0x5f, 0x44, 0x15, 0x18, 0x72, 0x31, 0x3f,  // "Loss_D", simple_value
      0x1b, 0x83, 0x97, 0x22};  // masked crc of data
  const std::string expected(reinterpret_cast<const char*>(tensorboard_record), sizeof tensorboard_record);
  const std::string dir = fresh_dir("tensorboard/bytes");
  TensorBoardWriter writer(dir);
  writer.add_scalar("Loss_D", 0.6931472f, 42, 1700000000.5);
  writer.flush();
  const std::string file = read_all(writer.path());
  REQUIRE(file.size() > expected.size());
  CHECK(file.substr(file.size() - expected.size()) == expected);
}

TEST_CASE("unit tensorboard a resume's SessionLog START matches TensorBoard's own bytes") {
  // Made with tensorboard 2.21.0 (PyPI):
  //   event_pb2.Event(wall_time=1700000000.5, step=1501,
  //                   session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)).SerializeToString()
  const unsigned char tensorboard_event[] = {0x09, 0x00, 0x00, 0x20, 0x40, 0xfc, 0x54, 0xd9, 0x41,  // wall_time
                                             0x10, 0xdd, 0x0b,                                      // step 1501
                                             0x3a, 0x02, 0x08, 0x01};  // session_log (2 bytes): status START
  const std::string expected(reinterpret_cast<const char*>(tensorboard_event), sizeof tensorboard_event);
  CHECK(encode_session_start_event(1501, 1700000000.5) == expected);
  // And through the writer: the last record's payload is that event.
  const std::string dir = fresh_dir("tensorboard/session_start");
  TensorBoardWriter writer(dir);
  writer.add_session_start(1501, 1700000000.5);
  writer.flush();
  const std::string file = read_all(writer.path());
  REQUIRE(file.size() > expected.size() + 4);
  CHECK(file.substr(file.size() - 4 - expected.size(), expected.size()) == expected);
}

TEST_CASE("unit tensorboard two writers in the same folder get separate files") {
  const std::string dir = fresh_dir("tensorboard/two");
  TensorBoardWriter first(dir);
  TensorBoardWriter second(dir);
  CHECK(first.path() != second.path());
  first.add_scalar("a", 1.0f, 1, 1.0);
  second.add_scalar("b", 2.0f, 1, 1.0);
  first.flush();
  second.flush();
  CHECK(event_files_in(dir).size() == 2);
  CHECK(decode_event(read_tfrecords(read_all(first.path())).at(1)).values.at(0).tag == "a");
  CHECK(decode_event(read_tfrecords(read_all(second.path())).at(1)).values.at(0).tag == "b");
}

TEST_CASE("unit tensorboard creates the run folder and names the file on failure") {
  const std::string dir = fresh_dir("tensorboard/errors");
  TensorBoardWriter nested(dir + "/run/logs");
  CHECK(fs::exists(nested.path()));

  // A regular file where the run folder should be: fails for root too, unlike a permission test.
  const std::string blocker = dir + "/not_a_folder";
  std::ofstream(blocker) << "x";
  try {
    TensorBoardWriter writer(blocker);
    FAIL("expected std::runtime_error");
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    CHECK(message.find(blocker + "/events.out.tfevents.") != std::string::npos);
  }
}
