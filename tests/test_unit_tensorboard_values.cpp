// Unit tests of the TensorBoard messages besides scalars (Summary.Image, Summary.Audio, HistogramProto,
// text through the tensor plugin), the thread-safe writer, the trainer's per-layer statistics and the
// in-memory PNG and WAV encoders: bytes compared with TensorBoard's own protobuf serialisation, written
// files read back by the tests' independent reader (tests/tfrecord_reader.h, its own CRC32C).
#include <doctest/doctest.h>

#include <stb_image.h>

#include <algorithm>
#include <cfloat>
#include <map>
#include <set>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "audio/tensorboard_audio.h"
#include "engine/core/rng.h"
#include "engine/formats/png.h"
#include "engine/formats/tensorboard.h"
#include "engine/nn/dcgan.h"
#include "engine/train/telemetry.h"
#include "tests/test_util.h"
#include "tests/tfrecord_reader.h"

namespace fs = std::filesystem;
using namespace ds;
using namespace ds::test::tfrecord;

namespace {

std::string bytes_of(std::initializer_list<unsigned char> list) { return std::string(list.begin(), list.end()); }

// The one event file a fresh writer made in dir, decoded.
std::vector<Event> events_in(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path());
  REQUIRE(files.size() == 1);
  return read_event_file(files[0].string());
}

// TensorFlow's default histogram limits rebuilt here from histogram.cc's description (the same loop:
// repeated multiplication, so every double matches), to check the writer's table against.
std::vector<double> tensorflow_limits() {
  std::vector<double> pos;
  for (double v = 1.0e-12; v < 1.0e20; v *= 1.1) pos.push_back(v);
  pos.push_back(DBL_MAX);
  std::vector<double> all;
  for (auto it = pos.rbegin(); it != pos.rend(); ++it) all.push_back(-*it);
  all.push_back(0.0);
  all.insert(all.end(), pos.begin(), pos.end());
  return all;
}

}  // namespace

// Each expected payload was made once with tensorboard 2.21.0 (PyPI), whose own generated protobuf
// classes serialise the message (tests print the script's lines):
//   from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
//   S = summary_pb2.Summary
//   event_pb2.Event(wall_time=1700000000.5, step=7, summary=S(value=[...])).SerializeToString()
TEST_CASE("unit tensorboard image event matches TensorBoard's own bytes") {
  // S.Value(tag="samples", image=S.Image(height=2, width=3, colorspace=1, encoded_image_string=b"PNGDATA"))
  const std::string expected = bytes_of({0x09, 0x00, 0x00, 0x20, 0x40, 0xfc, 0x54, 0xd9, 0x41, 0x10, 0x07, 0x2a, 0x1c,
                                         0x0a, 0x1a, 0x0a, 0x07, 0x73, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x73, 0x22, 0x0f,
                                         0x08, 0x02, 0x10, 0x03, 0x18, 0x01, 0x22, 0x07, 0x50, 0x4e, 0x47, 0x44, 0x41,
                                         0x54, 0x41});
  CHECK(encode_image_event("samples", "PNGDATA", 2, 3, 1, 7, 1700000000.5) == expected);
}

TEST_CASE("unit tensorboard audio event matches TensorBoard's own bytes") {
  // S.Value(tag="audio/clip_0", audio=S.Audio(sample_rate=8000.0, num_channels=1, length_frames=3,
  //         encoded_audio_string=b"RIFF", content_type="audio/wav"))
  const std::string expected = bytes_of(
      {0x09, 0x00, 0x00, 0x20, 0x40, 0xfc, 0x54, 0xd9, 0x41, 0x10, 0x07, 0x2a, 0x2c, 0x0a, 0x2a, 0x0a, 0x0c, 0x61, 0x75,
       0x64, 0x69, 0x6f, 0x2f, 0x63, 0x6c, 0x69, 0x70, 0x5f, 0x30, 0x32, 0x1a, 0x0d, 0x00, 0x00, 0xfa, 0x45, 0x10, 0x01,
       0x18, 0x03, 0x22, 0x04, 0x52, 0x49, 0x46, 0x46, 0x2a, 0x09, 0x61, 0x75, 0x64, 0x69, 0x6f, 0x2f, 0x77, 0x61, 0x76});
  CHECK(encode_audio_event("audio/clip_0", "RIFF", 8000.0f, 1, 3, 7, 1700000000.5) == expected);
}

