// End to end on the CPU through the command line: a tiny image run and a tiny mel run (a few steps,
// seconds) and their TensorBoard event files read back by the tests' own reader (tests/tfrecord_reader.h):
// every expected tag with its value type at exactly the expected steps, and the mel run's audio.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "audio/listen.h"
#include "audio/prepare_audio.h"
#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/nn/dcgan.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"
#include "tests/tfrecord_reader.h"

namespace fs = std::filesystem;
using namespace ds;
using namespace ds::test::tfrecord;

namespace {

// tag → (step → kind) over every event file of a run folder (one here).
using TagSteps = std::map<std::string, std::map<int64_t, ValueKind>>;

struct RunEvents {
  TagSteps tags;
  std::vector<Event> events;
};

RunEvents read_run(const fs::path& run) {
  RunEvents r;
  int files = 0;
  for (const auto& entry : fs::directory_iterator(run)) {
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) != 0) continue;
    ++files;
    for (Event& e : read_event_file(entry.path().string())) {
      for (const SummaryValue& v : e.values) {
        INFO(v.tag << " step " << e.step);
        CHECK(r.tags[v.tag].count(e.step) == 0);  // written once per step
        r.tags[v.tag][e.step] = v.kind;
      }
      r.events.push_back(std::move(e));
    }
  }
  CHECK(files == 1);
  return r;
}

std::string train(const std::string& data, const fs::path& run) {
  const std::string cmd = std::string(DS_DARKSTAR_EXE) + " train --device cpu --data " + data + " --out " +
                          run.string() +
                          " --steps 4 --batch 4 --nz 8 --ngf 8 --ndf 8 --log-every 2 --sample-every 2"
                          " --histogram-every 3 --checkpoint-every 0 > " +
                          (run.string() + ".log") + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream log(run.string() + ".log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  REQUIRE_MESSAGE(status == 0, cmd << "\n" << text);
  return text;
}

void expect_steps(const TagSteps& tags, const std::string& tag, ValueKind kind, const std::set<int64_t>& steps) {
  INFO("tag " << tag);
  REQUIRE(tags.count(tag) == 1);
  std::set<int64_t> got;
  for (const auto& [step, k] : tags.at(tag)) {
    got.insert(step);
    CHECK(k == kind);
  }
  CHECK(got == steps);
}

// What both runs must hold: steps 2 and 4 logged, histograms at 3 and 4 (the last step), samples at 2, 4.
void expect_common_tags(const RunEvents& r, const ModelConfig& mc, int64_t sample_h, int64_t sample_w) {
  const TagSteps& tags = r.tags;
  for (const char* tag : {"Loss_D", "Loss_G", "D(x)", "D(G(z))/before_D_update", "D(G(z))/after_D_update",
                          "images_per_second"})
    expect_steps(tags, tag, ValueKind::Simple, {2, 4});
  expect_steps(tags, "config", ValueKind::Tensor, {0});
  expect_steps(tags, "samples", ValueKind::Image, {2, 4});
  Generator G(mc, 1, Device::CPU);
  Discriminator D(mc, 1, Device::CPU);
  for (int n = 0; n < 2; ++n) {
    Network& net = n == 0 ? static_cast<Network&>(G) : static_cast<Network&>(D);
    const std::string prefix = n == 0 ? "netG." : "netD.";
    for (const NamedTensor& p : net.parameters()) {
      for (const char* kind : {"weight_norm/", "grad_norm/", "update_ratio/"})
        expect_steps(tags, kind + prefix + p.name, ValueKind::Simple, {2, 4});
      expect_steps(tags, "weights/" + prefix + p.name, ValueKind::Histogram, {3, 4});
      expect_steps(tags, "grads/" + prefix + p.name, ValueKind::Histogram, {3, 4});
    }
    int bn = 0;
    for (const Stage& s : net.stages()) {
      if (!s.has_bn) continue;
      ++bn;
      expect_steps(tags, "bn_batch_mean/" + prefix + "main." + std::to_string(s.seq_bn), ValueKind::Simple, {2, 4});
      expect_steps(tags, "bn_batch_var/" + prefix + "main." + std::to_string(s.seq_bn), ValueKind::Simple, {2, 4});
    }
    CHECK(bn >= 1);
  }
  // Values: finite norms, update ratios of an Adam step with lr 2e-4 (small, not zero), the grid's size
  // (64 samples, 8 a row, 2-pixel padding), the configuration JSON.
  for (const Event& e : r.events)
    for (const SummaryValue& v : e.values) {
      INFO(v.tag << " step " << e.step);
      if (v.kind == ValueKind::Simple) CHECK(std::isfinite(v.simple_value));
      // Update ratios: > 0; for weights (conv kernels, BN gammas), which start far from 0, an Adam step
      // of ~lr per element is a small fraction (BN betas start at 0, so theirs may be near 1 early on).
      if (v.tag.rfind("update_ratio/", 0) == 0) CHECK(v.simple_value > 0);
      if (v.tag.rfind("update_ratio/", 0) == 0 && v.tag.size() > 7 && v.tag.substr(v.tag.size() - 7) == ".weight")
        CHECK(v.simple_value < 0.5);
      if (v.tag.rfind("weight_norm/", 0) == 0) CHECK(v.simple_value > 0);
      if (v.tag.rfind("bn_batch_var/", 0) == 0) CHECK(v.simple_value > 0);
      if (v.tag == "samples") {
        CHECK(v.image.height == 8 * (sample_h + 2) + 2);
        CHECK(v.image.width == 8 * (sample_w + 2) + 2);
        CHECK(v.image.colorspace == 1);
        CHECK(v.image.encoded.substr(1, 3) == "PNG");
      }
      if (v.kind == ValueKind::Histogram) {
        double total = 0;
        for (double c : v.histogram.bucket) total += c;
        CHECK(total == v.histogram.num);
        CHECK(v.histogram.num > 0);
      }
      if (v.tag == "config") {
        CHECK(v.plugin_name == "text");
        REQUIRE(v.tensor.string_val.size() == 1);
        CHECK(ds::test::contains(v.tensor.string_val[0], "\"batch\":4"));
        CHECK(ds::test::contains(v.tensor.string_val[0], "\"steps\":4"));
      }
    }
}

}  // namespace

