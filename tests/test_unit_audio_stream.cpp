// Tests of prepare-audio at real scale: the streaming pieces (slicer, resampler block joins, the npy
// written row by row) against their whole-signal counterparts, real MP3s made here with lame and
// ffmpeg from a real song, files cut at 60 %, and bad input (each one warning line, never a crash).
#include <doctest/doctest.h>
#include <sndfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "audio/decode.h"
#include "audio/mel_cpu.h"
#include "audio/prepare_audio.h"
#include "audio/slices.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/npy.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using ds::test::contains;
using ds::test::count_mismatches;
using ds::test::fresh_dir;

namespace {

constexpr double kPi = 3.14159265358979323846;

// Runs fn with stderr (fd 2) sent to a temp file; returns what was written there.
std::string capture_stderr(const std::function<void()>& fn) {
  std::fflush(stderr);
  const int saved = ::dup(2);
  FILE* sink = std::tmpfile();
  REQUIRE(sink != nullptr);
  ::dup2(::fileno(sink), 2);
  auto restore = [&] {
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
  };
  try {
    fn();
  } catch (...) {
    restore();
    std::fclose(sink);
    throw;
  }
  restore();
  std::string text;
  std::rewind(sink);
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, sink)) > 0) text.append(buf, got);
  std::fclose(sink);
  return text;
}

std::vector<std::string> lines_with(const std::string& text, const std::string& part) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line, '\n');) {
    // The progress line is \r-separated; a warning always starts its own line.
    const size_t cr = line.rfind('\r');
    if (cr != std::string::npos) line = line.substr(cr + 1);
    if (contains(line, part)) out.push_back(line);
  }
  return out;
}

size_t count_in(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// A tool the test needs (installed by apps/setup.sh): its absence fails the test, never skips it.
void require_tool(const char* tool) {
  const std::string probe = std::string("command -v ") + tool + " >/dev/null 2>&1";
  REQUIRE_MESSAGE(std::system(probe.c_str()) == 0, tool, " is not installed: run apps/setup.sh");
}

void run(const std::string& command) {
  const int rc = std::system((command + " >/dev/null 2>&1").c_str());
  REQUIRE_MESSAGE(rc == 0, "failed: ", command);
}

void write_mono(const std::string& path, int format, int sr, const std::vector<float>& x) {
  fs::create_directories(fs::path(path).parent_path());
  SF_INFO info{};
  info.samplerate = sr;
  info.channels = 1;
  info.format = format;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  REQUIRE_MESSAGE(f != nullptr, path, ": ", sf_strerror(nullptr));
  // Music resampled by soxr can overshoot 1.0 a little; libsndfile's FLAC writer refuses such samples.
  sf_command(f, SFC_SET_CLIPPING, nullptr, SF_TRUE);
  REQUIRE(sf_writef_float(f, x.data(), static_cast<sf_count_t>(x.size())) == static_cast<sf_count_t>(x.size()));
  sf_close(f);
}

void cut_file(const std::string& from, const std::string& to, double fraction) {
  std::ifstream in(from, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(to, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() * fraction));
}

// 6.5 s of real music (Sectoid's "Metal madness", from 40 s in) at `sr`: the source the MP3s are made
// from. 6.5 s: ⌊6.5 / 2⌋ = 3 two-second slices however a codec pads the ends.
std::vector<float> song_clip(int sr) {
  int song_rate = 0;
  const std::vector<float> clip = ds::test::read_song(40.0, 6.5, &song_rate);
  return resample(clip, song_rate, sr);
}

MelParams tiny_mel() {
  MelOverrides o;
  o.sr = 8000;
  o.slice_seconds = 2.0;
  o.n_mels = 32;
  o.n_fft = 512;
  o.frames = 64;
  return build_mel_params("default", o);
}

struct Prepared {
  PrepareAudioResult result;
  std::string stderr_text;
  MelDatasetInfo info;
};

Prepared prepare(const std::string& in, const std::string& out, const PrepareAudioOptions& options) {
  Prepared p;
  p.stderr_text = capture_stderr([&] { p.result = prepare_audio(in, out, options); });
  p.info = read_mel_dataset_info(p.result.sidecar_path);
  return p;
}

int64_t slices_of(const MelDatasetInfo& info, const std::string& file_name) {
  int64_t n = 0;
  for (const MelSliceInfo& s : info.slices) n += fs::path(info.files.at(s.file)).filename() == file_name;
  return n;
}

}  // namespace