TEST_CASE("unit tensorboard histogram event matches TensorBoard's own bytes") {
  // S.Value(tag="weights/x", histo=summary_pb2.HistogramProto(min=-0.5, max=2.0, num=3, sum=1.75,
  //         sum_squares=4.5, bucket_limit=[-0.45, 0.0, 2.1], bucket=[1.0, 0.0, 2.0]))   (packed doubles)
  const std::string expected = bytes_of(
      {0x09, 0x00, 0x00, 0x20, 0x40, 0xfc, 0x54, 0xd9, 0x41, 0x10, 0x07, 0x2a, 0x70, 0x0a, 0x6e, 0x0a, 0x09, 0x77, 0x65,
       0x69, 0x67, 0x68, 0x74, 0x73, 0x2f, 0x78, 0x2a, 0x61, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0xbf, 0x11,
       0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x19, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x40, 0x21, 0x00,
       0x00, 0x00, 0x00, 0x00, 0x00, 0xfc, 0x3f, 0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x40, 0x32, 0x18, 0xcd,
       0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xdc, 0xbf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xcd, 0xcc, 0xcc, 0xcc,
       0xcc, 0xcc, 0x00, 0x40, 0x3a, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00,
       0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40});
  TensorBoardHistogram h;
  h.min = -0.5;
  h.max = 2.0;
  h.num = 3;
  h.sum = 1.75;
  h.sum_squares = 4.5;
  h.bucket_limit = {-0.45, 0.0, 2.1};
  h.bucket = {1.0, 0.0, 2.0};
  CHECK(encode_histogram_event("weights/x", h, 7, 1700000000.5) == expected);
}

TEST_CASE("unit tensorboard text event matches TensorBoard's own bytes") {
  // md = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
  //   (byte for byte what tensorboard.plugins.text.metadata.create_summary_metadata() writes)
  // t = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(),
  //                            string_val=[b'{"a":1}'])
  // S.Value(tag="config", metadata=md, tensor=t)
  const std::string expected = bytes_of({0x09, 0x00, 0x00, 0x20, 0x40, 0xfc, 0x54, 0xd9, 0x41, 0x10, 0x07, 0x2a, 0x23,
                                         0x0a, 0x21, 0x0a, 0x06, 0x63, 0x6f, 0x6e, 0x66, 0x69, 0x67, 0x42, 0x0d, 0x08,
                                         0x07, 0x12, 0x00, 0x42, 0x07, 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x31, 0x7d, 0x4a,
                                         0x08, 0x0a, 0x06, 0x0a, 0x04, 0x74, 0x65, 0x78, 0x74});
  CHECK(encode_text_event("config", "{\"a\":1}", 7, 1700000000.5) == expected);
}

TEST_CASE("unit tensorboard histogram buckets are TensorFlow's, counted and collapsed as histogram.cc does") {
  const std::vector<double> limits = tensorflow_limits();
  REQUIRE(default_histogram_limits() == limits);
  CHECK(limits.size() == 1551);  // 775 limits a side (1e-12 · 1.1^k below 1e20, and DBL_MAX), and 0
  // Values on both sides, two in one bucket, zero, tiny, exact limits, large.
  const std::vector<float> values = {0.0f, 0.5f, 0.5f, -0.5f, 1e-13f, -3.0f, 1e6f, static_cast<float>(limits[800]),
                                     0.02f, -0.02f, 0.021f};
  const TensorBoardHistogram h = make_histogram(values.data(), values.size());
  double sum = 0, sum_squares = 0;
  for (float v : values) {
    sum += v;
    sum_squares += double(v) * v;
  }
  CHECK(h.num == values.size());
  CHECK(h.min == -3.0);
  CHECK(h.max == 1e6);
  CHECK(h.sum == sum);  // the same float → double sums in the same order: exact
  CHECK(h.sum_squares == sum_squares);
  REQUIRE(h.bucket.size() == h.bucket_limit.size());
  double total = 0;
  for (double c : h.bucket) total += c;
  CHECK(total == values.size());
  // Every written limit is one of TensorFlow's, ascending; no two empty buckets in a row (collapsed).
  for (size_t i = 0; i < h.bucket.size(); ++i) {
    CAPTURE(i);
    CHECK(std::binary_search(limits.begin(), limits.end(), h.bucket_limit[i]));
    if (i > 0) CHECK(h.bucket_limit[i] > h.bucket_limit[i - 1]);
    if (i > 0) CHECK_FALSE((h.bucket[i] == 0 && h.bucket[i - 1] == 0));
  }
  CHECK(h.bucket_limit.back() == DBL_MAX);  // the run of empty buckets up to the end
  // Each non-empty bucket holds exactly the values in [the TF limit just below it, its limit).
  for (size_t i = 0; i < h.bucket.size(); ++i) {
    if (h.bucket[i] == 0) continue;
    const auto it = std::lower_bound(limits.begin(), limits.end(), h.bucket_limit[i]);
    REQUIRE(it != limits.begin());
    const double lo = *(it - 1), hi = *it;
    int count = 0;
    for (float v : values) count += (v >= lo && v < hi) ? 1 : 0;
    CAPTURE(hi);
    CHECK(h.bucket[i] == count);
  }
  // An exact limit counts in the bucket above it (upper_bound): [limits[800], limits[801]).
  bool found = false;
  for (size_t i = 0; i < h.bucket.size(); ++i)
    if (h.bucket_limit[i] == limits[801]) found = h.bucket[i] == 1;
  CHECK(found);
  const TensorBoardHistogram empty = make_histogram(nullptr, 0);
  CHECK(empty.num == 0);
  CHECK(empty.bucket.empty());
}

