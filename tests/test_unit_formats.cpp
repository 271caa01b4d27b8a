// Unit tests of the file formats and dataset preparation: .npy, float16, safetensors, atomic writes,
// PNG grids, prepare-images (Fashion-MNIST IDX and a generated folder) and load_image_dataset.
#include <doctest/doctest.h>
#include <stb_image.h>
#include <stb_image_write.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/formats/atomic_file.h"
#include "engine/data/image_dataset.h"
#include "engine/formats/npy.h"
#include "engine/formats/png.h"
#include "engine/formats/safetensors.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;

namespace {

using ds::test::contains;
using ds::test::error_of;
using ds::test::fresh_dir;

std::string fixture(const std::string& name) { return std::string(DS_SOURCE_DIR) + "/tests/fixtures/" + name; }

void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

// ---- float16 -----------------------------------------------------------------------------------

TEST_CASE("unit npy float16 conversion is exact for every half and rounds to nearest even") {
  int checked = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    const uint32_t exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
    // The value by definition (IEEE 754 binary16), computed independently with ldexp.
    double expected;
    if (exponent == 0x1F) expected = mantissa ? NAN : INFINITY;
    else if (exponent == 0) expected = std::ldexp(static_cast<double>(mantissa), -24);
    else expected = std::ldexp(1.0 + mantissa / 1024.0, static_cast<int>(exponent) - 15);
    if (h & 0x8000) expected = -expected;
    if (std::isnan(expected)) {
      REQUIRE(std::isnan(f));
    } else {
      REQUIRE(static_cast<double>(f) == expected);
      REQUIRE(std::signbit(f) == ((h & 0x8000) != 0));  // -0 stays -0
    }
    // Back to the same bits: NaN payloads included, so signalling NaNs do not collapse.
    REQUIRE(float_to_half(f) == h);
    ++checked;
  }
  CHECK(checked == 65536);

  // Every midpoint between neighbouring positive finite halves (exact in float: 12 significant bits)
  // goes to the even neighbour; one float ulp either side goes to the nearer one.
  for (uint16_t a = 0; a < 0x7BFF; ++a) {
    const uint16_t b = a + 1;
    const float mid = (half_to_float(a) + half_to_float(b)) / 2;  // exact
    const uint16_t even = (a & 1) ? b : a;
    REQUIRE(float_to_half(mid) == even);
    REQUIRE(float_to_half(-mid) == (even | 0x8000));
    REQUIRE(float_to_half(std::nextafter(mid, 0.0f)) == a);
    REQUIRE(float_to_half(std::nextafter(mid, INFINITY)) == b);
  }
  // Beyond the largest half: the tie at 65520 rounds (to even) to inf, just below it to 65504.
  CHECK(float_to_half(65520.0f) == 0x7C00);
  CHECK(float_to_half(std::nextafter(65520.0f, 0.0f)) == 0x7BFF);
  CHECK(float_to_half(1e10f) == 0x7C00);
  CHECK(float_to_half(-1e10f) == 0xFC00);
  CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);                          // tie to even: 0
  CHECK(float_to_half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);    // above the tie
  CHECK(float_to_half(std::ldexp(1.0f, -40)) == 0x0000);
  CHECK(float_to_half(-std::ldexp(1.0f, -40)) == 0x8000);
  CHECK(float_to_half(bits_float(0x7F800001u)) == 0x7E00);  // payload only in low bits: still NaN, not inf
  CHECK(std::isnan(half_to_float(float_to_half(bits_float(0x7F800001u)))));

#ifdef __FLT16_MANT_DIG__
  // The compiler's own float -> _Float16 conversion (libgcc, correctly rounded) on random float bits.
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000000; ++i) {
    const float f = bits_float(rng());
    if (std::isnan(f)) continue;
    const _Float16 reference = static_cast<_Float16>(f);
    uint16_t reference_bits;
    std::memcpy(&reference_bits, &reference, 2);
    REQUIRE(float_to_half(f) == reference_bits);
  }
#endif
}

// ---- npy ---------------------------------------------------------------------------------------

TEST_CASE("unit npy round trip of every dtype and awkward shapes") {
  const std::string dir = fresh_dir("formats/npy_round_trip");
  std::mt19937 rng(7);
  const std::vector<std::vector<int64_t>> shapes = {{2, 3, 5}, {7}, {}, {0, 4}, {1, 1, 3, 2}};
  for (DType dtype : {DType::U8, DType::F16, DType::F32, DType::F64, DType::I32, DType::I64}) {
    for (const auto& shape : shapes) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      std::vector<uint8_t> data(static_cast<size_t>(n) * dtype_size(dtype));
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      const std::string path = dir + "/a_" + dtype_name(dtype) + "_" + std::to_string(shape.size()) + ".npy";
      write_npy(path, dtype, shape, data.data());
      const NpyArray back = read_npy(path);
      CHECK(back.dtype == dtype);
      CHECK(back.shape == shape);
      CHECK(back.data == data);
      // numpy aligns the data to 64 bytes; a 1.0 header length lives in bytes 8..9.
      const std::vector<uint8_t> raw = read_file_bytes(path);
      CHECK((10 + (raw[8] | raw[9] << 8)) % 64 == 0);
      CHECK(raw[6] == 1);
    }
  }
  CHECK_FALSE(fs::exists(dir + "/a_uint8_3.npy.tmp." + std::to_string(getpid())));

  // Typed access and conversion.
  const std::vector<float> values = {1.5f, -2.25f, 3.0f};
  write_npy(dir + "/f.npy", DType::F32, {3}, values.data());
  NpyArray f = read_npy(dir + "/f.npy");
  CHECK(f.as<float>()[1] == -2.25f);
  CHECK(contains(error_of([&] { f.as<int32_t>(); }), "float32"));
  CHECK(f.to_float() == values);
}