TEST_CASE("unit audio stream StreamSlicer gives cut_slices' slices and samples for any block sizes") {
  std::mt19937 rng(7);
  std::vector<float> signal(5000);
  for (float& v : signal) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  struct Case {
    int64_t n, L, hop;
    bool pad;
  };
  const Case cases[] = {{5000, 500, 500, false}, {5000, 512, 500, true},  {4999, 700, 300, true},
                        {5000, 300, 700, true},  {5000, 300, 700, false}, {299, 300, 300, true},
                        {299, 300, 300, false},  {5000, 5000, 1, true},   {4000, 1000, 1000, true}};
  for (const Case& c : cases) {
    for (const size_t block : {size_t(1), size_t(7), size_t(299), size_t(4096), size_t(100000)}) {
      CAPTURE(c.n);
      CAPTURE(c.L);
      CAPTURE(c.hop);
      CAPTURE(c.pad);
      CAPTURE(block);
      const std::vector<SliceRef> want = cut_slices(c.n, c.L, c.hop, c.pad);
      std::vector<SliceRef> got;
      std::vector<float> got_samples, want_samples(static_cast<size_t>(c.L));
      size_t mismatched = 0;
      StreamSlicer slicer(c.L, c.hop, c.pad);
      const StreamSlicer::Emit emit = [&](const SliceRef& r, const float* x) {
        const size_t k = got.size();
        got.push_back(r);
        if (k < want.size()) {
          copy_slice_padded(want_samples.data(), signal.data(), want[k], c.L);
          mismatched += count_mismatches(x, want_samples.data(), static_cast<size_t>(c.L));
        }
      };
      for (int64_t at = 0; at < c.n; at += static_cast<int64_t>(block))
        slicer.push(signal.data() + at, static_cast<size_t>(std::min<int64_t>(block, c.n - at)), emit);
      slicer.finish(emit);
      REQUIRE(got.size() == want.size());
      for (size_t k = 0; k < got.size(); ++k) {
        CHECK(got[k].start == want[k].start);
        CHECK(got[k].length == want[k].length);
      }
      CHECK(mismatched == 0);
      CHECK(slicer.samples_seen() == c.n);
    }
  }
}

TEST_CASE("unit audio stream StreamResampler: block joins are seamless against one-shot soxr") {
  // A 96 kHz tone sweep (100 Hz → 20 kHz over 3 s) to 22.05 kHz and 44.1 kHz, and 22.05 → 48 kHz up.
  struct Case {
    double in_rate, out_rate;
  };
  for (const Case c : {Case{96000, 22050}, Case{96000, 44100}, Case{22050, 48000}}) {
    CAPTURE(c.in_rate);
    CAPTURE(c.out_rate);
    const int64_t n = static_cast<int64_t>(3 * c.in_rate) + 11;
    std::vector<float> sweep(static_cast<size_t>(n));
    const double f0 = 100, f1 = std::min(20000.0, c.in_rate / 2 * 0.9), T = static_cast<double>(n) / c.in_rate;
    for (int64_t i = 0; i < n; ++i) {
      const double t = i / c.in_rate;
      sweep[i] = static_cast<float>(0.5 * std::sin(2 * kPi * (f0 * t + (f1 - f0) * t * t / (2 * T))));
    }
    const std::vector<float> oneshot = resample(sweep, c.in_rate, c.out_rate);
    for (const size_t block : {size_t(1000), size_t(65536), size_t(777777)}) {
      CAPTURE(block);
      StreamResampler r(c.in_rate, c.out_rate);
      std::vector<float> out;
      for (int64_t at = 0; at < n; at += static_cast<int64_t>(block))
        r.push(out, sweep.data() + at, static_cast<size_t>(std::min<int64_t>(block, n - at)));
      r.finish(out);
      REQUIRE(out.size() == oneshot.size());
      double worst = 0;
      size_t worst_at = 0;
      for (size_t k = 0; k < out.size(); ++k) {
        const double d = std::fabs(double(out[k]) - oneshot[k]);
        if (d > worst) worst = d, worst_at = k;
      }
      MESSAGE(c.in_rate << " -> " << c.out_rate << " in blocks of " << block << ": max |stream − one-shot| "
                        << worst << " at sample " << worst_at << " of " << out.size());
      // The same soxr filter on the same samples; only the order of float operations at soxr's own
      // internal block edges can differ, so float precision of a 0.5 signal: a few ulps (ulp(0.5) =
      // 6e-8). A click at a block join (a lost or doubled sample) would be of order 0.01–0.5.
      CHECK(worst <= 1e-6);
    }
  }
}