TEST_CASE("unit tensorboard image, audio, histogram and text read back from a file with valid crcs") {
  const std::string dir = ds::test::fresh_dir("tensorboard/values").string();
  // A 3-image grey grid with known pixels, as the trainer sends it.
  const int n = 3, c = 1, hgt = 4, wid = 5;
  std::vector<float> images(n * c * hgt * wid);
  for (size_t i = 0; i < images.size(); ++i) images[i] = -1.0f + 2.0f * float(i % 17) / 16.0f;
  const EncodedPng png = encode_png_grid(images.data(), n, c, hgt, wid, 2);
  int grid_h = 0, grid_w = 0;
  const std::vector<uint8_t> pixels = make_image_grid(&grid_h, &grid_w, images.data(), n, c, hgt, wid, 2);
  CHECK(png.height == grid_h);
  CHECK(png.width == grid_w);
  CHECK(png.channels == 1);
  std::vector<float> audio(800);
  for (size_t i = 0; i < audio.size(); ++i) audio[i] = 0.5f * std::sin(0.05f * float(i));
  const std::string wav = encode_wav_pcm16(audio.data(), static_cast<int64_t>(audio.size()), 8000);
  const std::vector<float> weights = {0.25f, -1.5f, 3.0f, 0.0f, 0.25f};
  const std::string text = "{\"batch\": 8, \"ü\": \"∞\"}";
  {
    TensorBoardWriter writer(dir);
    writer.add_image("samples", std::string(png.bytes.begin(), png.bytes.end()), png.height, png.width, 1, 12);
    writer.add_audio("audio/clip_0", wav, 8000.0f, 1, static_cast<int64_t>(audio.size()), 12);
    writer.add_histogram("weights/netG.main.0.weight", weights.data(), weights.size(), 13);
    writer.add_text("config", text, 0);
    writer.flush();
  }
  const std::vector<Event> events = events_in(dir);  // read_tfrecords checks both crcs of every record
  REQUIRE(events.size() == 5);
  CHECK(events[0].file_version == "brain.Event:2");
  for (size_t i = 1; i < events.size(); ++i) REQUIRE(events[i].values.size() == 1);

  const SummaryValue& image = events[1].values[0];
  CHECK(events[1].step == 12);
  CHECK(image.tag == "samples");
  REQUIRE(image.kind == ValueKind::Image);
  CHECK(image.image.height == grid_h);
  CHECK(image.image.width == grid_w);
  CHECK(image.image.colorspace == 1);
  // The PNG decodes (stb_image, another decoder than the encoder's) to the grid's pixels.
  int dh = 0, dw = 0, dc = 0;
  unsigned char* decoded = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(image.image.encoded.data()),
                                                 static_cast<int>(image.image.encoded.size()), &dw, &dh, &dc, 0);
  REQUIRE(decoded != nullptr);
  CHECK(dh == grid_h);
  CHECK(dw == grid_w);
  CHECK(dc == 1);
  CHECK(std::memcmp(decoded, pixels.data(), pixels.size()) == 0);
  stbi_image_free(decoded);

  const SummaryValue& a = events[2].values[0];
  CHECK(a.tag == "audio/clip_0");
  REQUIRE(a.kind == ValueKind::Audio);
  CHECK(a.audio.sample_rate == 8000.0f);
  CHECK(a.audio.num_channels == 1);
  CHECK(a.audio.length_frames == 800);
  CHECK(a.audio.content_type == "audio/wav");
  CHECK(a.audio.encoded == wav);

  const SummaryValue& hist = events[3].values[0];
  CHECK(events[3].step == 13);
  REQUIRE(hist.kind == ValueKind::Histogram);
  CHECK(hist.histogram.min == -1.5);
  CHECK(hist.histogram.max == 3.0);
  CHECK(hist.histogram.num == 5);
  CHECK(hist.histogram.sum == 2.0);
  CHECK(hist.histogram.sum_squares == 0.0625 + 2.25 + 9.0 + 0.0625);
  const TensorBoardHistogram expected = make_histogram(weights.data(), weights.size());
  CHECK(hist.histogram.bucket_limit == expected.bucket_limit);
  CHECK(hist.histogram.bucket == expected.bucket);

  const SummaryValue& t = events[4].values[0];
  CHECK(events[4].step == 0);
  CHECK(t.tag == "config");
  REQUIRE(t.kind == ValueKind::Tensor);
  CHECK(t.plugin_name == "text");
  CHECK(t.plugin_content.empty());
  CHECK(t.tensor.dtype == 7);  // DT_STRING
  CHECK(t.tensor.has_shape);
  CHECK(t.tensor.dims.empty());  // a scalar
  REQUIRE(t.tensor.string_val.size() == 1);
  CHECK(t.tensor.string_val[0] == text);
}