TEST_CASE("unit npy reads numpy's float16 file byte for byte") {
  // The float32 inputs tests/make_format_fixtures.py gave numpy (its F16_SOURCES), as hex literals.
  const float sources[24] = {0x0p+0f, -0x0p+0f, 0x1p+0f, -0x1.8p+1f, 0x1.ffcp+15f, 0x1.ffdp+15f,
                             0x1.ffep+15f, 0x1p+16f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 0x1.8p-24f,
                             0x1p-26f, 0x1.ff8p-15f, 0x1p-14f, 0x1.002p+0f, 0x1.006p+0f, 0x1.0061p+0f,
                             0x1.99999ap-4f, 0x1.555556p-2f, -0x1.a36e2ep-16f, INFINITY, -INFINITY, NAN};
  const NpyArray array = read_npy(fixture("tiny_f16.npy"));
  REQUIRE(array.dtype == DType::F16);
  REQUIRE(array.shape == std::vector<int64_t>{4, 6});
  const uint16_t* halves = array.as<uint16_t>();
  for (int i = 0; i < 24; ++i) {
    INFO("source " << i << " = " << sources[i]);
    CHECK(float_to_half(sources[i]) == halves[i]);  // numpy's rounding, NaN bits included (0x7E00)
  }
  CHECK(halves[6] == 0x7C00);  // the tie above 65504 went to inf in numpy too: the fixture is not trivial
  CHECK(halves[9] == 0x0000);
  // Our writer produces exactly numpy's bytes for the same array.
  CHECK(encode_npy(DType::F16, {4, 6}, halves) == read_file_bytes(fixture("tiny_f16.npy")));
}