TEST_CASE("e2e tensorboard image run: scalars, per-layer statistics, histograms, sample grids and config") {
  const fs::path dir = ds::test::fresh_dir("e2e_tensorboard_image");
  const int64_t count = 8, S = 16;
  std::vector<uint8_t> pixels(count * S * S);
  Philox rng(3, 0);
  for (uint8_t& p : pixels) p = static_cast<uint8_t>(rng.uniform() * 255);
  const std::string data = (dir / "noise.npy").string();
  write_npy(data, DType::U8, {count, 1, S, S}, pixels.data());
  train(data, dir / "run");
  const RunEvents r = read_run(dir / "run");
  ModelConfig mc;
  mc.height = mc.width = S;
  mc.channels = 1;
  mc.nz = 8;
  mc.ngf = 8;
  mc.ndf = 8;
  expect_common_tags(r, mc, S, S);
  // One SessionLog START, at the first step trained (TensorBoard's mark of a run's start; see
  // TensorBoardWriter::add_session_start), right after the file_version event.
  int starts = 0;
  for (const Event& e : r.events)
    if (e.has_session_log) {
      ++starts;
      CHECK(e.session_status == 1);
      CHECK(e.step == 1);
      CHECK(e.values.empty());
    }
  CHECK(starts == 1);
  REQUIRE(r.events.size() > 2);
  CHECK(r.events[1].has_session_log);
  for (const auto& [tag, steps] : r.tags) {
    CHECK(tag.rfind("audio/", 0) != 0);  // no sound without a mel dataset
    CHECK(tag.rfind("mel/", 0) != 0);
  }
}