TEST_CASE("unit tensorboard writer from several threads: every record whole, none lost") {
  const std::string dir = ds::test::fresh_dir("tensorboard/threads").string();
  const int threads = 4, per_thread = 150;
  {
    TensorBoardWriter writer(dir);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&writer, t] {
        const std::string big(3000 + 500 * t, static_cast<char>('a' + t));  // records longer than stdio's buffer
        for (int i = 0; i < per_thread; ++i) {
          if (i % 3 == 0) writer.add_audio("audio/t" + std::to_string(t), big, 8000.f, 1, 1, i);
          else writer.add_scalar("t" + std::to_string(t), float(i), i);
          if (i % 10 == 0) writer.flush();
        }
      });
    for (std::thread& th : pool) th.join();
    writer.flush();
  }
  const std::vector<Event> events = events_in(dir);
  REQUIRE(events.size() == 1 + threads * per_thread);
  std::vector<std::vector<int>> seen(threads, std::vector<int>(per_thread, 0));
  for (size_t e = 1; e < events.size(); ++e) {
    REQUIRE(events[e].values.size() == 1);
    const SummaryValue& v = events[e].values[0];
    const bool audio = v.kind == ValueKind::Audio;
    const int t = v.tag[audio ? 7 : 1] - '0';
    REQUIRE((t >= 0 && t < threads));
    if (audio) CHECK(v.audio.encoded == std::string(3000 + 500 * t, static_cast<char>('a' + t)));
    else CHECK(v.simple_value == float(events[e].step));
    seen[t][events[e].step] += 1;
  }
  for (int t = 0; t < threads; ++t)
    for (int i = 0; i < per_thread; ++i) CHECK(seen[t][i] == 1);
}

TEST_CASE("unit tensorboard wav bytes: a plain 16-bit PCM header and rounded, clipped samples") {
  const std::vector<float> x = {0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 2.0f, -3.0f, 1e-5f};
  const std::string wav = encode_wav_pcm16(x.data(), static_cast<int64_t>(x.size()), 22050);
  REQUIRE(wav.size() == 44 + 2 * x.size());
  auto u32 = [&](size_t o) { return uint32_t(uint8_t(wav[o])) | uint32_t(uint8_t(wav[o + 1])) << 8 |
                                    uint32_t(uint8_t(wav[o + 2])) << 16 | uint32_t(uint8_t(wav[o + 3])) << 24; };
  auto i16 = [&](size_t o) { return int16_t(uint16_t(uint8_t(wav[o])) | uint16_t(uint8_t(wav[o + 1])) << 8); };
  CHECK(wav.substr(0, 4) == "RIFF");
  CHECK(u32(4) == wav.size() - 8);
  CHECK(wav.substr(8, 8) == "WAVEfmt ");
  CHECK(u32(16) == 16);
  CHECK(i16(20) == 1);   // PCM
  CHECK(i16(22) == 1);   // mono
  CHECK(u32(24) == 22050);
  CHECK(u32(28) == 44100);
  CHECK(i16(32) == 2);
  CHECK(i16(34) == 16);
  CHECK(wav.substr(36, 4) == "data");
  CHECK(u32(40) == 2 * x.size());
  const int16_t expected[] = {0, 16384, -16384, 32767, -32767, 32767, -32767, 0};  // round(x · 32767), clipped
  for (size_t i = 0; i < x.size(); ++i) CHECK(i16(44 + 2 * i) == expected[i]);
}