TEST_CASE("unit npy rejects missing, corrupt and unsupported files naming them") {
  const std::string dir = fresh_dir("formats/npy_bad");
  CHECK(contains(error_of([&] { read_npy(dir + "/missing.npy"); }), dir + "/missing.npy"));

  write_raw(dir + "/magic.npy", {'N', 'O', 'T', 'N', 'P', 'Y', 1, 0, 0, 0, 0, 0});
  std::string message = error_of([&] { read_npy(dir + "/magic.npy"); });
  CHECK(contains(message, "magic.npy"));
  CHECK(contains(message, "bad magic"));

  const std::vector<float> values(10, 1.0f);
  write_npy(dir + "/good.npy", DType::F32, {10}, values.data());
  std::vector<uint8_t> bytes = read_file_bytes(dir + "/good.npy");
  bytes.resize(bytes.size() - 3);
  write_raw(dir + "/short.npy", bytes);
  message = error_of([&] { read_npy(dir + "/short.npy"); });
  CHECK(contains(message, "short.npy"));
  CHECK(contains(message, "truncated data"));

  // Hand-made headers: other versions, fortran order, other dtypes.
  auto make = [&](const std::string& name, int major, const std::string& dict, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
    const size_t len = dict.size();
    out.push_back(len & 0xFF);
    out.push_back((len >> 8) & 0xFF);
    if (major >= 2) {
      out.push_back((len >> 16) & 0xFF);
      out.push_back((len >> 24) & 0xFF);
    }
    out.insert(out.end(), dict.begin(), dict.end());
    out.insert(out.end(), data.begin(), data.end());
    write_raw(dir + "/" + name, out);
    return dir + "/" + name;
  };
  const std::vector<uint8_t> four = {1, 2, 3, 4};
  NpyArray v2 = read_npy(make("v2.npy", 2, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }\n", four));
  CHECK(v2.shape == std::vector<int64_t>{2, 2});
  CHECK(v2.data == four);
  NpyArray v3 = read_npy(make("v3.npy", 3, "{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (1,)}\n", four));
  CHECK(v3.as<int32_t>()[0] == 0x04030201);
  message = error_of([&] { read_npy(make("v9.npy", 9, "{}", {})); });
  CHECK(contains(message, "version 9"));
  message = error_of(
      [&] { read_npy(make("fortran.npy", 1, "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2), }\n", four)); });
  CHECK(contains(message, "fortran.npy"));
  CHECK(contains(message, "fortran_order"));
  message = error_of([&] { read_npy(make("c8.npy", 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (), }\n", four)); });
  CHECK(contains(message, "c8.npy"));
  CHECK(contains(message, "unsupported dtype '<c8'"));
  message = error_of([&] { read_npy(make("be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n", four)); });
  CHECK(contains(message, "'>f4'"));
  message = error_of([&] { read_npy(make("extra.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n", four)); });
  CHECK(contains(message, "unexpected bytes"));
}

// ---- safetensors -------------------------------------------------------------------------------

TEST_CASE("unit safetensors round trip, reference layout, metadata") {
  const std::string dir = fresh_dir("formats/safetensors_round_trip");
  SafeTensorsFile file;
  const std::vector<float> weight = {0.5f, -1.25f, 3.0f, 1e-30f, -0.0f, 7.0f};
  const int64_t count = 123456789012345;
  const std::vector<uint16_t> halves = {0x3C00, 0x0001, 0x7C00};
  const std::vector<uint8_t> bytes = {0, 255, 17};
  const std::vector<int32_t> ints = {-5, 6};
  const std::vector<double> doubles = {M_PI};
  file.add_f32("main.0.weight", {2, 3}, weight.data());
  file.add("main.1.num_batches_tracked", DType::I64, {}, &count);
  file.add("a.half", DType::F16, {3}, halves.data());
  file.add("z.bytes", DType::U8, {3, 1}, bytes.data());
  file.add("ints", DType::I32, {2}, ints.data());
  file.add("double", DType::F64, {1}, doubles.data());
  file.add("empty", DType::F32, {0, 5}, nullptr);
  file.metadata["config"] = "{\"nz\": 100}";
  file.metadata["step"] = "42";
  const std::string path = dir + "/t.safetensors";
  write_safetensors(path, file);

  const SafeTensorsFile back = read_safetensors(path);
  CHECK(back.metadata == file.metadata);
  REQUIRE(back.tensors.size() == file.tensors.size());
  for (const auto& [name, tensor] : file.tensors) {
    INFO(name);
    const SafeTensor& other = back.tensors.at(name);
    CHECK(other.dtype == tensor.dtype);
    CHECK(other.shape == tensor.shape);
    CHECK(other.data == tensor.data);
  }
  CHECK(back.get("main.1.num_batches_tracked", DType::I64, {}).numel() == 1);
  CHECK(contains(error_of([&] { back.get("main.0.weight", DType::F32, {3, 2}); }), "shape [2, 3], expected [3, 2]"));
  CHECK(contains(error_of([&] { back.get("main.0.weight", DType::F16, {2, 3}); }), "is F32, expected F16"));
  CHECK(contains(error_of([&] { back.get("nope", DType::F32, {}); }), "'nope' is missing"));

  // Layout as the reference writer: header length a multiple of 8, "__metadata__" first, data ordered by
  // element size (F64, I64, F32, I32, F16, U8) and then by name.
  const std::vector<uint8_t> raw = read_file_bytes(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(raw[i]) << (8 * i);
  CHECK(n % 8 == 0);
  const std::string header(raw.begin() + 8, raw.begin() + 8 + n);
  CHECK(header.rfind("{\"__metadata__\":", 0) == 0);
  const nlohmann::json json = nlohmann::json::parse(header);
  const std::vector<std::string> expected_order = {"double",  "main.1.num_batches_tracked", "empty", "main.0.weight",
                                                   "ints",    "a.half",                     "z.bytes"};
  uint64_t previous = 0;
  for (const std::string& name : expected_order) {
    INFO(name);
    const uint64_t begin = json[name]["data_offsets"][0];
    CHECK(begin == previous);
    previous = json[name]["data_offsets"][1];
  }
  CHECK(8 + n + previous == raw.size());
}

TEST_CASE("unit safetensors reads a file written by an independent writer") {
  // tests/make_format_fixtures.py: Python's default JSON spacing, tensors in name order.
  const SafeTensorsFile file = read_safetensors(fixture("tiny.safetensors"));
  CHECK(file.metadata.at("format") == "pt");
  CHECK(file.tensors.size() == 8);
  const SafeTensor& weight = file.get("main.0.weight", DType::F32, {2, 3});
  const std::vector<float> expected = {-0.625f, -0.375f, -0.125f, 0.125f, 0.375f, 0.625f};
  CHECK(weight.to_float() == expected);
  const SafeTensor& tracked = file.get("main.1.num_batches_tracked", DType::I64, {});
  int64_t seven;
  std::memcpy(&seven, tracked.data.data(), 8);
  CHECK(seven == 7);
  const SafeTensor& big = file.get("big", DType::I64, {2});
  int64_t bigs[2];
  std::memcpy(bigs, big.data.data(), 16);
  CHECK(bigs[0] == -(int64_t(1) << 40));
  CHECK(bigs[1] == (int64_t(1) << 40) + 3);
  const std::vector<float> halves = {1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24)};
  CHECK(file.get("half", DType::F16, {4}).to_float() == halves);
  CHECK(file.get("bytes", DType::U8, {2, 2}).data == std::vector<uint8_t>{0, 255, 128, 7});
  int32_t ints[3];
  std::memcpy(ints, file.get("ints", DType::I32, {3}).data.data(), 12);
  CHECK(ints[0] == INT32_MIN);
  CHECK(ints[1] == INT32_MAX);
  double pi;
  std::memcpy(&pi, file.get("double", DType::F64, {1}).data.data(), 8);
  CHECK(pi == M_PI);
  CHECK(file.get("empty", DType::F32, {0, 3}).data.empty());
}

TEST_CASE("unit safetensors rejects corrupt files naming them") {
  const std::string dir = fresh_dir("formats/safetensors_bad");
  auto make = [&](const std::string& name, std::string header, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(uint64_t(header.size()) >> (8 * i));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data.begin(), data.end());
    write_raw(dir + "/" + name, out);
    return dir + "/" + name;
  };
  const std::vector<uint8_t> eight(8, 1);
  auto rejects = [&](const std::string& name, const std::string& header, const std::vector<uint8_t>& data,
                     const std::string& why) {
    const std::string message = error_of([&] { read_safetensors(make(name, header, data)); });
    INFO(name << ": " << message);
    CHECK(contains(message, dir + "/" + name));
    CHECK(contains(message, why));
  };
  // The valid base case, to show the rejections below come from the one thing changed.
  CHECK(read_safetensors(make("ok.safetensors", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight))
            .tensors.size() == 1);
  rejects("size.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight, "need 12");
  rejects("range.safetensors", R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}})", eight, "outside");
  rejects("reversed.safetensors", R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}})", eight, "outside");
  rejects("overlap.safetensors",
          R"({"a":{"dtype":"U8","shape":[6],"data_offsets":[0,6]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
          eight, "overlap");
  rejects("gap.safetensors",
          R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
          eight, "gap");
  rejects("trailing.safetensors", R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", eight, "trailing");
  rejects("dtype.safetensors", R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", eight, "unsupported dtype");
  rejects("json.safetensors", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", eight, "not valid JSON");
  rejects("start.safetensors", R"(["a"])", eight, "'{'");
  rejects("shape.safetensors", R"({"a":{"dtype":"U8","shape":[-8],"data_offsets":[0,8]}})", eight, "negative");
  rejects("meta.safetensors",
          R"({"__metadata__":{"k":3},"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", eight, "not a string");
  rejects("fields.safetensors", R"({"a":{"dtype":"U8","shape":[8]}})", eight, "data_offsets");

  // A real file cut short, and one whose header length points past the end.
  SafeTensorsFile file;
  const std::vector<float> values(16, 2.0f);
  file.add_f32("w", {4, 4}, values.data());
  write_safetensors(dir + "/full.safetensors", file);
  std::vector<uint8_t> raw = read_file_bytes(dir + "/full.safetensors");
  raw.pop_back();
  write_raw(dir + "/cut.safetensors", raw);
  std::string message = error_of([&] { read_safetensors(dir + "/cut.safetensors"); });
  CHECK(contains(message, "cut.safetensors"));
  CHECK(contains(message, "truncated"));
  raw.resize(20);
  write_raw(dir + "/cut_header.safetensors", raw);
  message = error_of([&] { read_safetensors(dir + "/cut_header.safetensors"); });
  CHECK(contains(message, "cut_header.safetensors"));
  CHECK(contains(message, "past the end"));
  write_raw(dir + "/tiny.safetensors", {1, 2, 3});
  CHECK(contains(error_of([&] { read_safetensors(dir + "/tiny.safetensors"); }), "tiny.safetensors"));
  CHECK(contains(error_of([&] { read_safetensors(dir + "/none.safetensors"); }), "none.safetensors"));
}

// ---- atomic writes -----------------------------------------------------------------------------

TEST_CASE("unit atomic write replaces whole files and keeps the old one on failure") {
  const std::string dir = fresh_dir("formats/atomic");
  const std::string path = dir + "/state.txt";
  write_text_atomic(path, "first");
  write_text_atomic(path, "second version");
  CHECK(read_file_text(path) == "second version");
  // A writer that fails midway leaves the previous file as it was and no temp file behind.
  const std::string message = error_of([&] {
    write_file_atomic(path, [](FILE* f) {
      std::fputs("partial", f);
      throw std::runtime_error("disk on fire");
    });
  });
  CHECK(contains(message, path));
  CHECK(contains(message, "disk on fire"));
  CHECK(read_file_text(path) == "second version");
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir)) entries += entry.path().filename() == "state.txt" ? 1 : 100;
  CHECK(entries == 1);
  // A folder that does not exist: the error names the target.
  CHECK(contains(error_of([&] { write_text_atomic(dir + "/no/such/dir/x.txt", "x"); }), dir + "/no/such/dir/x.txt"));
  const std::vector<uint8_t> bytes = {0, 1, 2, 255};
  write_bytes_atomic(dir + "/b.bin", bytes);
  CHECK(read_file_bytes(dir + "/b.bin") == bytes);
}

// ---- PNG grids ---------------------------------------------------------------------------------

TEST_CASE("unit png grid layout, pixel mapping and a lossless round trip") {
  const std::string dir = fresh_dir("formats/png");
  for (int channels : {1, 3}) {
    const int n = 10, h = 5, w = 3;
    std::vector<float> images(static_cast<size_t>(n) * channels * h * w);
    std::mt19937 rng(channels);
    std::uniform_real_distribution<float> uniform(-1.2f, 1.2f);  // beyond [-1, 1] to exercise clamping
    for (float& v : images) v = uniform(rng);
    images[0] = -1.0f;
    images[1] = 1.0f;
    images[2] = 0.0f;
    images[3] = NAN;
    int gh = 0, gw = 0;
    const std::vector<uint8_t> grid = make_image_grid(&gh, &gw, images.data(), n, channels, h, w, 8);
    CHECK(gw == 8 * (w + 2) + 2);  // 8 columns, then a second row of 2
    CHECK(gh == 2 * (h + 2) + 2);
    auto pixel = [&](int y, int x, int c) { return int(grid[(size_t(y) * gw + x) * channels + c]); };
    CHECK(pixel(2, 2, 0) == 0);      // -1
    CHECK(pixel(2, 3, 0) == 255);    // +1
    CHECK(pixel(2, 4, 0) == 128);    // 0 -> floor(127.5 + 0.5)
    CHECK(pixel(3, 2, 0) == 0);      // NaN -> black
    // Image 9 (second row, second column), channel c, pixel (y, x).
    for (int c = 0; c < channels; ++c) {
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          const float v = images[((9 * channels + c) * h + y) * w + x];
          const int expected = std::min(255, std::max(0, int(std::floor((v + 1) * 127.5f + 0.5f))));
          CHECK(pixel(2 + (h + 2) + y, 2 + (w + 2) + x, c) == expected);
        }
      }
    }
    // Padding and the empty cells after the last image stay black.
    long long padding_sum = 0;
    for (int x = 0; x < gw; ++x) padding_sum += pixel(0, x, 0) + pixel(1, x, 0) + pixel(h + 2, x, 0);
    for (int y = h + 4; y < gh; ++y) padding_sum += pixel(y, gw - 1, channels - 1);
    CHECK(padding_sum == 0);

    const std::string path = dir + "/grid" + std::to_string(channels) + ".png";
    write_png_grid(path, images.data(), n, channels, h, w);
    int dw = 0, dh = 0, dc = 0;
    uint8_t* decoded = stbi_load(path.c_str(), &dw, &dh, &dc, 0);
    REQUIRE(decoded != nullptr);
    CHECK(dw == gw);
    CHECK(dh == gh);
    CHECK(dc == channels);
    CHECK(std::memcmp(decoded, grid.data(), grid.size()) == 0);
    stbi_image_free(decoded);
  }
  CHECK(contains(error_of([&] {
                   float x = 0;
                   write_png_grid(dir + "/bad.png", &x, 1, 2, 1, 1);
                 }),
                 "1 or 3 channels"));
}