TEST_CASE("unit audio stream NpyRowWriter: rows appended in pieces, the count patched, nothing left on failure") {
  const fs::path dir = fresh_dir("audio_stream/npy");
  const std::string path = (dir / "rows.npy").string();
  std::vector<uint16_t> rows(13 * 2 * 3);
  for (size_t k = 0; k < rows.size(); ++k) rows[k] = static_cast<uint16_t>(k * 2654435761u);
  {
    NpyRowWriter w(path, DType::F16, {1, 2, 3});
    w.append(rows.data(), 5);
    w.append(rows.data() + 5 * 6, 0);
    w.append(rows.data() + 5 * 6, 8);
    CHECK(!fs::exists(path));  // only the temp file until commit
    w.commit();
  }
  const NpyArray a = read_npy(path);
  CHECK(a.dtype == DType::F16);
  CHECK(a.shape == std::vector<int64_t>{13, 1, 2, 3});
  REQUIRE(a.data.size() == rows.size() * 2);
  CHECK(std::memcmp(a.data.data(), rows.data(), a.data.size()) == 0);
  // numpy's alignment: the data start (10 + header length) is a multiple of 64.
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  CHECK((10 + (bytes[8] | (bytes[9] << 8))) % 64 == 0);
  // Not committed: neither the file nor a temp file remains.
  const std::string other = (dir / "abandoned.npy").string();
  {
    NpyRowWriter w(other, DType::F16, {1, 2, 3});
    w.append(rows.data(), 2);
  }
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}) == 1);
}

TEST_CASE("e2e audio stream prepare: a long 96 kHz sweep streamed in blocks equals the whole-file path bit for bit") {
  // 24 s at 96 kHz = 2.3 M frames = 35 of the reader's 64 Ki-frame blocks, sliced at 96 kHz (no
  // resampling, so the reference below is exact): the slices must not depend on where blocks end.
  const fs::path dir = fresh_dir("audio_stream/sweep");
  const int sr = 96000;
  const int64_t n = 24 * sr + 12345;
  std::vector<float> sweep(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / sr;
    sweep[i] = static_cast<float>(0.4 * std::sin(2 * kPi * (50 * t + 400 * t * t)));
  }
  write_mono((dir / "in" / "sweep.wav").string(), SF_FORMAT_WAV | SF_FORMAT_FLOAT, sr, sweep);
  MelOverrides o;
  o.sr = sr;
  o.slice_seconds = 1.5;
  o.n_mels = 32;
  o.n_fft = 8192;  // at least twice the hop (144000 / 63 = 2285), as prepare-audio advises
  o.frames = 64;
  PrepareAudioOptions options;
  options.mel = build_mel_params("default", o);
  options.progress = false;
  options.slice_hop_seconds = 1.25;  // overlapping slices: their joins cross blocks too
  options.pad_tail = true;
  options.slices_per_batch = 5;
  const Prepared got = prepare((dir / "in").string(), (dir / "out.npy").string(), options);

  const DecodedAudio whole = decode_audio((dir / "in" / "sweep.wav").string());
  REQUIRE(whole.frames == n);
  const int64_t L = options.mel.slice_samples(), hop = std::llround(1.25 * sr);
  const std::vector<SliceRef> refs = cut_slices(n, L, hop, true);
  REQUIRE(got.result.count == static_cast<int64_t>(refs.size()));
  const NpyArray a = read_npy((dir / "out.npy").string());
  const int64_t image = options.mel.image_height() * options.mel.image_width();
  size_t mismatched = 0;
  std::vector<float> slice(static_cast<size_t>(L));
  for (size_t k = 0; k < refs.size(); ++k) {
    copy_slice_padded(slice.data(), whole.samples.data(), refs[k], L);
    double ref = 0;
    const std::vector<float> img = mel_image(slice.data(), L, options.mel, &ref);
    std::vector<uint16_t> halves(img.size());
    for (size_t v = 0; v < img.size(); ++v) halves[v] = float_to_half(img[v]);
    mismatched += count_mismatches(a.as<uint16_t>() + k * image, halves.data(), halves.size());
    CHECK(got.info.slices[k].start_seconds == static_cast<double>(refs[k].start) / sr);
    CHECK(got.info.slices[k].ref_db == 10 * std::log10(std::max(ref, options.mel.amin)));
  }
  CHECK(mismatched == 0);
  CHECK(got.stderr_text.find("warning:") == std::string::npos);
}