TEST_CASE("unit telemetry per-layer norms, update ratios and batch-norm statistics against direct sums") {
  ModelConfig mc;
  mc.height = mc.width = 8;
  mc.channels = 1;
  mc.nz = 4;
  mc.ngf = 4;
  mc.ndf = 4;
  Generator G(mc, 3, Device::CPU);
  G.init_weights(3, 0);
  std::vector<float> z(3 * 4);
  Philox(5, 0).fill_normal(z.data(), 0.f, 1.f, static_cast<int64_t>(z.size()));
  G.forward(Tensor::from_host(z, {3, 4, 1, 1}, Device::CPU), true);  // fills the BN batch statistics

  NetworkSnapshot snap;
  snap.params = G.params().to_host();
  snap.grads.resize(snap.params.size());
  snap.params_before = snap.params;
  for (size_t i = 0; i < snap.grads.size(); ++i) {
    snap.grads[i] = 0.01f * float(int(i % 7) - 3);
    snap.params_before[i] = snap.params[i] - 1e-3f * float(int(i % 5) - 2);
  }
  const std::string dir = ds::test::fresh_dir("tensorboard/telemetry").string();
  {
    TensorBoardWriter writer(dir);
    add_parameter_scalars(writer, "netG", G, snap, 9);
    add_batchnorm_scalars(writer, "netG", G, 9);
    add_parameter_histograms(writer, "netG", G, snap, 9);
    writer.flush();
  }
  std::map<std::string, const SummaryValue*> by_tag;
  const std::vector<Event> events = events_in(dir);
  for (const Event& e : events)
    for (const SummaryValue& v : e.values) {
      CHECK(e.step == 9);
      by_tag[v.tag] = &v;
    }
  const auto& params = G.parameters();
  const auto& offsets = G.parameter_offsets();
  for (size_t p = 0; p < params.size(); ++p) {
    const std::string name = "netG." + params[p].name;
    CAPTURE(name);
    double w = 0, g = 0, d = 0, b = 0;
    const size_t at = offsets[p];
    for (int64_t i = 0; i < params[p].tensor.numel(); ++i) {
      w += double(snap.params[at + i]) * snap.params[at + i];
      g += double(snap.grads[at + i]) * snap.grads[at + i];
      const double delta = double(snap.params[at + i]) - snap.params_before[at + i];
      d += delta * delta;
      b += double(snap.params_before[at + i]) * snap.params_before[at + i];
    }
    REQUIRE(by_tag.count("weight_norm/" + name));
    REQUIRE(by_tag.count("grad_norm/" + name));
    REQUIRE(by_tag.count("update_ratio/" + name));
    REQUIRE(by_tag.count("weights/" + name));
    REQUIRE(by_tag.count("grads/" + name));
    // Stored as float: one float rounding of a double result (relative 2^-24 ≈ 6e-8).
    CHECK(by_tag["weight_norm/" + name]->simple_value == doctest::Approx(std::sqrt(w)).epsilon(1e-7));
    CHECK(by_tag["grad_norm/" + name]->simple_value == doctest::Approx(std::sqrt(g)).epsilon(1e-7));
    CHECK(by_tag["update_ratio/" + name]->simple_value == doctest::Approx(std::sqrt(d) / std::sqrt(b)).epsilon(1e-7));
    CHECK(by_tag["weights/" + name]->histogram.num == params[p].tensor.numel());
  }
  int bn_layers = 0;
  for (Stage& s : G.stages()) {
    if (!s.has_bn) continue;
    ++bn_layers;
    // The batch statistics straight from the conv output (pre): per channel over N, H, W, biased.
    const std::vector<float> pre = s.pre.to_host();
    const int64_t N = s.pre.shape()[0], C = s.pre.shape()[1], HW = s.pre.shape()[2] * s.pre.shape()[3];
    double mean_of_means = 0, mean_of_vars = 0;
    for (int64_t ch = 0; ch < C; ++ch) {
      double m = 0, v = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) m += pre[(n * C + ch) * HW + i];
      m /= double(N * HW);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) v += (pre[(n * C + ch) * HW + i] - m) * (pre[(n * C + ch) * HW + i] - m);
      mean_of_means += m / double(C);
      mean_of_vars += v / double(N * HW) / double(C);
    }
    const std::string layer = "netG.main." + std::to_string(s.seq_bn);
    CAPTURE(layer);
    REQUIRE(by_tag.count("bn_batch_mean/" + layer));
    REQUIRE(by_tag.count("bn_batch_var/" + layer));
    // The op's float32 statistics against double sums of the same floats. Mean: float accumulation over
    // N·H·W ≤ 192 values of size ~0.05 is off by far less than 1e-6 absolute. Variance: invstd stored
    // in float, var = 1/invstd² − eps, plus float accumulation in the op: relative 1e-4 (~1000 float ulps).
    CHECK(std::fabs(by_tag["bn_batch_mean/" + layer]->simple_value - mean_of_means) < 1e-6);
    CHECK(by_tag["bn_batch_var/" + layer]->simple_value == doctest::Approx(mean_of_vars).epsilon(1e-4));
    CHECK(by_tag["bn_batch_var/" + layer]->simple_value > 0);
  }
  CHECK(bn_layers >= 1);
}