// ---- resampling --------------------------------------------------------------------------------

TEST_CASE("unit prepare-images resampling: exact area means down, bilinear up") {
  // Area averaging against an independent exact computation: split each source pixel into out×out
  // sub-pixels, so each output pixel is the plain mean of a whole block of sub-pixels.
  const int in_h = 13, in_w = 11, out_h = 5, out_w = 4;
  std::vector<float> in(in_h * in_w);
  std::mt19937 rng(5);
  for (float& v : in) v = static_cast<float>(rng() % 256);
  std::vector<float> out(out_h * out_w);
  resample_plane(out.data(), in.data(), in_h, in_w, out_h, out_w);
  for (int y = 0; y < out_h; ++y) {
    for (int x = 0; x < out_w; ++x) {
      double sum = 0;
      int count = 0;
      for (int sy = y * in_h; sy < (y + 1) * in_h; ++sy) {    // sub-rows of height 1/out_h source pixels
        for (int sx = x * in_w; sx < (x + 1) * in_w; ++sx) {  // sub-columns of width 1/out_w
          sum += in[(sy / out_h) * in_w + sx / out_w];
          ++count;
        }
      }
      // float sums of <= 4×4 taps of values <= 255 with weights rounded to float: error ~16·255·2^-24
      // ≈ 2.5e-4, so 1e-3 (a wrong tap or weight would be off by >= 0.1 here).
      CHECK(std::fabs(out[y * out_w + x] - sum / count) <= 1e-3);
    }
  }
  // Point sampling would give 0 or 255 here; area averaging gives the true mean.
  std::vector<float> checker(8 * 8), half(4 * 4);
  for (int i = 0; i < 64; ++i) checker[i] = ((i / 8 + i % 8) % 2) * 255.0f;
  resample_plane(half.data(), checker.data(), 8, 8, 4, 4);
  for (float v : half) CHECK(v == 127.5f);
  // Bilinear up (PyTorch's align_corners=False with edge clamping): 2 -> 4 gives 0, 2.5, 7.5, 10.
  const float two[2] = {0.0f, 10.0f};
  float four[4];
  resample_plane(four, two, 1, 2, 1, 4);
  CHECK(four[0] == 0.0f);
  CHECK(four[1] == 2.5f);
  CHECK(four[2] == 7.5f);
  CHECK(four[3] == 10.0f);
  // Equal sizes: the identity.
  std::vector<float> same(in.size());
  resample_plane(same.data(), in.data(), in_h, in_w, in_h, in_w);
  CHECK(same == in);
}

