// Helpers shared by the test files (tests/*.cpp and tests/gpu/*.cpp): random inputs, error measures,
// the real-music clip, temp folders and device copies, so each test file keeps only what is its own.
#pragma once
#include <doctest/doctest.h>
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/compare.h"
#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"

namespace ds::test {

// The poison written into outputs before a kernel runs, so an element it fails to write shows up.
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// n values uniform in [lo, hi) of type T; drawn in order from rng, so a seed fixes the whole test.
template <class T, class Rng>
std::vector<T> random_uniform(size_t n, T lo, T hi, Rng& rng) {
  std::uniform_real_distribution<T> dist(lo, hi);
  std::vector<T> v(n);
  for (T& e : v) e = dist(rng);
  return v;
}

// Float inputs for kernels and the float engine (any std engine: mt19937 or mt19937_64).
template <class Rng>
std::vector<float> random_floats(size_t n, float lo, float hi, Rng& rng) {
  return random_uniform<float>(n, lo, hi, rng);
}

// Double inputs for the gradchecks, whose finite differences need double precision.
template <class Rng>
std::vector<double> random_doubles(size_t n, double lo, double hi, Rng& rng) {
  return random_uniform<double>(n, lo, hi, rng);
}

// Elements whose bytes differ (so −0 ≠ +0 and NaN ≠ a number): the measure for bit-exact results.
template <class T>
size_t count_mismatches(const T* got, const T* want, size_t n) {
  size_t bad = 0;
  for (size_t k = 0; k < n; ++k) bad += std::memcmp(&got[k], &want[k], sizeof(T)) != 0;
  return bad;
}

// count_mismatches over two whole vectors, which must have the same length.
inline size_t count_mismatches(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  return count_mismatches(got.data(), want.data(), got.size());
}

// max|a−b| / max(floor, max|b|); NaN anywhere (an unwritten poisoned element) counts as infinite
// error. floor = 1 judges small outputs absolutely. The measure `darkstar doctor` uses too
// (engine/core/compare.h), with the sizes REQUIREd equal here.
inline double normalised_error(const std::vector<float>& got, const std::vector<float>& want, double floor) {
  REQUIRE(got.size() == want.size());
  return ds::max_normalised_error(got, want, floor);
}

// Gradchecks' max-normalised error max|a−b| / max|b|, so tiny entries are judged against the
// gradient's scale. Unlike normalised_error it neither checks sizes nor turns NaN into infinity.
inline double max_normalised_error(const std::vector<double>& analytic, const std::vector<double>& numeric) {
  double err = 0, scale = 0;
  for (size_t k = 0; k < analytic.size(); ++k) {
    err = std::max(err, std::abs(analytic[k] - numeric[k]));
    scale = std::max(scale, std::abs(numeric[k]));
  }
  return err / scale;
}

// max |got − want| in units of want's float ulp (NaN: infinite): the measure for "a few ulp" tolerances.
inline double max_ulps(const float* got, const float* want, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::abs(double(got[i]) - double(want[i]));
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    const float a = std::abs(want[i]);
    const double ulp = a == 0.0f ? std::numeric_limits<float>::denorm_min()
                                 : std::nextafter(a, std::numeric_limits<float>::infinity()) - a;
    worst = std::max(worst, d / ulp);
  }
  return worst;
}

// max_ulps over two whole vectors, which must have the same length.
inline double max_ulps(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  return max_ulps(got.data(), want.data(), got.size());
}

// The message of the std::exception fn throws ("" if it does not throw), to check what a refusal says.
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Whether text contains part (for messages checked by a key phrase rather than in full).
inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A real song (Ogg Vorbis, 44.1 kHz stereo, Debian package fretsonfire-songs-sectoid): real music
// exercises the audio paths as synthetic tones cannot.
inline const char* const kSectoidSong = "/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg";

// `seconds` of mono audio from `offset` seconds into kSectoidSong, decoded with libsndfile and
// downmixed by the mean of the channels.
inline std::vector<float> read_song(double offset, double seconds, int* sample_rate) {
  const std::string path = kSectoidSong;
  SF_INFO info{};
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
  REQUIRE_MESSAGE(f != nullptr, "cannot open " << path << " (Debian package fretsonfire-songs-sectoid)");
  *sample_rate = info.samplerate;
  const sf_count_t start = static_cast<sf_count_t>(offset * info.samplerate);
  const sf_count_t count = static_cast<sf_count_t>(seconds * info.samplerate);
  REQUIRE(sf_seek(f, start, SEEK_SET) == start);
  std::vector<float> interleaved(static_cast<size_t>(count * info.channels));
  REQUIRE(sf_readf_float(f, interleaved.data(), count) == count);
  sf_close(f);
  std::vector<float> mono(static_cast<size_t>(count));
  for (sf_count_t i = 0; i < count; ++i) {
    float sum = 0;
    for (int c = 0; c < info.channels; ++c) sum += interleaved[i * info.channels + c];
    mono[i] = sum / info.channels;
  }
  return mono;
}

#ifdef DS_TEST_TMP
// A fresh, empty folder DS_TEST_TMP/relative (under the build tree) for one test case, so reruns
// never see a previous run's files.
inline std::filesystem::path fresh_dir(const std::filesystem::path& relative) {
  const std::filesystem::path dir = std::filesystem::path(DS_TEST_TMP) / relative;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}
#endif

// A device buffer's contents, after waiting for the kernels enqueued on the context's stream.
template <class T>
std::vector<T> download(const DeviceBuffer<T>& b) {
  CudaContext::get().synchronize();  // the kernels ran on the context's stream
  return b.download();
}

// A device buffer of n copies of poison (kNaN for floats), so unwritten outputs are caught.
template <class T>
DeviceBuffer<T> poisoned(size_t n, T poison) {
  return DeviceBuffer<T>::from_host(std::vector<T>(n, poison));
}

}  // namespace ds::test
