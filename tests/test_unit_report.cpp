// The run report page (engine/inspect/report.h) on hand-made run folders: structure, escaping of
// every string that comes from the folder, data URIs that decode to the files' own bytes, no network
// address, the caps on grids, clips and bytes, and the pages of runs with little or nothing in them.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "engine/formats/atomic_file.h"
#include "engine/formats/png.h"
#include "engine/formats/safetensors.h"
#include "engine/inspect/report.h"
#include "engine/train/checkpoint.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using ds::test::contains;
using ds::test::fresh_dir;

namespace {

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// A real PNG (a w×1 grey ramp offset by `seed`), so browsers and stb could open it too.
std::vector<uint8_t> small_png(int seed, int w = 8) {
  std::vector<uint8_t> px(w);
  for (int i = 0; i < w; ++i) px[i] = static_cast<uint8_t>(seed * 37 + i * 20);
  return encode_png(px.data(), 1, w, 1);
}

// Opaque bytes standing in for a WAV: every byte value, so base64's whole alphabet and padding occur.
std::vector<uint8_t> fake_wav(size_t size, unsigned seed) {
  std::vector<uint8_t> b(size);
  std::mt19937 rng(seed);
  for (size_t i = 0; i < size; ++i) b[i] = i < 256 ? static_cast<uint8_t>(i) : static_cast<uint8_t>(rng());
  return b;
}

std::string log_line(int step, double loss_d, double loss_g, double dx, double dgz) {
  return "{\"step\":" + std::to_string(step) + ",\"Loss_D\":" + std::to_string(loss_d) + ",\"Loss_G\":" +
         std::to_string(loss_g) + ",\"D_x\":" + std::to_string(dx) + ",\"D_G_z1\":" + std::to_string(dgz) +
         ",\"D_G_z2\":" + std::to_string(dgz * 0.9) + ",\"images_per_second\":100,\"elapsed_s\":1}\n";
}

// A run folder as `train` leaves it: a log, grids, a last.safetensors with the config metadata.
void make_run(const fs::path& run, int logged_steps, int grids, const std::string& data_path = "data/x.npy") {
  std::string log;
  for (int s = 1; s <= logged_steps; ++s) log += log_line(s * 10, 1.4 - 0.01 * s, 0.7 + 0.02 * s, 0.5 + 0.004 * s, 0.5 - 0.004 * s);
  write_text(run / "log.jsonl", log);
  fs::create_directories(run / "samples");
  for (int g = 1; g <= grids; ++g) {
    char name[64];
    std::snprintf(name, sizeof name, "step_%07d.png", g * 50);
    write_bytes_atomic((run / "samples" / name).string(), small_png(g));
  }
  SafeTensorsFile f;
  const float one = 1;
  f.add_f32("step_marker", {1}, &one);
  f.metadata[kMetaTrain] = "{\"batch\":4,\"lr\":0.0002,\"steps\":2000,\"data\":\"" + data_path +
                           "\",\"model\":{\"nz\":8,\"ngf\":4,\"ndf\":4}}";
  f.metadata[kMetaDataset] = "{\"kind\":\"images\",\"note\":\"sidecar <here>\"}";
  write_safetensors((run / "last.safetensors").string(), f);
}

// Every data URI of the page: (mime, decoded bytes), in page order.
std::vector<std::pair<std::string, std::vector<uint8_t>>> data_uris(const std::string& page) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> out;
  static const std::regex uri("src=\"data:([a-z/]+);base64,([A-Za-z0-9+/=]*)\"");
  for (auto it = std::sregex_iterator(page.begin(), page.end(), uri); it != std::sregex_iterator(); ++it)
    out.emplace_back((*it)[1].str(), base64_decode((*it)[2].str()));
  return out;
}

}  // namespace

TEST_CASE("unit report base64: encodes as RFC 4648 and decodes back, every length mod 3") {
  const std::string hello = "Man";
  CHECK(base64_encode(reinterpret_cast<const uint8_t*>(hello.data()), 3) == "TWFu");
  CHECK(base64_encode(reinterpret_cast<const uint8_t*>("Ma"), 2) == "TWE=");
  CHECK(base64_encode(reinterpret_cast<const uint8_t*>("M"), 1) == "TQ==");
  CHECK(base64_encode(nullptr, 0).empty());
  for (size_t n : {0, 1, 2, 3, 4, 5, 255, 256, 257, 1000}) {
    const std::vector<uint8_t> b = fake_wav(n, static_cast<unsigned>(n));
    CHECK(base64_decode(base64_encode(b.data(), b.size())) == b);
  }
  CHECK_THROWS(base64_decode("TW*u"));
}

