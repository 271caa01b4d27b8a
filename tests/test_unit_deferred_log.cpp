// The trainer writes a logged step's line after the next step has been enqueued, from copies taken
// behind the step (engine/core/host_readback.h). These tests check that the deferral reports exactly
// the values of the step it names, in log.jsonl and in TensorBoard, against steps driven one at a time,
// and that a step that must read the device (a sample, a checkpoint, the last) still logs itself first.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/host_readback.h"
#include "engine/formats/npy.h"
#include "engine/train/trainer.h"
#include "tests/tfrecord_reader.h"

namespace fs = std::filesystem;

namespace {

struct Fixture {
  fs::path dir;
  std::string data;
  explicit Fixture(const char* name) : dir(fs::temp_directory_path() / name) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::vector<uint8_t> bytes(8 * 16 * 16);
    std::mt19937 rng(7);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng() & 0xff);
    data = (dir / "data.npy").string();
    ds::write_npy(data, ds::DType::U8, {8, 1, 16, 16}, bytes.data());
  }
  ~Fixture() { fs::remove_all(dir); }
  ds::TrainConfig config(const std::string& run, int64_t steps, int64_t log_every) const {
    ds::TrainConfig c;
    c.data_path = data;
    c.out_dir = (dir / run).string();
    c.model.height = c.model.width = 16;  // BN stages in both networks: their scalars are read back too
    c.model.nz = 4;
    c.model.ngf = c.model.ndf = 4;
    c.batch = 4;
    c.n_samples = 2;
    c.steps = steps;
    c.log_every = log_every;
    c.sample_every = 0;
    c.checkpoint_every = 0;
    c.quiet = true;
    return c;
  }
};

std::vector<nlohmann::json> log_lines(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / "log.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// tag → step → value, from every event file of the run folder.
std::map<std::string, std::map<int64_t, float>> scalars(const std::string& run_dir) {
  std::map<std::string, std::map<int64_t, float>> out;
  for (const auto& entry : fs::directory_iterator(run_dir)) {
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) != 0) continue;
    for (const auto& e : ds::test::tfrecord::read_event_file(entry.path().string()))
      for (const auto& v : e.values)
        if (v.kind == ds::test::tfrecord::ValueKind::Simple) out[v.tag][e.step] = v.simple_value;
  }
  return out;
}

}  // namespace