TEST_CASE("e2e tensorboard mel run: generated clips as audio and magma mel images at every sample step") {
  const fs::path dir = ds::test::fresh_dir("e2e_tensorboard_mel");
  // 12 s of a rising tone at 8 kHz → six 2-s slices of 32 mels × 64 frames.
  const int sr = 8000;
  std::vector<float> tone(12 * sr);
  for (size_t i = 0; i < tone.size(); ++i) {
    const double t = double(i) / sr;
    tone[i] = static_cast<float>(0.3 * std::sin(2 * M_PI * (200 * t + 40 * t * t)));
  }
  fs::create_directories(dir / "in");
  write_wav_float((dir / "in" / "tone.wav").string(), tone.data(), static_cast<int64_t>(tone.size()), sr);
  MelOverrides o;
  o.sr = sr;
  o.slice_seconds = 2.0;
  o.n_mels = 32;
  o.n_fft = 1024;
  o.frames = 64;
  PrepareAudioOptions po;
  po.mel = build_mel_params("default", o);
  po.progress = false;
  const std::string data = (dir / "tone.npy").string();
  const PrepareAudioResult prepared = prepare_audio((dir / "in").string(), data, po);
  REQUIRE(prepared.count >= 4);
  const std::string log = train(data, dir / "run");
  const RunEvents r = read_run(dir / "run");
  ModelConfig mc;
  mc.height = 32;
  mc.width = 64;
  mc.channels = 1;
  mc.nz = 8;
  mc.ngf = 8;
  mc.ndf = 8;
  expect_common_tags(r, mc, 32, 64);
  // Two clips, each cut to 3 s of the 2-s slice (so the whole slice), at both sample steps: the last
  // step's audio always lands before the process exits; step 2's unless the worker had not even started
  // it by step 4 (thread scheduling on a loaded machine), and then the log says it was skipped.
  const bool step2_skipped = ds::test::contains(log, "TensorBoard audio of step 2 skipped");
  const std::set<int64_t> audio_steps = step2_skipped ? std::set<int64_t>{4} : std::set<int64_t>{2, 4};
  for (const char* clip : {"clip_0", "clip_1"}) {
    expect_steps(r.tags, std::string("audio/") + clip, ValueKind::Audio, audio_steps);
    expect_steps(r.tags, std::string("mel/") + clip, ValueKind::Image, audio_steps);
  }
  CHECK_FALSE(ds::test::contains(log, "TensorBoard audio of step 4"));  // neither skipped nor failed
  for (const Event& e : r.events)
    for (const SummaryValue& v : e.values) {
      INFO(v.tag << " step " << e.step);
      if (v.kind == ValueKind::Audio) {
        CHECK(v.audio.sample_rate == float(sr));
        CHECK(v.audio.num_channels == 1);
        CHECK(v.audio.length_frames == 2 * sr);
        CHECK(v.audio.content_type == "audio/wav");
        REQUIRE(v.audio.encoded.size() == 44 + 2 * size_t(2 * sr));
        CHECK(v.audio.encoded.substr(0, 4) == "RIFF");
        // Not silence: Griffin-Lim of a generated mel at the dataset's level.
        double energy = 0;
        for (size_t i = 44; i + 1 < v.audio.encoded.size(); i += 2) {
          const int16_t s = int16_t(uint16_t(uint8_t(v.audio.encoded[i])) | uint16_t(uint8_t(v.audio.encoded[i + 1])) << 8);
          energy += double(s) * s;
        }
        CHECK(energy > 0);
      }
      if (v.tag.rfind("mel/", 0) == 0) {
        CHECK(v.image.height == 32);
        CHECK(v.image.width == 64);
        CHECK(v.image.colorspace == 3);
      }
    }
}