TEST_CASE("e2e audio stream MP3s made with lame and ffmpeg at 22.05/44.1/48 kHz decode whole, with no warning") {
  require_tool("lame");
  require_tool("ffmpeg");
  const fs::path dir = fresh_dir("audio_stream/mp3");
  struct Encoding {
    const char* name;
    const char* command;  // {in} {out}
    bool has_header;      // a Xing/Info + LAME tag: exact gapless length
  };
  const Encoding encodings[] = {
      {"cbr", "lame --quiet -b 128 {in} {out}", true},
      {"vbr", "lame --quiet -V 2 {in} {out}", true},
      {"cbr_noheader", "lame --quiet -t -b 128 {in} {out}", false},
      {"vbr_noheader", "lame --quiet -t -V 2 {in} {out}", false},
      {"ffmpeg", "ffmpeg -loglevel error -y -i {in} {out}", true},
  };
  std::vector<std::pair<std::string, int64_t>> sources;  // mp3 name, source samples
  for (const int sr : {22050, 44100, 48000}) {
    const std::vector<float> clip = song_clip(sr);
    const std::string wav = (dir / ("src" + std::to_string(sr) + ".wav")).string();
    write_mono(wav, SF_FORMAT_WAV | SF_FORMAT_PCM_16, sr, clip);
    for (const Encoding& e : encodings) {
      const std::string mp3 = (dir / "mp3" / (std::string(e.name) + "_" + std::to_string(sr) + ".mp3")).string();
      fs::create_directories(dir / "mp3");
      std::string cmd = e.command;
      cmd.replace(cmd.find("{in}"), 4, "'" + wav + "'");
      cmd.replace(cmd.find("{out}"), 5, "'" + mp3 + "'");
      run(cmd);
      AudioReader reader(mp3);
      std::vector<float> block(4096);
      while (reader.read(block.data(), 4096) > 0) {
      }
      const DecodeEnd end = reader.end();
      const int64_t source = static_cast<int64_t>(clip.size());
      MESSAGE(fs::path(mp3).filename().string() << ": " << reader.format() << ", header says "
                                                << reader.header_frames()
                                                << std::string(reader.length_is_estimate() ? " (estimate)" : "")
                                                << ", decoded "
                                                << end.frames << " of " << source << " source samples");
      CAPTURE(mp3);
      CHECK(reader.sample_rate() == sr);
      CHECK_FALSE(end.partial);
      CHECK(reader.length_is_estimate() == !e.has_header);
      // One MP3 frame (1152 samples) where the LAME tag gives delay and padding; without it the
      // encoder delay (576 + 529) and the last frame's padding stay in: within two frames.
      CHECK(std::llabs(end.frames - source) <= (e.has_header ? 1152 : 2 * 1152));
      sources.push_back({fs::path(mp3).filename().string(), source});
    }
  }
  PrepareAudioOptions options;
  options.mel = tiny_mel();
  options.progress = false;
  const Prepared got = prepare((dir / "mp3").string(), (dir / "mp3.npy").string(), options);
  CHECK(got.stderr_text.find("warning:") == std::string::npos);
  CHECK(got.result.skipped.empty());
  CHECK(got.result.partly_decoded.empty());
  CHECK(got.result.files_read == 15);
  for (const auto& [name, samples] : sources) {
    CAPTURE(name);
    CHECK(slices_of(got.info, name) == 3);  // ⌊6.5 s / 2 s⌋
  }
}