TEST_CASE("unit report html_escape: the five characters that can end text or an attribute") {
  CHECK(html_escape("a<b>&\"c\"'d'") == "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;");
  CHECK(html_escape("plain text 1.5") == "plain text 1.5");
}

TEST_CASE("unit report evenly_spaced_indices: first and last kept, at most the cap, ascending") {
  const std::vector<size_t> all = evenly_spaced_indices(5, 12);
  CHECK(all == std::vector<size_t>{0, 1, 2, 3, 4});
  const std::vector<size_t> some = evenly_spaced_indices(30, 12);
  REQUIRE(some.size() == 12);
  CHECK(some.front() == 0);
  CHECK(some.back() == 29);
  CHECK(std::adjacent_find(some.begin(), some.end(), std::greater_equal<size_t>()) == some.end());
  // Spacing differs by at most one item between neighbours (29 gaps over 11 steps: 2 or 3).
  for (size_t i = 1; i < some.size(); ++i) CHECK((some[i] - some[i - 1] == 2 || some[i] - some[i - 1] == 3));
  CHECK(evenly_spaced_indices(30, 1) == std::vector<size_t>{29});
  CHECK(evenly_spaced_indices(0, 12).empty());
}

TEST_CASE("unit report page: curves, grids, players and config, every data URI the file's own bytes") {
  const fs::path run = fresh_dir("unit_report_full") / "run";
  make_run(run, 40, 3);
  const std::vector<uint8_t> wav_a = fake_wav(3001, 1), wav_b = fake_wav(500, 2), wav_c = fake_wav(64, 3);
  fs::create_directories(run / "gen");
  write_bytes_atomic((run / "gen" / "000.wav").string(), wav_a);
  write_bytes_atomic((run / "gen" / "000.png").string(), small_png(9));  // listen's mel image beside it
  write_bytes_atomic((run / "gen" / "001.WAV").string(), wav_b);
  fs::create_directories(run / "elsewhere" / "deep");
  write_bytes_atomic((run / "elsewhere" / "deep" / "x.wav").string(), wav_c);
  write_text(run / "quality.txt", "not collapsed PASS\n");

  ReportSummary s = write_run_report(run.string());
  CHECK(s.html_path == (run / "report.html").string());
  const std::string page = read_file_text(s.html_path);
  INFO(page.substr(0, 2000));

  // Structure: one document, two charts with a path per series, axes labelled.
  CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(count_of(page, "</html>") == 1);
  CHECK(count_of(page, "<svg ") == 2);
  CHECK(count_of(page, "</svg>") == 2);
  CHECK(count_of(page, "<path d=\"M") == 5);  // Loss_D, Loss_G, D(x), D(G(z)) before and after
  CHECK(contains(page, "data-series=\"Loss_D\""));
  CHECK(contains(page, "data-series=\"D(x)\""));
  CHECK(contains(page, ">step</text>"));
  CHECK(contains(page, ">loss</text>"));
  // Each path has one vertex per logged step: 1 M and 39 L.
  const size_t path_at = page.find("<path d=\"M");
  const std::string first_path = page.substr(path_at, page.find('"', path_at + 9) - path_at);
  CHECK(count_of(first_path, " L") == 39);
  CHECK(s.log_steps == 40);

  // 3 grids + 1 mel image as <img>, 3 players; the gen/ clips first, then the others.
  CHECK(s.grids_shown.size() == 3);
  CHECK(s.grids_left_out.empty());
  CHECK(count_of(page, "<img ") == 4);
  CHECK(count_of(page, "<audio controls") == 3);
  CHECK(s.audio_shown == std::vector<std::string>{"gen/000.wav", "gen/001.WAV", "elsewhere/deep/x.wav"});

  const auto uris = data_uris(page);
  REQUIRE(uris.size() == 7);
  CHECK(uris[0] == std::make_pair(std::string("image/png"), small_png(1)));
  CHECK(uris[1] == std::make_pair(std::string("image/png"), small_png(2)));
  CHECK(uris[2] == std::make_pair(std::string("image/png"), small_png(3)));
  CHECK(uris[3] == std::make_pair(std::string("audio/wav"), wav_a));
  CHECK(uris[4] == std::make_pair(std::string("image/png"), small_png(9)));
  CHECK(uris[5] == std::make_pair(std::string("audio/wav"), wav_b));
  CHECK(uris[6] == std::make_pair(std::string("audio/wav"), wav_c));

  // Self-contained: no address but SVG's namespace, nothing loaded from outside, no scripts.
  std::string stripped = page;
  for (size_t at; (at = stripped.find("http://www.w3.org/2000/svg")) != std::string::npos;) stripped.erase(at, 26);
  CHECK_FALSE(contains(stripped, "http://"));
  CHECK_FALSE(contains(stripped, "https://"));
  CHECK_FALSE(contains(page, "<script"));
  CHECK_FALSE(contains(page, "<link"));
  CHECK_FALSE(contains(page, "url("));
  CHECK(count_of(page, "src=\"") == count_of(page, "src=\"data:"));

  // Configuration from last.safetensors' metadata, the sidecar (escaped) and quality.txt.
  CHECK(s.has_config);
  CHECK(contains(page, "<th>model.ngf</th><td>4</td>"));
  CHECK(contains(page, "<th>lr</th><td>0.0002</td>"));
  CHECK(contains(page, "sidecar &lt;here&gt;"));
  CHECK(contains(page, "not collapsed PASS"));
  CHECK(contains(page, "last logged step 400 of 2000"));
  // Only the optional figures are missing, and said to be.
  CHECK(s.missing.size() == 2);
  CHECK(contains(page, "No SWD values"));
  CHECK(contains(page, "No memorisation figures"));
}