TEST_CASE("unit deferred log: every line holds the statistics of the step it names") {
  Fixture fx("darkstar_deferred_log");
  const int64_t steps = 6;
  // The reference: the same training driven step by step, the statistics read after each step.
  std::vector<std::vector<float>> expected;
  {
    ds::Trainer t(fx.config("manual", steps, 1000));
    for (int64_t s = 0; s < steps; ++s) {
      t.step();
      expected.push_back(t.statistics().to_host());
    }
  }
  ds::TrainConfig c = fx.config("run", steps, 1);
  std::vector<int64_t> reported;
  ds::Trainer t(c);
  t.run([&](const ds::StepStats& s) { reported.push_back(s.step); });
  const std::vector<nlohmann::json> lines = log_lines(c.out_dir);
  REQUIRE(lines.size() == static_cast<size_t>(steps));
  CHECK(reported == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  const auto tb = scalars(c.out_dir);
  for (int64_t s = 1; s <= steps; ++s) {
    const nlohmann::json& j = lines[static_cast<size_t>(s - 1)];
    const std::vector<float>& e = expected[static_cast<size_t>(s - 1)];
    CAPTURE(s);
    CHECK(j["step"].get<int64_t>() == s);
    // Bit-equal: the same float, copied and printed the same way (a neighbour step's differs).
    CHECK(j["Loss_D"].get<float>() == e[ds::kErrDReal] + e[ds::kErrDFake]);
    CHECK(j["Loss_G"].get<float>() == e[ds::kErrG]);
    CHECK(j["D_x"].get<float>() == e[ds::kDx]);
    CHECK(j["D_G_z1"].get<float>() == e[ds::kDGz1]);
    CHECK(j["D_G_z2"].get<float>() == e[ds::kDGz2]);
    CHECK(tb.at("Loss_G").at(s) == e[ds::kErrG]);
    CHECK(tb.at("D(x)").at(s) == e[ds::kDx]);
    // The internals of the same step: present at every logged step, under its number.
    CHECK(tb.at("grad_norm/netG.main.0.weight").count(s) == 1);
    CHECK(tb.at("update_ratio/netD.main.0.weight").count(s) == 1);
    CHECK(tb.at("bn_batch_var/netG.main.1").count(s) == 1);
  }
  // The statistics move from step to step, so a line holding a neighbour's values would have failed.
  for (size_t s = 1; s < expected.size(); ++s) CHECK(expected[s][ds::kErrG] != expected[s - 1][ds::kErrG]);
}

TEST_CASE("unit deferred log: internals equal the immediate ones, lines equal at a coarser interval") {
  Fixture fx("darkstar_deferred_log_internals");
  ds::TrainConfig every = fx.config("every", 6, 1), third = fx.config("third", 6, 3);
  every.histogram_every = third.histogram_every = 2;  // histogram-only steps in the coarse run: no line
  ds::Trainer(every).run({});
  ds::Trainer(third).run({});
  const std::vector<nlohmann::json> a = log_lines(every.out_dir), b = log_lines(third.out_dir);
  REQUIRE(b.size() == 2);
  for (const nlohmann::json& line : b) {
    const int64_t s = line["step"].get<int64_t>();
    CAPTURE(s);
    const nlohmann::json& same = a[static_cast<size_t>(s - 1)];
    for (const char* key : {"Loss_D", "Loss_G", "D_x", "D_G_z1", "D_G_z2"}) CHECK(line[key] == same[key]);
  }
  const auto ta = scalars(every.out_dir), tb = scalars(third.out_dir);
  for (const char* tag : {"weight_norm/netG.main.3.weight", "grad_norm/netD.main.2.weight",
                          "update_ratio/netG.main.0.weight", "bn_batch_mean/netD.main.3"}) {
    CAPTURE(tag);
    REQUIRE(tb.count(tag) == 1);
    for (const auto& [s, v] : tb.at(tag)) CHECK(ta.at(tag).at(s) == v);
    CHECK(tb.at(tag).size() == 2);  // steps 3 and 6 only: histogram steps add no scalars
  }
}

TEST_CASE("unit deferred log: a sample or checkpoint step writes its own line before it reads the device") {
  Fixture fx("darkstar_deferred_log_sync");
  ds::TrainConfig c = fx.config("run", 4, 1);
  c.sample_every = 2;
  c.checkpoint_every = 3;
  std::vector<int64_t> order;  // the log callback's step, then -step for each sample file seen
  ds::Trainer t(c);
  t.run([&](const ds::StepStats& s) {
    order.push_back(s.step);
    // A sample step's line comes before its PNG: the file of step s must not exist yet.
    char name[64];
    std::snprintf(name, sizeof name, "step_%07lld.png", static_cast<long long>(s.step));
    CHECK_FALSE(fs::exists(fs::path(c.out_dir) / "samples" / name));
  });
  CHECK(order == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(log_lines(c.out_dir).size() == 4);
  CHECK(fs::exists(fs::path(c.out_dir) / "samples" / "step_0000002.png"));
}

TEST_CASE("unit host readback: slots on the CPU hold what was enqueued, grow, and refuse bad use") {
  ds::HostReadback r(ds::Device::CPU);
  ds::Tensor a = ds::Tensor::from_host({1.f, 2.f, 3.f}, {3}, ds::Device::CPU);
  ds::Tensor b = ds::Tensor::from_host({5.f, 4.f, 3.f, 2.f, 1.f}, {5}, ds::Device::CPU);
  r.enqueue(0, a);
  r.enqueue(2, b);
  r.record();
  r.wait();
  CHECK(r.copy(0) == std::vector<float>{1.f, 2.f, 3.f});
  CHECK(r.copy(2) == std::vector<float>{5.f, 4.f, 3.f, 2.f, 1.f});
  r.enqueue(0, b);  // grows
  CHECK(r.copy(0) == std::vector<float>{5.f, 4.f, 3.f, 2.f, 1.f});
  r.enqueue(0, a);  // shrinks the count, keeps the buffer
  CHECK(r.count(0) == 3);
  CHECK_THROWS_AS(r.data(7), std::out_of_range);
  CHECK_THROWS_AS(r.enqueue(-1, a), std::invalid_argument);
}