TEST_CASE("e2e audio stream files cut at 60 % (Ogg, FLAC, MP3 with a Xing count) keep their head with one warning") {
  require_tool("lame");
  const fs::path dir = fresh_dir("audio_stream/cut");
  const int sr = 44100;
  std::vector<float> clip = song_clip(sr);
  // 20 s (the 6.5 s clip three times and its first 0.5 s): a 60 % cut keeps 12 s, 6 two-second slices.
  // (This appended the first 7 s of the 6.5 s clip until AddressSanitizer caught the read past its end.)
  const std::vector<float> once = clip;
  REQUIRE(once.size() == static_cast<size_t>(sr * 6.5));
  clip.insert(clip.end(), once.begin(), once.end());
  clip.insert(clip.end(), once.begin(), once.end());
  clip.insert(clip.end(), once.begin(), once.begin() + static_cast<int64_t>(sr * 0.5));
  const std::string wav = (dir / "src.wav").string();
  write_mono(wav, SF_FORMAT_WAV | SF_FORMAT_PCM_16, sr, clip);
  fs::create_directories(dir / "whole");
  fs::create_directories(dir / "in");
  write_mono((dir / "whole" / "song.ogg").string(), SF_FORMAT_OGG | SF_FORMAT_VORBIS, sr, clip);
  write_mono((dir / "whole" / "song.flac").string(), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, sr, clip);
  run("lame --quiet -V 2 '" + wav + "' '" + (dir / "whole" / "song.mp3").string() + "'");
  for (const char* name : {"song.ogg", "song.flac", "song.mp3"})
    cut_file((dir / "whole" / name).string(), (dir / "in" / name).string(), 0.6);
  PrepareAudioOptions options;
  options.mel = tiny_mel();
  options.progress = false;
  const Prepared got = prepare((dir / "in").string(), (dir / "cut.npy").string(), options);
  MESSAGE(got.stderr_text);
  CHECK(got.result.skipped.empty());
  REQUIRE(got.result.partly_decoded.size() == 3);
  CHECK(lines_with(got.stderr_text, "warning:").size() == 3);
  const double seconds = static_cast<double>(clip.size()) / sr;
  for (const PartlyDecodedFile& f : got.result.partly_decoded) {
    const std::string name = fs::path(f.file).filename().string();
    CAPTURE(name);
    // One line, naming the file, starting as every warning does.
    const std::vector<std::string> lines = lines_with(got.stderr_text, name);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].rfind("prepare-audio: warning: ", 0) == 0);
    CHECK(contains(lines[0], "partly decoded"));
    // 60 % of the bytes is about 60 % of the audio (Vorbis/FLAC/VBR spend bytes unevenly): 50–70 %.
    CHECK(f.kept_seconds > 0.5 * seconds);
    CHECK(f.kept_seconds < 0.7 * seconds);
    if (name != "song.ogg") CHECK(f.kept_seconds + f.missing_seconds == doctest::Approx(seconds).epsilon(0.01));
    else CHECK(f.missing_seconds == -1.0);  // a cut Ogg has lost the page that gave its length
    CHECK(slices_of(got.info, name) == static_cast<int64_t>(std::floor(f.kept_seconds / 2.0)));
  }
  const nlohmann::json sidecar = nlohmann::json::parse(read_file_text(got.result.sidecar_path));
  CHECK(sidecar["partly_decoded"].size() == 3);
  CHECK(sidecar["files_read"] == 3);
}