TEST_CASE("unit report page: strings from the folder are escaped wherever they land") {
  const fs::path base = fresh_dir("unit_report_escape");
  const fs::path run = base / "run <b>&'x'";
  make_run(run, 3, 1, "<img src=x onerror=alert(1)>");
  fs::create_directories(run / "gen");
  write_bytes_atomic((run / "gen" / "a<i>&\"q\".wav").string(), fake_wav(10, 1));
  write_text(run / "quality.txt", "</pre><script>alert(2)</script>");
  write_text(run / "memorization" / "summary.json",
             R"({"k":3,"num_samples":8,"num_heldout":8,"verdict":"</p><script>alert(3)</script>",
                 "sample_nn_distance":{"min":1,"p05":2,"median":3,"p95":4,"max":5},
                 "heldout_nn_distance":{"min":1.5,"p05":2.5,"median":3.5,"p95":4.5,"max":5.5}})");
  const std::string page = build_run_report(nullptr, run.string());
  CHECK_FALSE(contains(page, "<script"));
  CHECK_FALSE(contains(page, "<img src=x"));
  CHECK_FALSE(contains(page, "<b>"));
  CHECK_FALSE(contains(page, "<i>"));
  CHECK(contains(page, "&lt;img src=x onerror=alert(1)&gt;"));
  CHECK(contains(page, "run &lt;b&gt;&amp;&#39;x&#39;"));
  CHECK(contains(page, "gen/a&lt;i&gt;&amp;&quot;q&quot;.wav"));
  CHECK(contains(page, "&lt;/pre&gt;&lt;script&gt;alert(2)"));
  CHECK(contains(page, "&lt;/p&gt;&lt;script&gt;alert(3)"));
}

TEST_CASE("unit report caps: grids evenly spaced with the last, clips by count and by bytes, each listed") {
  const fs::path run = fresh_dir("unit_report_caps") / "run";
  make_run(run, 5, 20);
  fs::create_directories(run / "gen");
  for (int i = 0; i < 5; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%03d.wav", i);
    write_bytes_atomic((run / "gen" / name).string(), fake_wav(i == 1 ? 5000 : 1000, static_cast<unsigned>(i)));
  }
  ReportLimits limits;
  limits.max_sample_grids = 12;
  limits.max_audio_clips = 3;
  limits.max_audio_bytes = 2500;  // 000 (1000) fits, 001 (5000) does not, 002 (1000) fits, then the count
  ReportSummary s;
  const std::string page = build_run_report(&s, run.string(), limits);
  REQUIRE(s.grids_shown.size() == 12);
  CHECK(s.grids_shown.front() == "step_0000050.png");
  CHECK(s.grids_shown.back() == "step_0001000.png");
  CHECK(s.grids_left_out.size() == 8);
  for (const std::string& g : s.grids_left_out) CHECK(contains(page, g));
  CHECK(contains(page, "Left out (8)"));
  CHECK(contains(page, "(last)"));

  CHECK(s.audio_shown == std::vector<std::string>{"gen/000.wav", "gen/002.wav"});
  REQUIRE(s.audio_skipped.size() == 3);
  CHECK(contains(s.audio_skipped[0], "gen/001.wav"));
  CHECK(contains(s.audio_skipped[0], "cap on inlined audio"));
  // 003 would fit the count (2 shown < 3) but not the bytes left (500); 004 likewise.
  CHECK(contains(s.audio_skipped[1], "gen/003.wav"));
  CHECK(contains(page, "Skipped (3)"));
  CHECK(count_of(page, "<audio controls") == 2);

  limits.max_audio_bytes = 1 << 20;
  build_run_report(&s, run.string(), limits);
  CHECK(s.audio_shown.size() == 3);
  REQUIRE(s.audio_skipped.size() == 2);
  CHECK(contains(s.audio_skipped[0], "over the cap of 3 clips"));

  limits.max_image_bytes = static_cast<int64_t>(small_png(1).size()) * 2;  // room for two grids only
  const std::string tight = build_run_report(&s, run.string(), limits);
  CHECK(s.grids_shown.size() == 2);
  CHECK(s.grids_left_out.size() == 18);
  CHECK(contains(tight, "cap on inlined images"));
}

