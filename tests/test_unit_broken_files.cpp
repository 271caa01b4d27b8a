// The catalogue of broken files (tests/fixtures/broken, made by tests/make_broken_fixtures.py): every
// reader of outside bytes must refuse each with a std::runtime_error that names the file and says what
// was wrong or expected; never a crash, another exception type, or an allocation sized by a lying header
// (these run under ASan in tests/run_sanitizers.sh, which would report such an allocation).
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "audio/decode.h"
#include "audio/prepare_audio.h"
#include "engine/formats/atomic_file.h"
#include "engine/data/image_dataset.h"
#include "engine/formats/npy.h"
#include "engine/formats/safetensors.h"
#include "engine/formats/png.h"
#include "tests/test_util.h"
#include "tests/tfrecord_reader.h"

namespace fs = std::filesystem;

namespace {

std::string broken(const std::string& name) { return std::string(DS_SOURCE_DIR) + "/tests/fixtures/broken/" + name; }

struct Case {
  const char* file;
  const char* expected;  // a part of the message saying what was wrong
};

// Runs read(path) and checks it throws std::runtime_error naming `names` (the path by default) and
// containing `expected`.
template <class Read>
void check_refused(const std::string& path, const std::string& expected, Read read, const std::string& names = "") {
  CAPTURE(path);
  std::string message;
  try {
    read(path);
    FAIL("no error for " << path);
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  CAPTURE(message);
  CHECK(message.find(names.empty() ? path : names) != std::string::npos);
  CHECK(message.find(expected) != std::string::npos);
}

}  // namespace

TEST_CASE("unit broken files npy: zero-length, truncated, huge or lying header, wrong dtype") {
  const Case cases[] = {{"npy_zero_length.npy", "bad magic"},
                        {"npy_truncated_header.npy", "truncated header"},
                        {"npy_truncated_data.npy", "truncated data"},
                        {"npy_huge_dimensions.npy", "truncated data: shape (1000000000, 1000000000, 1000000000)"},
                        {"npy_wrong_dtype.npy", "unsupported dtype '<c16'"},
                        {"npy_big_endian.npy", "unsupported dtype '>f4'"},
                        {"npy_lying_header_length.npy", "truncated header"},
                        {"npy_bad_magic.npy", "bad magic"}};
  for (const Case& c : cases) check_refused(broken(c.file), c.expected, [](const std::string& p) { ds::read_npy(p); });
}

TEST_CASE("unit broken files safetensors: zero-length, truncated, lying lengths and offsets, huge shape, dtype") {
  const Case cases[] = {{"st_zero_length.safetensors", "shorter than the 8-byte header length"},
                        {"st_truncated.safetensors", "outside the data area"},
                        {"st_lying_header_length.safetensors", "exceeds 100 MB"},
                        {"st_huge_dimensions.safetensors", "shape overflows"},
                        {"st_wrong_dtype.safetensors", "unsupported dtype \"BF16\""},
                        {"st_lying_offsets.safetensors", "outside the data area"},
                        {"st_not_json.safetensors", "not valid JSON"}};
  for (const Case& c : cases) {
    check_refused(broken(c.file), c.expected, [](const std::string& p) { ds::read_safetensors(p); });
  }
}

TEST_CASE("unit broken files mel sidecar: empty, cut, wrong type, huge, lying count, not a mel sidecar") {
  const Case cases[] = {{"mel_sidecar_zero_length.json", "not valid JSON"},
                        {"mel_sidecar_truncated.json", "not valid JSON"},
                        {"mel_sidecar_wrong_type.json", "malformed mel sidecar"},
                        {"mel_sidecar_huge_dimensions.json", "malformed mel sidecar"},
                        {"mel_sidecar_lying_count.json", "lists 1 slices but count is 1000000"},
                        {"mel_sidecar_not_mel.json", "not a mel dataset"}};
  for (const Case& c : cases) {
    check_refused(broken(c.file), c.expected,
                  [](const std::string& p) { ds::parse_mel_sidecar(ds::read_file_text(p), p); });
  }
}

TEST_CASE("unit broken files image dataset sidecar: lying count, cut JSON") {
  check_refused(broken("image_lying_sidecar.npy"), "says count = 3 but",
                [](const std::string& p) { ds::load_image_dataset(p); }, broken("image_lying_sidecar.json"));
  check_refused(broken("image_truncated_sidecar.npy"), "is not valid JSON",
                [](const std::string& p) { ds::load_image_dataset(p); }, broken("image_truncated_sidecar.json"));
}

TEST_CASE("unit broken files IDX: zero-length, truncated, huge dimensions, wrong dtype, lying gzipped count") {
  const fs::path out = ds::test::fresh_dir("broken_files/idx") / "out.npy";
  const Case cases[] = {{"idx_zero_length.idx", "truncated: it ends inside the magic number"},
                        {"idx_truncated.idx", "truncated: it ends inside the image data"},
                        {"idx_huge_dimensions.idx", "expected at most 2^28 bytes per image"},
                        {"idx_wrong_dtype.idx", "expected magic 00 00 08 03"},
                        {"idx_lying_count.idx.gz", "truncated: it ends inside the image data"}};
  ds::PrepareImagesOptions options;
  options.progress = false;
  for (const Case& c : cases) {
    check_refused(broken(c.file), c.expected,
                  [&](const std::string& p) { ds::prepare_images(p, out.string(), 32, 32, 1, options); });
  }
  CHECK_FALSE(fs::exists(out));  // nothing written for a refused input
}

TEST_CASE("unit broken files PNG and JPEG: each skipped by prepare-images with its name and stb's reason") {
  const Case cases[] = {{"png_zero_length.png", ""},
                        {"png_truncated.png", ""},
                        {"png_huge_dimensions.png", "16384×16400 pixels, more than the 268435456 accepted"},
                        {"png_wrong_depth.png", ""},
                        {"png_empty_idat_truncated.png", ""},
                        {"jpg_truncated.jpg", ""},
                        {"jpg_huffman_overflow.jpg", "a Huffman table (DHT) lists more than 256 codes"},
                        {"jpg_fill_huffman_overflow.jpg", "a Huffman table (DHT) lists more than 256 codes"},
                        {"pgm_huge_number.pgm", "corrupt PNM: a header number exceeds 2^31 - 1"},
                        {"jpg_huge_dimensions.jpg", "20000×20000 pixels, more than the 268435456 accepted"}};
  for (const Case& c : cases) {
    const std::string file = c.file;
    CAPTURE(file);
    // A folder with the broken file and one good image: the good one is used, the broken one skipped,
    // and the sidecar records which file and why.
    const fs::path dir = ds::test::fresh_dir(std::string("broken_files/images/") + c.file);
    const fs::path input = dir / "in";
    fs::create_directories(input);
    fs::copy_file(broken(c.file), input / c.file);
    const float grey[3 * 4 * 4] = {};
    ds::write_png_grid((input / "good.png").string(), grey, 1, 3, 4, 4);
    ds::PrepareImagesOptions options;
    options.progress = false;
    const ds::PrepareImagesResult result = ds::prepare_images(input.string(), (dir / "out.npy").string(), 8, 8, 3, options);
    CHECK(result.count == 1);
    REQUIRE(result.skipped == 1);
    const nlohmann::json sidecar = nlohmann::json::parse(ds::read_file_text(result.sidecar_path));
    CHECK(sidecar["skipped"][0]["file"] == c.file);
    const std::string reason = sidecar["skipped"][0]["reason"].get<std::string>();
    CAPTURE(reason);
    CHECK_FALSE(reason.empty());
    CHECK(reason.find(c.expected) != std::string::npos);
    // Alone in a folder, the broken file leaves nothing usable: an error naming the folder.
    fs::remove(input / "good.png");
    check_refused(input.string(), "no usable images", [&](const std::string& p) {
      ds::prepare_images(p, (dir / "out2.npy").string(), 8, 8, 3, options);
    });
  }
}

TEST_CASE("unit broken files PNG: a legal zero-length IDAT chunk decodes to the same pixels") {
  // PNG lets the compressed stream be split anywhere, an empty IDAT included; decode_image drops such
  // chunks before stb (which would memcpy 0 bytes to a null buffer), so the file must still decode.
  const fs::path dir = ds::test::fresh_dir("broken_files/empty_idat");
  float grid[3 * 5 * 7];
  for (int i = 0; i < 3 * 5 * 7; ++i) grid[i] = static_cast<float>(i % 11) / 5.f - 1.f;
  ds::write_png_grid((dir / "plain.png").string(), grid, 1, 3, 5, 7);
  const std::string plain = ds::read_file_text((dir / "plain.png").string());
  REQUIRE(plain.size() > 33);
  REQUIRE(plain.compare(12, 4, "IHDR") == 0);  // signature (8) + IHDR chunk (4 + 4 + 13 + 4) = 33 bytes
  // length 0, "IDAT", CRC-32 of "IDAT" (0x35AF061E), inserted twice right after IHDR, once before IEND.
  const std::string empty("\0\0\0\0IDAT\x35\xAF\x06\x1E", 12);
  std::string with_empty = plain.substr(0, 33) + empty + empty + plain.substr(33);
  with_empty.insert(with_empty.size() - 12, empty);
  auto decode = [](const std::string& bytes, int* h, int* w, int* c) {
    return ds::decode_image(h, w, c, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  };
  int h0 = 0, w0 = 0, c0 = 0, h1 = 0, w1 = 0, c1 = 0;
  const std::vector<uint8_t> want = decode(plain, &h0, &w0, &c0);
  const std::vector<uint8_t> got = decode(with_empty, &h1, &w1, &c1);
  CHECK(h1 == h0);
  CHECK(w1 == w0);
  CHECK(c1 == c0);
  CHECK(got == want);
  // And the fuzz-found file (an empty IDAT, then the real one cut short) is a plain error.
  const std::string cut = ds::read_file_text(broken("png_empty_idat_truncated.png"));
  int h = 0, w = 0, c = 0;
  CHECK_THROWS_AS(decode(cut, &h, &w, &c), std::runtime_error);
}

TEST_CASE("unit broken files WAV and FLAC: refused naming the file, or decoded head flagged truncated") {
  const Case cases[] = {{"wav_zero_length.wav", "cannot decode audio file"},
                        {"wav_lying_header.wav", "cannot decode audio file"},
                        {"wav_huge_rate.wav", "cannot decode audio file"},
                        {"wav_wrong_dtype.wav", "cannot decode audio file"},
                        {"flac_zero_length.flac", "cannot decode audio file"},
                        {"flac_truncated.flac", "cannot decode audio file"},
                        {"flac_garbage.flac", "cannot decode audio file"}};
  for (const Case& c : cases) check_refused(broken(c.file), c.expected, [](const std::string& p) { ds::decode_audio(p); });
  // A header announcing 1 s over 10 ms of samples: libsndfile clamps the data length to the file and
  // says so only in its log; decode_audio reads that line, so the 10 ms present are kept and the file
  // is flagged partly decoded with the rest of the announced second missing.
  const ds::DecodedAudio cut = ds::decode_audio(broken("wav_truncated.wav"));
  CHECK(cut.frames == 441);
  CHECK(cut.is_truncated());
  CHECK(cut.header_frames == 44100);
  CHECK(cut.end.missing_frames == cut.header_frames - 441);
}

TEST_CASE("unit broken files TensorBoard events: the tests' reader refuses a cut and a lying record") {
  using namespace ds::test::tfrecord;
  const std::string good = ds::read_file_text(broken("tb_file_version.tfevents"));
  REQUIRE(read_tfrecords(good).size() == 1);
  CHECK_THROWS_WITH_AS(read_tfrecords(ds::read_file_text(broken("tb_truncated.tfevents"))), "truncated record data",
                       std::runtime_error);
  // A length of 2^64 - 2 with its CRC right: length + 4 wraps to 2, which must not pass as "fits".
  CHECK_THROWS_WITH_AS(read_tfrecords(ds::read_file_text(broken("tb_lying_length.tfevents"))),
                       "truncated record data", std::runtime_error);
}