TEST_CASE("unit prepare-images dcgan sizes") {
  for (int good : {4, 8, 16, 32, 64, 128, 256, 512}) CHECK(is_dcgan_size(good));
  for (int bad : {-4, 0, 1, 2, 3, 12, 24, 48, 96, 100, 320}) CHECK_FALSE(is_dcgan_size(bad));
  const std::string message = error_of([] { check_dcgan_size(48, "--size"); });
  CHECK(contains(message, "--size 48"));
  CHECK(contains(message, "4·2^k"));
}

// ---- prepare-images on Fashion-MNIST -----------------------------------------------------------

TEST_CASE("unit prepare-images Fashion-MNIST IDX: 28x28 centred on zero padding, bytes unchanged") {
  const std::string idx = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
  REQUIRE_MESSAGE(fs::exists(idx), "install Debian's dataset-fashion-mnist");
  const std::string dir = fresh_dir("formats/idx");
  PrepareImagesOptions options;
  options.limit = 50;
  options.progress = false;
  const PrepareImagesResult result = prepare_images(idx, dir + "/out/fmnist.npy", 32, 32, 1, options);
  CHECK(result.count == 50);
  CHECK(result.skipped == 0);
  CHECK(result.sidecar_path == dir + "/out/fmnist.json");

  // The source bytes, read independently.
  gzFile gz = gzopen(idx.c_str(), "rb");
  REQUIRE(gz != nullptr);
  std::vector<uint8_t> source(16 + 50 * 28 * 28);
  REQUIRE(gzread(gz, source.data(), static_cast<unsigned>(source.size())) == int(source.size()));
  gzclose(gz);

  const NpyArray array = read_npy(dir + "/out/fmnist.npy");
  REQUIRE(array.dtype == DType::U8);
  REQUIRE(array.shape == std::vector<int64_t>{50, 1, 32, 32});
  int border_nonzero = 0, content_mismatch = 0;
  for (int i = 0; i < 50; ++i) {
    for (int y = 0; y < 32; ++y) {
      for (int x = 0; x < 32; ++x) {
        const uint8_t v = array.data[(i * 32 + y) * 32 + x];
        if (y < 2 || y >= 30 || x < 2 || x >= 30) {
          border_nonzero += v != 0;
        } else {
          content_mismatch += v != source[16 + (i * 28 + y - 2) * 28 + x - 2];
        }
      }
    }
  }
  CHECK(border_nonzero == 0);
  CHECK(content_mismatch == 0);

  const nlohmann::json sidecar = nlohmann::json::parse(read_file_text(result.sidecar_path));
  CHECK(sidecar["kind"] == "images");
  CHECK(sidecar["count"] == 50);
  CHECK(sidecar["channels"] == 1);
  CHECK(sidecar["height"] == 32);
  CHECK(sidecar["width"] == 32);
  CHECK(sidecar["normalisation"] == "x/127.5-1");
  CHECK(sidecar["source_format"] == "idx");
  CHECK(sidecar["skipped"].empty());
  CHECK(sidecar["pad_small"] == true);

  const ImageDataset dataset = load_image_dataset(dir + "/out/fmnist.npy");
  CHECK(dataset.count == 50);
  CHECK(dataset.channels == 1);
  CHECK(dataset.height == 32);
  // Memory-mapped: the rows are the file's bytes in place.
  REQUIRE(dataset.file->data_bytes() == array.data.size());
  CHECK(std::equal(array.data.begin(), array.data.end(), dataset.row(0)));
  CHECK(contains(dataset.sidecar_json, "\"kind\": \"images\""));
  std::vector<float> sample(32 * 32);
  dataset.sample_as_float(sample.data(), 3);
  CHECK(sample[0] == -1.0f);
  CHECK(sample[16 * 32 + 16] == doctest::Approx(array.data[3 * 1024 + 16 * 32 + 16] / 127.5 - 1.0));

  // Three channels from grey: replicated.
  options.limit = 2;
  prepare_images(idx, dir + "/rgb.npy", 32, 32, 3, options);
  const NpyArray rgb = read_npy(dir + "/rgb.npy");
  REQUIRE(rgb.shape == std::vector<int64_t>{2, 3, 32, 32});
  CHECK(std::memcmp(rgb.data.data(), rgb.data.data() + 1024, 1024) == 0);
  CHECK(std::memcmp(rgb.data.data(), array.data.data(), 1024) == 0);
}