TEST_CASE("e2e audio stream bad input: each file named in one warning line and counted, the run goes on") {
  require_tool("lame");
  const fs::path dir = fresh_dir("audio_stream/bad");
  const fs::path in = dir / "in";
  fs::create_directories(in);
  const int sr = 44100;
  const std::vector<float> clip = song_clip(sr);
  write_mono((in / "good.flac").string(), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, sr, clip);
  auto write_bytes = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(in / name, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  auto le = [](uint64_t v, int n) {
    std::string s;
    for (int k = 0; k < n; ++k) s += static_cast<char>((v >> (8 * k)) & 0xFF);
    return s;
  };
  write_bytes("one_byte.wav", "R");
  // A WAV whose fmt chunk says 0 channels.
  {
    const std::string fmt = le(1, 2) + le(0, 2) + le(8000, 4) + le(0, 4) + le(0, 2) + le(16, 2);
    const std::string data(2000, '\x10');
    const std::string body = "WAVEfmt " + le(16, 4) + fmt + "data" + le(data.size(), 4) + data;
    write_bytes("zero_channels.wav", "RIFF" + le(body.size(), 4) + body);
  }
  // A FLAC whose STREAMINFO claims 2^36 − 1 frames (the field's maximum, ~10^11: 18 days at 44.1 kHz).
  {
    write_mono((dir / "claims.flac").string(), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, sr, clip);
    std::string bytes = read_file_text((dir / "claims.flac").string());
    REQUIRE(bytes.compare(0, 4, "fLaC") == 0);
    // STREAMINFO starts at 8: total samples are the low 4 bits of byte 8+13 and bytes 8+14..8+17.
    bytes[8 + 13] = static_cast<char>(bytes[8 + 13] | 0x0F);
    for (int k = 14; k < 18; ++k) bytes[8 + k] = '\xFF';
    write_bytes("claims_1e11_frames.flac", bytes);
  }
  // An RF64 whose ds64 chunk claims 10^12 frames (libsndfile bounds it by the file's size).
  {
    std::string data;
    for (int i = 0; i < 2 * sr; ++i) data += le(static_cast<uint16_t>(static_cast<int16_t>(8000 * std::sin(i * 0.05))), 2);
    const std::string ds64 = le(0xFFFFFFFFull, 8) + le(2000000000000ull, 8) + le(1000000000000ull, 8) + le(0, 4);
    const std::string fmt = le(1, 2) + le(1, 2) + le(sr, 4) + le(2 * sr, 4) + le(2, 2) + le(16, 2);
    const std::string body = "WAVEds64" + le(ds64.size(), 4) + ds64 + "fmt " + le(16, 4) + fmt + "data" +
                             le(0xFFFFFFFFull, 4) + data;
    write_bytes("claims_1e12_frames.rf64", "RF64" + le(0xFFFFFFFFull, 4) + body);
  }
  // An MP3 with 30 kB of garbage after its last frame.
  {
    const std::string wav = (dir / "src.wav").string();
    write_mono(wav, SF_FORMAT_WAV | SF_FORMAT_PCM_16, sr, clip);
    run("lame --quiet -b 128 '" + wav + "' '" + (dir / "clean.mp3").string() + "'");
    std::string bytes = read_file_text((dir / "clean.mp3").string());
    std::mt19937 rng(3);
    for (int k = 0; k < 30000; ++k) bytes += static_cast<char>(rng() & 0xFF);
    write_bytes("garbage_after.mp3", bytes);
  }
  // A FLAC with 4 kB zeroed in the middle: the frames before it are kept.
  {
    write_mono((dir / "long.flac").string(), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, sr, clip);
    std::string bytes = read_file_text((dir / "long.flac").string());
    std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2),
              bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2 + 4096), '\0');
    write_bytes("broken_middle.flac", bytes);
  }
  // Containers libsndfile cannot read, by their magic bytes and extensions.
  write_bytes("song.m4a", std::string("\0\0\0\x18" "ftypM4A \0\0\0\0M4A mp42", 24) + std::string(3000, '\x55'));
  write_bytes("tape.shn", "ajkg\x02" + std::string(3000, '\x33'));
  write_bytes("show.ape", "MAC \x96\x0f" + std::string(3000, '\x44'));
  // A link to itself, a link to the folder above, a FIFO (would block a reader forever).
  fs::create_symlink("loop", in / "loop");
  fs::create_directory_symlink("..", in / "up");
  REQUIRE(::mkfifo((in / "pipe").c_str(), 0600) == 0);

  PrepareAudioOptions options;
  options.mel = tiny_mel();
  options.progress = false;
  const Prepared got = prepare(in.string(), (dir / "out.npy").string(), options);
  MESSAGE(got.stderr_text);
  struct Expect {
    const char* name;
    const char* says;  // part of the warning
    bool partly;       // counted as partly decoded (else skipped)
  };
  const Expect expected[] = {
      {"one_byte.wav", "cannot decode", false},
      {"zero_channels.wav", "cannot decode", false},
      {"claims_1e11_frames.flac", "partly decoded", true},
      {"garbage_after.mp3", "partly decoded", true},
      {"broken_middle.flac", "partly decoded", true},
      {"song.m4a", "MP4/AAC", false},
      {"tape.shn", "Shorten", false},
      {"show.ape", "Monkey's Audio", false},
      {"loop", "link", false},
      {"up", "link to a folder", false},
      {"pipe", "not a regular file", false},
  };
  for (const Expect& e : expected) {
    CAPTURE(e.name);
    const std::vector<std::string> lines = lines_with(got.stderr_text, "/" + std::string(e.name) + "'");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].rfind("prepare-audio: warning: ", 0) == 0);
    CHECK(contains(lines[0], e.says));
    const auto& partly = got.result.partly_decoded;
    const auto& skipped = got.result.skipped;
    const bool in_partly = std::any_of(partly.begin(), partly.end(), [&](const PartlyDecodedFile& f) {
      return fs::path(f.file).filename() == e.name;
    });
    const bool in_skipped = std::any_of(skipped.begin(), skipped.end(), [&](const SkippedAudioFile& f) {
      return fs::path(f.file).filename() == e.name;
    });
    CHECK(in_partly == e.partly);
    CHECK(in_skipped == !e.partly);
  }
  // Every warning is one of those: nothing else is said about the good file or the RF64.
  CHECK(count_in(got.stderr_text, "warning:") == std::size(expected));
  CHECK(count_in(got.stderr_text, "prepare-audio: warning: ") == std::size(expected));
  CHECK(slices_of(got.info, "good.flac") == 3);
  // libsndfile bounds the RF64's claim by the file's size: its 2 s decode whole, one 2 s slice.
  CHECK(slices_of(got.info, "claims_1e12_frames.rf64") == 1);
  // The cut and damaged files keep their decodable head: the garbage MP3 all 6.5 s (3 slices), the
  // broken FLAC its first half or so (1 slice).
  CHECK(slices_of(got.info, "garbage_after.mp3") == 3);
  CHECK(slices_of(got.info, "broken_middle.flac") >= 1);
  CHECK(slices_of(got.info, "claims_1e11_frames.flac") == 3);
  CHECK(got.result.files_total == static_cast<int64_t>(std::size(expected)) + 2);
}