TEST_CASE("unit tensorboard audio preview: submissions never wait, the newest always lands, skips are counted") {
  MelOverrides o;
  o.sr = 8000;
  o.slice_seconds = 2.0;
  o.n_mels = 32;
  o.n_fft = 1024;
  o.frames = 64;
  MelDatasetInfo info;
  info.mel = build_mel_params("default", o);
  info.height = 32;
  info.width = 64;
  info.count = 1;
  info.recorded_median_ref_db = 0.0;
  AudioPreviewOptions options;
  options.clips = 2;
  options.seconds_total = 1.0;  // 0.5 s a clip: cut from the 2-s slice
  options.listen.gl_iters = 4;  // the bookkeeping is under test here, not the inversion's quality
  options.listen.nnls_iters = 10;
  const std::string dir = ds::test::fresh_dir("tensorboard/audio_preview").string();
  const int submissions = 5;
  int64_t preview_written = 0;
  {
    auto writer = std::make_shared<TensorBoardWriter>(dir);
    MelAudioPreview preview(info, options);
    const SampleHook hook = preview.hook();
    std::vector<float> samples(3 * 32 * 64);  // three samples; two clips are taken
    Philox rng(11, 0);
    for (int step = 1; step <= submissions; ++step) {
      for (float& x : samples) x = static_cast<float>(2 * rng.uniform() - 1);
      hook.on_samples(writer, step, samples);
    }
    hook.finish();
    // Each submission is written or was replaced while still pending (thread timing decides how many):
    // none is lost track of, and the last one (finish waits for it) is always written.
    CHECK(preview.written() + preview.skipped() == submissions);
    CHECK(preview.written() >= 1);
    CHECK(preview.last_error().empty());
    preview_written = preview.written();
  }
  std::map<std::string, std::set<int64_t>> steps;
  for (const Event& e : events_in(dir))
    for (const SummaryValue& v : e.values) {
      steps[v.tag].insert(e.step);
      if (v.kind == ValueKind::Audio) {
        CHECK(v.audio.length_frames == 4000);
        CHECK(v.audio.sample_rate == 8000.f);
      }
      if (v.tag.rfind("mel/", 0) == 0) CHECK((v.kind == ValueKind::Image && v.image.colorspace == 3));
    }
  for (const char* tag : {"audio/clip_0", "audio/clip_1", "mel/clip_0", "mel/clip_1"}) {
    CAPTURE(tag);
    REQUIRE(steps.count(tag));
    CHECK(steps[tag].count(submissions) == 1);
  }
  CHECK(static_cast<int64_t>(steps["audio/clip_0"].size()) == preview_written);
  CHECK(steps.size() == 4);
}