// ---- prepare-images on a folder ----------------------------------------------------------------

TEST_CASE("unit prepare-images folder: crop, composite, antialias, skip bad files") {
  const std::string dir = fresh_dir("formats/folder");
  const std::string in = dir + "/photos";
  fs::create_directories(in + "/sub");
  auto png = [&](const std::string& name, int w, int h, int c, const std::vector<uint8_t>& px) {
    REQUIRE(stbi_write_png((in + "/" + name).c_str(), w, h, c, px.data(), w * c));
  };
  // Grey, wide 96×48: left and right quarters differ from the centre square, which the crop keeps.
  std::vector<uint8_t> wide(96 * 48);
  for (int y = 0; y < 48; ++y)
    for (int x = 0; x < 96; ++x) wide[y * 96 + x] = x < 24 ? 10 : x >= 72 ? 30 : 200;
  png("a_wide_grey.png", 96, 48, 1, wide);
  // RGBA, half transparent: composited on black.
  std::vector<uint8_t> rgba(64 * 64 * 4);
  for (int p = 0; p < 64 * 64; ++p) {
    rgba[p * 4 + 0] = 200, rgba[p * 4 + 1] = 100, rgba[p * 4 + 2] = 50, rgba[p * 4 + 3] = 128;
  }
  png("b_rgba.png", 64, 64, 4, rgba);
  // RGB, tall 40×80: red top, blue centre square, green bottom; 40 -> 32 is a non-integer reduction.
  std::vector<uint8_t> tall(40 * 80 * 3, 0);
  for (int y = 0; y < 80; ++y)
    for (int x = 0; x < 40; ++x) tall[(y * 40 + x) * 3 + (y < 20 ? 0 : y >= 60 ? 1 : 2)] = 255;
  png("sub/c_tall.png", 40, 80, 3, tall);
  // A one-pixel checkerboard: antialiased 2x reduction gives grey 128, point sampling 0 or 255.
  std::vector<uint8_t> checker(64 * 64 * 3);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) checker[(y * 64 + x) * 3 + c] = ((x + y) % 2) * 255;
  png("sub/d_checker.png", 64, 64, 3, checker);
  // Bad files: text named .jpg, a PNG cut in half, and a hidden file that is ignored silently.
  std::ofstream(in + "/e_fake.jpg") << "this is not a JPEG\n";
  std::vector<uint8_t> noise(32 * 32 * 3);
  std::mt19937 rng(9);
  for (auto& v : noise) v = static_cast<uint8_t>(rng());
  png("f_truncated.png", 32, 32, 3, noise);
  std::vector<uint8_t> truncated = read_file_bytes(in + "/f_truncated.png");
  truncated.resize(truncated.size() / 2);
  write_raw(in + "/f_truncated.png", truncated);
  std::ofstream(in + "/.DS_Store") << "junk";

  PrepareImagesOptions options;
  options.progress = false;
  const PrepareImagesResult result = prepare_images(in, dir + "/set.npy", 32, 32, 3, options);
  CHECK(result.count == 4);
  CHECK(result.skipped == 2);
  const NpyArray array = read_npy(dir + "/set.npy");
  REQUIRE(array.shape == std::vector<int64_t>{4, 3, 32, 32});
  auto at = [&](int i, int c, int y, int x) { return int(array.data[((i * 3 + c) * 32 + y) * 32 + x]); };
  auto all_equal = [&](int i, int c, int value) {
    int wrong = 0;
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) wrong += at(i, c, y, x) != value;
    return wrong;
  };
  // Order is the sorted paths: a_wide_grey, b_rgba, f_... skipped, sub/c_tall, sub/d_checker.
  for (int c = 0; c < 3; ++c) CHECK(all_equal(0, c, 200) == 0);  // cropped to the centre, grey replicated
  CHECK(all_equal(1, 0, 100) == 0);                              // round(200 * 128 / 255) = round(100.4)
  CHECK(all_equal(1, 1, 50) == 0);                               // round(50.2)
  CHECK(all_equal(1, 2, 25) == 0);                               // round(25.1)
  CHECK(all_equal(2, 0, 0) == 0);                                // no red bled in from the cropped top
  CHECK(all_equal(2, 1, 0) == 0);
  CHECK(all_equal(2, 2, 255) == 0);
  for (int c = 0; c < 3; ++c) CHECK(all_equal(3, c, 128) == 0);  // 127.5 rounds up

  const nlohmann::json sidecar = nlohmann::json::parse(read_file_text(dir + "/set.json"));
  CHECK(sidecar["count"] == 4);
  CHECK(sidecar["source_format"] == "folder");
  CHECK(sidecar["files"] ==
        nlohmann::json::array({"a_wide_grey.png", "b_rgba.png", "sub/c_tall.png", "sub/d_checker.png"}));
  REQUIRE(sidecar["skipped"].size() == 2);
  CHECK(sidecar["skipped"][0]["file"] == "e_fake.jpg");
  CHECK(sidecar["skipped"][1]["file"] == "f_truncated.png");
  CHECK_FALSE(sidecar["skipped"][1]["reason"].get<std::string>().empty());

  // Grey output from colour: BT.601 luma of pure blue is round(0.114 * 255) = 29. --limit stops early.
  options.limit = 3;
  const PrepareImagesResult grey = prepare_images(in, dir + "/grey.npy", 16, 16, 1, options);
  CHECK(grey.count == 3);
  const NpyArray grey_array = read_npy(dir + "/grey.npy");
  REQUIRE(grey_array.shape == std::vector<int64_t>{3, 1, 16, 16});
  CHECK(int(grey_array.data[2 * 256 + 100]) == 29);
  CHECK(int(grey_array.data[0 * 256 + 100]) == 200);

  // Non-square target: 96×48 grey into 16 high × 32 wide keeps the whole image (same aspect).
  options.limit = 1;
  prepare_images(in, dir + "/wide.npy", 16, 32, 1, options);
  const NpyArray wide_array = read_npy(dir + "/wide.npy");
  REQUIRE(wide_array.shape == std::vector<int64_t>{1, 1, 16, 32});
  CHECK(int(wide_array.data[5 * 32 + 0]) == 10);
  CHECK(int(wide_array.data[5 * 32 + 16]) == 200);
  CHECK(int(wide_array.data[5 * 32 + 31]) == 30);
  CHECK(int(wide_array.data[5 * 32 + 7]) == 10);  // 96/32 = 3 source columns per output: column 7 = 21..23
  CHECK(int(wide_array.data[5 * 32 + 8]) == 200);  // column 8 = 24..26, all centre

  // Upscaling a small image (folders do not pad by default): 8×8 -> 32×32 bilinear, corners kept.
  const std::string small_dir = dir + "/small";
  fs::create_directories(small_dir);
  std::vector<uint8_t> small(8 * 8);
  for (int i = 0; i < 64; ++i) small[i] = static_cast<uint8_t>(i * 4);
  REQUIRE(stbi_write_png((small_dir + "/s.png").c_str(), 8, 8, 1, small.data(), 8));
  prepare_images(small_dir, dir + "/up.npy", 32, 32, 1, options);
  const NpyArray up = read_npy(dir + "/up.npy");
  CHECK(int(up.data[0]) == 0);
  CHECK(int(up.data[1023]) == 252);
  std::set<int> distinct(up.data.begin(), up.data.end());
  CHECK(distinct.size() > 64);  // interpolated, not nearest-neighbour
  // With pad_small on, the same image is centred unchanged at offset 12 on a canvas of its border
  // ring's median: the ring holds 0..28 and 224..252 (top/bottom rows, step 4), 32..192 and 60..220
  // (left/right columns, step 32); element 14 of its 28 sorted values is 128.
  options.pad_small = 1;
  prepare_images(small_dir, dir + "/pad.npy", 32, 32, 1, options);
  const NpyArray pad = read_npy(dir + "/pad.npy");
  int moved = 0;
  for (int i = 0; i < 64; ++i) moved += pad.data[(12 + i / 8) * 32 + 12 + i % 8] != small[i];
  CHECK(moved == 0);
  CHECK(int(pad.data[0]) == 128);
  CHECK(int(pad.data[31 * 32 + 31]) == 128);
}