TEST_CASE("e2e audio stream two thousand small files: every one counted, one warning each") {
  const fs::path dir = fresh_dir("audio_stream/many");
  const fs::path in = dir / "in";
  fs::create_directories(in);
  const int sr = 8000;
  // One valid 0.05 s WAV written once, copied 2000 times (each shorter than a slice: skipped), and
  // one file long enough to give a slice, so the run succeeds. (Ten thousand, measured by hand for the
  // README, take 5× as long: ~1 ms a file on a loaded machine; kept at 2000 so the suite stays fast.)
  std::vector<float> tiny(400, 0.25f);
  write_mono((dir / "tiny.wav").string(), SF_FORMAT_WAV | SF_FORMAT_PCM_16, sr, tiny);
  const std::string bytes = read_file_text((dir / "tiny.wav").string());
  for (int k = 0; k < 2000; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "d%02d/t%05d.wav", k / 250, k);
    fs::create_directories((in / name).parent_path());
    std::ofstream(in / name, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::vector<float> longer(static_cast<size_t>(2.5 * sr));
  for (size_t i = 0; i < longer.size(); ++i) longer[i] = static_cast<float>(0.3 * std::sin(0.2 * i));
  write_mono((in / "z_long.wav").string(), SF_FORMAT_WAV | SF_FORMAT_PCM_16, sr, longer);
  PrepareAudioOptions options;
  options.mel = tiny_mel();
  options.progress = false;
  options.decode_threads = 2;
  const Prepared got = prepare(in.string(), (dir / "out.npy").string(), options);
  CHECK(got.result.files_total == 2001);
  CHECK(got.result.skipped.size() == 2000);
  CHECK(got.result.count == 1);
  CHECK(count_in(got.stderr_text, "prepare-audio: warning: ") == 2000);
  CHECK(count_in(got.stderr_text, "shorter than one slice") == 2000);
  MESSAGE("2001 files prepared in " << got.result.wall_seconds << " s");
}

TEST_CASE("unit audio stream every rate from 8 to 192 kHz, integer and float PCM, decodes and resamples whole") {
  const fs::path dir = fresh_dir("audio_stream/rates");
  for (const int sr : {8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000}) {
    for (const int format : {SF_FORMAT_FLAC | SF_FORMAT_PCM_24, SF_FORMAT_WAV | SF_FORMAT_FLOAT}) {
      CAPTURE(sr);
      CAPTURE(format);
      const int64_t n = sr / 4 + 3;  // a quarter second and an odd remainder
      std::vector<float> tone(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) tone[i] = static_cast<float>(0.5 * std::sin(2 * kPi * 1000.0 * i / sr));
      const std::string path =
          (dir / (std::to_string(sr) + ((format & SF_FORMAT_TYPEMASK) == SF_FORMAT_FLAC ? ".flac" : ".wav"))).string();
      write_mono(path, format, sr, tone);
      AudioReader reader(path);
      CHECK(reader.sample_rate() == sr);
      CHECK(reader.header_frames() == n);
      StreamResampler resampler(sr, 22050);
      std::vector<float> block(1000), out;
      for (int64_t got; (got = reader.read(block.data(), 1000)) > 0;) resampler.push(out, block.data(), got);
      resampler.finish(out);
      CHECK_FALSE(reader.end().partial);
      CHECK(reader.end().frames == n);
      CHECK(out.size() == static_cast<size_t>(std::llround(n * 22050.0 / sr)));
    }
  }
}

TEST_CASE("e2e audio stream an unreadable file (permissions) is named in one warning and skipped") {
  // Root reads any file whatever its mode, so as root the CLI runs as `nobody` (setpriv, util-linux);
  // otherwise as the user running the tests.
  const fs::path dir = fresh_dir("audio_stream/perm");
  const int sr = 8000;
  std::vector<float> tone(static_cast<size_t>(2.5 * sr));
  for (size_t i = 0; i < tone.size(); ++i) tone[i] = static_cast<float>(0.3 * std::sin(0.2 * i));
  write_mono((dir / "in" / "ok.wav").string(), SF_FORMAT_WAV | SF_FORMAT_PCM_16, sr, tone);
  write_mono((dir / "in" / "secret.wav").string(), SF_FORMAT_WAV | SF_FORMAT_PCM_16, sr, tone);
  fs::permissions(dir / "in" / "secret.wav", fs::perms::none);
  fs::permissions(dir, fs::perms::all);  // the output is written here, by nobody too
  std::string prefix;
  if (::geteuid() == 0) {
    require_tool("setpriv");
    prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  const std::string log = (dir / "log.txt").string();
  const std::string cmd = prefix + "'" + DS_DARKSTAR_EXE + "' prepare-audio '" + (dir / "in").string() + "' --out '" +
                          (dir / "out.npy").string() + "' --sr 8000 --slice-seconds 2 --n-mels 32 --n-fft 512 " +
                          "--frames 64 --device cpu > '" + log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string text = read_file_text(log);
  MESSAGE(text);
  CHECK(rc == 0);
  const std::vector<std::string> lines = lines_with(text, "secret.wav");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("prepare-audio: warning: skipped ", 0) == 0);
  CHECK(contains(lines[0], "Permission denied"));
  CHECK(count_in(text, "warning:") == 1);
  CHECK(fs::exists(dir / "out.npy"));
}