TEST_CASE("unit report SWD and memorisation: drawn from log.jsonl keys and memorization/summary.json") {
  const fs::path run = fresh_dir("unit_report_swd") / "run";
  make_run(run, 2, 1);
  std::ofstream(run / "log.jsonl", std::ios::app)
      << "{\"step\":100,\"Loss_D\":1,\"Loss_G\":1,\"D_x\":0.5,\"D_G_z1\":0.5,\"D_G_z2\":0.5,\"swd_mean\":40.5,"
         "\"swd_levels\":[10,20,30]}\n"
      << "{\"step\":200,\"Loss_D\":1,\"Loss_G\":1,\"D_x\":0.5,\"D_G_z1\":0.5,\"D_G_z2\":0.5,\"swd_mean\":30.25,"
         "\"swd_levels\":[8,16,24]}\n";
  write_text(run / "memorization" / "summary.json",
             R"({"k":5,"num_samples":64,"num_heldout":64,"verdict":"samples are no closer to training items than held-out ones",
                 "sample_nn_distance":{"min":1.25,"p05":2,"median":3,"p95":4,"max":5},
                 "heldout_nn_distance":{"min":1.5,"p05":2.5,"median":3.5,"p95":4.5,"max":5.5}})");
  write_bytes_atomic((run / "memorization" / "neighbours.png").string(), small_png(7));
  ReportSummary s;
  const std::string page = build_run_report(&s, run.string());
  CHECK(s.has_swd);
  CHECK(s.has_memorization);
  CHECK(count_of(page, "<svg ") == 4);  // losses, D, SWD, distances
  CHECK(contains(page, "data-series=\"SWD mean\""));
  CHECK(contains(page, "data-series=\"level 0 (finest)\""));
  CHECK(contains(page, "data-series=\"level 2 (coarsest)\""));
  CHECK(contains(page, "samples are no closer to training items than held-out ones"));
  CHECK(contains(page, "<td>1.25</td>"));
  CHECK(contains(page, "num_heldout = 64"));
  bool neighbours = false;
  for (const auto& [mime, bytes] : data_uris(page)) neighbours = neighbours || bytes == small_png(7);
  CHECK(neighbours);
}

TEST_CASE("unit report little or nothing: a valid page that says what is missing, an error for a non-run") {
  const fs::path base = fresh_dir("unit_report_sparse");
  // One log line, a torn second one (a crash mid-write), a resume that logs step 10 again; nothing else.
  const fs::path run = base / "run";
  write_text(run / "log.jsonl", log_line(10, 1, 1, 0.5, 0.5) + log_line(10, 2, 2, 0.6, 0.4) + "{\"step\":2");
  ReportSummary s;
  const std::string page = build_run_report(&s, run.string());
  CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(contains(page, "</html>"));
  CHECK(s.log_steps == 1);
  CHECK(s.unreadable_log_lines == 1);
  CHECK(contains(page, "1 line(s) of log.jsonl were not readable (first: line 3"));
  CHECK(contains(page, "goes back in steps 1 time(s)"));
  CHECK(count_of(page, "<circle") == 5);  // one point per series, marked since it draws no line
  CHECK(contains(page, "Missing from this run folder"));
  CHECK(contains(page, "No sample grids"));
  CHECK(contains(page, "No WAV files"));
  CHECK(contains(page, "No training configuration"));
  CHECK(contains(page, "single logged step"));
  CHECK_FALSE(s.has_config);

  // Grids only, no log.
  const fs::path grids_only = base / "grids_only";
  fs::create_directories(grids_only / "samples");
  write_bytes_atomic((grids_only / "samples" / "step_0000001.png").string(), small_png(1));
  const std::string g = build_run_report(&s, grids_only.string());
  CHECK(contains(g, "No log.jsonl"));
  CHECK(s.grids_shown.size() == 1);

  // Not a run: an empty folder, a file, a missing path; each named in the error.
  fs::create_directories(base / "empty");
  CHECK_THROWS_WITH(build_run_report(nullptr, (base / "empty").string()),
                    doctest::Contains("not a darkstar run folder"));
  write_text(base / "file.txt", "x");
  CHECK_THROWS_WITH(build_run_report(nullptr, (base / "file.txt").string()), doctest::Contains("not a folder"));
  CHECK_THROWS_WITH(build_run_report(nullptr, (base / "nope").string()), doctest::Contains("nope"));
  CHECK_FALSE(fs::exists(base / "empty" / "report.html"));
}