TEST_CASE("unit prepare-images errors name the folder, file or flag") {
  const std::string dir = fresh_dir("formats/errors");
  PrepareImagesOptions options;
  options.progress = false;
  fs::create_directories(dir + "/empty");
  std::string message = error_of([&] { prepare_images(dir + "/empty", dir + "/x.npy", 32, 32, 1, options); });
  CHECK(contains(message, dir + "/empty"));
  CHECK_FALSE(fs::exists(dir + "/x.npy"));

  fs::create_directories(dir + "/bad");
  std::ofstream(dir + "/bad/a.png") << "nope";
  std::ofstream(dir + "/bad/b.jpg") << "nope";
  message = error_of([&] { prepare_images(dir + "/bad", dir + "/x.npy", 32, 32, 1, options); });
  CHECK(contains(message, dir + "/bad"));
  CHECK(contains(message, "no usable images"));
  CHECK_FALSE(fs::exists(dir + "/x.npy"));

  CHECK(contains(error_of([&] { prepare_images(dir + "/missing", dir + "/x.npy", 32, 32, 1, options); }),
                 dir + "/missing"));
  CHECK(contains(error_of([&] { prepare_images(dir + "/bad", dir + "/x.npy", 48, 48, 1, options); }), "--size 48"));
  CHECK(contains(error_of([&] { prepare_images(dir + "/bad", dir + "/x.npy", 32, 32, 2, options); }), "--channels 2"));

  // A file that is not IDX, and an IDX file (gzipped) that promises more images than it holds.
  message = error_of([&] { prepare_images(dir + "/bad/a.png", dir + "/x.npy", 32, 32, 1, options); });
  CHECK(contains(message, dir + "/bad/a.png"));
  CHECK(contains(message, "IDX"));
  const std::string idx = dir + "/short-idx3-ubyte.gz";
  gzFile gz = gzopen(idx.c_str(), "wb");
  const uint8_t header[16] = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28};
  std::vector<uint8_t> one(28 * 28, 7);
  gzwrite(gz, header, 16);
  gzwrite(gz, one.data(), static_cast<unsigned>(one.size()));
  gzclose(gz);
  message = error_of([&] { prepare_images(idx, dir + "/x.npy", 32, 32, 1, options); });
  CHECK(contains(message, idx));
  CHECK(contains(message, "truncated"));
  options.limit = 1;  // the one image that is there is fine
  CHECK(prepare_images(idx, dir + "/one.npy", 32, 32, 1, options).count == 1);
}

TEST_CASE("unit prepare-images load_image_dataset accepts uint8 and float16 4-D only") {
  const std::string dir = fresh_dir("formats/load");
  const std::vector<uint16_t> halves = {float_to_half(-1.0f), float_to_half(0.5f), float_to_half(1.0f),
                                        float_to_half(-0.25f)};
  write_npy(dir + "/mel.npy", DType::F16, {2, 1, 1, 2}, halves.data());
  const ImageDataset mel = load_image_dataset(dir + "/mel.npy");
  CHECK(mel.dtype == DType::F16);
  CHECK(mel.count == 2);
  CHECK(mel.sidecar_json.empty());
  std::vector<float> all(4);
  const int32_t both[2] = {0, 1};
  mel.gather_as_float(all.data(), both, 2);
  CHECK(all == std::vector<float>{-1.0f, 0.5f, 1.0f, -0.25f});
  float sample[2];
  mel.sample_as_float(sample, 1);
  CHECK(sample[0] == 1.0f);
  CHECK(sample[1] == -0.25f);

  const std::vector<float> floats(4, 0.0f);
  write_npy(dir + "/f32.npy", DType::F32, {1, 1, 2, 2}, floats.data());
  std::string message = error_of([&] { load_image_dataset(dir + "/f32.npy"); });
  CHECK(contains(message, dir + "/f32.npy"));
  CHECK(contains(message, "float32"));
  const std::vector<uint8_t> bytes(4, 0);
  write_npy(dir + "/3d.npy", DType::U8, {1, 2, 2}, bytes.data());
  CHECK(contains(error_of([&] { load_image_dataset(dir + "/3d.npy"); }), "4-D"));

  write_npy(dir + "/pair.npy", DType::U8, {1, 1, 2, 2}, bytes.data());
  write_text_atomic(dir + "/pair.json", R"({"kind": "images", "count": 5, "channels": 1})");
  message = error_of([&] { load_image_dataset(dir + "/pair.npy"); });
  CHECK(contains(message, "pair.json"));
  CHECK(contains(message, "count = 5"));
}
