// The CPU-side evidence for the CUDA-graph-captured step (engine/train/step_graph.h, kernels/launch_log.h):
// the replayable pieces of a step, emulated over several steps, enqueue the same launches with the same
// argument bytes every step while their outputs still move (a graph replays exactly that), the log tells
// a host value baked into an argument apart, and StepScope refuses host reads inside a step, also in the
// real gan_step and Trainer::step on the CPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/nn/cpu/adam.h"
#include "engine/nn/dcgan.h"
#include "engine/train/step_graph.h"
#include "engine/train/trainer.h"
#include "kernels/adam.h"
#include "kernels/batchnorm.h"
#include "kernels/fill.h"
#include "kernels/image.h"
#include "kernels/launch_log.h"
#include "kernels/loss.h"
#include "kernels/rng.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using ds::launch_log::LaunchLog;
using ds::launch_log::LaunchLogScope;
using ds::launch_log::StepScope;

namespace {

// The device memory of one emulated step, laid out as the trainer's (fixed buffers, per-step values
// in "device" memory: batch cursor, noise step, Adam step).
struct EmulatedStep {
  static constexpr int64_t kCount = 9, kBatch = 4, kImage = 2 * 3 * 5;  // odd sizes: a tail each epoch
  static constexpr int64_t kC = 2, kHW = kImage / kC;
  std::vector<uint8_t> images = std::vector<uint8_t>(kCount * kImage);
  std::vector<int32_t> orders = std::vector<int32_t>(2 * kCount);
  int64_t cursor = 0, noise_step = 0;
  int adam_step = 0;
  std::vector<float> real = std::vector<float>(kBatch * kImage), z = std::vector<float>(kBatch * kImage);
  std::vector<float> y = std::vector<float>(kBatch * kImage), dlogits = std::vector<float>(kBatch * kImage);
  std::vector<float> gamma = std::vector<float>(kC, 1.f), beta = std::vector<float>(kC, 0.f);
  std::vector<float> saved_mean = std::vector<float>(kC), saved_invstd = std::vector<float>(kC);
  std::vector<float> running_mean = std::vector<float>(kC, 0.f), running_var = std::vector<float>(kC, 1.f);
  std::vector<double> workspace = std::vector<double>(ds::batchnorm_workspace_bytes(kC) / sizeof(double));
  std::vector<float> stats = std::vector<float>(2);
  std::vector<float> params = std::vector<float>(kBatch * kImage, 0.5f), m = std::vector<float>(kBatch * kImage),
                     v = std::vector<float>(kBatch * kImage), grads = std::vector<float>(kBatch * kImage);

  EmulatedStep() {
    std::mt19937 rng(3);
    for (uint8_t& b : images) b = static_cast<uint8_t>(rng() & 0xff);
    for (int64_t i = 0; i < kCount; ++i) {
      orders[i] = static_cast<int32_t>((i * 4 + 1) % kCount);
      orders[kCount + i] = static_cast<int32_t>((i * 2 + 5) % kCount);
    }
  }

  // One step's launches as Trainer::step enqueues them on CUDA (the gather at the device cursor, the
  // noise at the device step), then a batch norm + LeakyReLU, the loss, zero_grad and Adam with its
  // device step. `host_offset_noise`: the noise drawn at a host-computed offset instead (what a graph
  // would freeze at capture): the negative control.
  void enqueue(int64_t host_step, bool host_offset_noise) {
    cudaStream_t stream = nullptr;
    const int64_t n = kBatch * kImage;
    const uint64_t tuples = ds::philox_tuples_for(n);
    ds::kemu::images_u8_to_float_at(real.data(), images.data(), orders.data(), &cursor, kBatch, kImage, stream);
    ds::kemu::advance_batch_cursor(&cursor, kBatch, kCount, stream);
    if (host_offset_noise)
      ds::kemu::normal_fill(z.data(), 0.f, 1.f, 11, 3, static_cast<uint64_t>(host_step) * tuples, n, stream);
    else
      ds::kemu::normal_fill_at(z.data(), 0.f, 1.f, 11, 3, &noise_step, tuples, n, stream);
    ds::kemu::advance_counter(&noise_step, stream);
    for (int64_t i = 0; i < n; ++i) real[i] += z[i];  // host arithmetic standing in for the networks
    ds::kemu::batchnorm_act_forward_train(y.data(), saved_mean.data(), saved_invstd.data(), running_mean.data(),
                                          running_var.data(), workspace.data(), real.data(), gamma.data(), beta.data(),
                                          kBatch, kC, kHW, 0.1, 1e-5, ds::BnActivation::LeakyReLU, 0.2f, 0, stream);
    ds::kemu::fill(grads.data(), 0.f, n, stream);  // zero_grad
    ds::kemu::bce_with_logits(&stats[0], &stats[1], grads.data(), y.data(), 1.f, 1.f, n, stream);
    ds::kemu::advance_step(&adam_step, stream);
    ds::kemu::adam_step(params.data(), m.data(), v.data(), grads.data(), &adam_step, n, 2e-4, 0.5, 0.999, 1e-8, stream);
  }
};

}  // namespace

TEST_CASE("emu launch log: the replayable step enqueues identical launches every step while its outputs move") {
  EmulatedStep dev;
  // The CPU reference of the Adam part: the same gradients, the host step number 1, 2, 3, ...
  std::vector<float> ref_params = dev.params, ref_m = dev.m, ref_v = dev.v;
  std::vector<LaunchLog> logs(5);
  std::vector<std::vector<float>> reals, zs;
  for (int64_t s = 0; s < 5; ++s) {
    CAPTURE(s);
    {
      LaunchLogScope scope(logs[s]);
      dev.enqueue(s, false);
    }
    reals.push_back(dev.real);
    zs.push_back(dev.z);
    ds::cpu::adam_step(ref_params.data(), ref_m.data(), ref_v.data(), dev.grads.data(),
                       static_cast<int64_t>(ref_params.size()), 2e-4, 0.5, 0.999, 1e-8, s + 1);
    // Same formula, order and roundings on both sides (kernels/adam.cu): bit for bit.
    CHECK(ds::test::count_mismatches(dev.params, ref_params) == 0);
    // Ten kernel launches: gather, cursor, noise, counter, BN statistics and normalise, fill, loss, step, Adam.
    CHECK(logs[s].records.size() == 10);
    if (s > 0) {
      CHECK(ds::launch_log::first_difference(logs[s], logs[0]) == "");
      CHECK(reals[s] != reals[s - 1]);  // another batch and other noise every step
      CHECK(zs[s] != zs[s - 1]);
    }
  }
  CHECK(dev.adam_step == 5);
  CHECK(dev.noise_step == 5);
  // The records hold what a graph would freeze: the noise kernel's arguments include the pointer to
  // the device step, not its value, so they do not change although the value did.
  CHECK(logs[0].records[2].what == "normal_fill_at_kernel");
  CHECK(logs[0].records[2].args == logs[4].records[2].args);
  CHECK(logs[0].records[0].grid[0] > 0);
}

TEST_CASE("emu launch log: a host value baked into an argument shows as a difference between steps") {
  EmulatedStep dev;
  LaunchLog first, second;
  {
    LaunchLogScope scope(first);
    dev.enqueue(0, true);
  }
  {
    LaunchLogScope scope(second);
    dev.enqueue(1, true);
  }
  const std::string diff = ds::launch_log::first_difference(second, first);
  CHECK(diff.find("record 2") == 0);  // the noise launch, whose offset argument moved with the host step
  CHECK(diff.find("normal_fill_kernel") != std::string::npos);
  // Everything else is still the same, record for record.
  REQUIRE(first.records.size() == second.records.size());
  int differing = 0;
  for (size_t i = 0; i < first.records.size(); ++i) differing += first.records[i] != second.records[i];
  CHECK(differing == 1);
}

TEST_CASE("unit launch log: inactive, nothing is recorded, and scopes nest and restore") {
  EmulatedStep dev;
  LaunchLog outer, inner;
  dev.enqueue(0, false);  // no scope: the launches go nowhere
  CHECK(ds::launch_log::active() == nullptr);
  {
    LaunchLogScope a(outer);
    {
      LaunchLogScope b(inner);
      ds::kemu::advance_counter(&dev.noise_step, nullptr);
    }
    CHECK(ds::launch_log::active() == &outer);
    ds::kemu::advance_counter(&dev.noise_step, nullptr);
    ds::kemu::advance_counter(&dev.noise_step, nullptr);
  }
  CHECK(ds::launch_log::active() == nullptr);
  CHECK(inner.records.size() == 1);
  CHECK(outer.records.size() == 2);
  CHECK(outer.records[0] == inner.records[0]);  // same kernel, same pointer argument
}

TEST_CASE("unit step scope: host reads, host copies and synchronisation throw inside a step, never outside") {
  ds::Tensor t = ds::Tensor::zeros({3}, ds::Device::CPU);
  const float values[3] = {1.f, 2.f, 3.f};
  ds::Tensor host_src = ds::Tensor::zeros({3}, ds::Device::CPU);
  CHECK_FALSE(ds::launch_log::inside_step());
  {
    StepScope scope;
    CHECK(ds::launch_log::inside_step());
    CHECK_THROWS_AS(t.to_host(), std::logic_error);
    CHECK_THROWS_AS(t.copy_from_host(values, 3), std::logic_error);
    CHECK_THROWS_AS(ds::all_finite({t}), std::logic_error);
    {
      StepScope nested;
      CHECK_THROWS_AS(t.to_host(), std::logic_error);
    }
    CHECK(ds::launch_log::inside_step());  // the outer scope is still active
    t.fill(2.f);                           // work that stays on the tensor's device is allowed
  }
  CHECK_FALSE(ds::launch_log::inside_step());
  CHECK(t.to_host() == std::vector<float>{2.f, 2.f, 2.f});
  t.copy_from_host(values, 3);
  CHECK(t.to_host() == std::vector<float>{1.f, 2.f, 3.f});
  try {
    StepScope scope;
    (void)t.to_host();
    FAIL("no throw");
  } catch (const std::logic_error& e) {
    CHECK(std::string(e.what()).find("Tensor::to_host inside a training step") == 0);
  }
}

TEST_CASE("unit step scope: the real gan_step reads nothing on the host, and a hook that does is caught") {
  ds::ModelConfig mc;
  mc.height = mc.width = 8;
  mc.channels = 1;
  mc.nz = 4;
  mc.ngf = mc.ndf = 4;
  ds::Generator G(mc, 2, ds::Device::CPU);
  ds::Discriminator D(mc, 2, ds::Device::CPU);
  G.init_weights(1, 0);
  D.init_weights(1, 1);
  ds::GanStepState st(G, D);
  ds::Tensor real = ds::Tensor::zeros({2, 1, 8, 8}, ds::Device::CPU);
  ds::Tensor z = ds::Tensor::zeros({2, 4, 1, 1}, ds::Device::CPU);
  ds::normal_noise(z, 1, 3, 0);
  {
    StepScope scope;
    CHECK_NOTHROW(ds::gan_step(G, D, st, real, z, ds::AdamConfig{}));
    // What train --dump's hook does (reads gradients before Adam): refused inside a step.
    CHECK_THROWS_AS(ds::gan_step(G, D, st, real, z, ds::AdamConfig{}, [&](const char*) { (void)D.grads().to_host(); }),
                    std::logic_error);
  }
  CHECK(st.stepG.step() == 1);  // the first step completed; the second stopped before G's Adam
}

TEST_CASE("unit step scope: CPU Trainer steps run inside the scope, a --dump step outside it") {
  const fs::path dir = fs::temp_directory_path() / "darkstar_step_scope";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<uint8_t> bytes(6 * 8 * 8);
  std::mt19937 rng(1);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng() & 0xff);
  const std::string data = (dir / "data.npy").string();
  ds::write_npy(data, ds::DType::U8, {6, 1, 8, 8}, bytes.data());
  ds::TrainConfig c;
  c.data_path = data;
  c.out_dir = (dir / "run").string();
  c.model.nz = 4;
  c.model.ngf = c.model.ndf = 4;
  c.batch = 2;
  c.n_samples = 2;
  c.steps = 3;
  c.log_every = 1000;
  c.sample_every = 0;
  c.checkpoint_every = 0;
  c.quiet = true;
  c.dump_step = 2;  // reads every tensor on the host inside gan_step: must run outside the scope
  ds::Trainer trainer(c);
  for (int s = 0; s < 3; ++s) CHECK_NOTHROW(trainer.step());
  CHECK(trainer.current_step() == 3);
  CHECK(fs::exists(dir / "run" / "dump"));
  CHECK_FALSE(ds::launch_log::inside_step());
  fs::remove_all(dir);
}

TEST_CASE("unit step graph: the host counters one gan_step advances, as the replays mirror them") {
  ds::ModelConfig mc;
  mc.height = mc.width = 16;  // two BN stages in G and one in D: counters on both sides
  mc.channels = 1;
  mc.nz = 4;
  mc.ngf = mc.ndf = 4;
  ds::Generator G(mc, 2, ds::Device::CPU), G2(mc, 2, ds::Device::CPU);
  ds::Discriminator D(mc, 2, ds::Device::CPU), D2(mc, 2, ds::Device::CPU);
  for (ds::Network* n : {static_cast<ds::Network*>(&G), static_cast<ds::Network*>(&G2)}) n->init_weights(1, 0);
  for (ds::Network* n : {static_cast<ds::Network*>(&D), static_cast<ds::Network*>(&D2)}) n->init_weights(1, 1);
  ds::GanStepState st(G, D), st2(G2, D2);
  ds::Tensor real = ds::Tensor::zeros({2, 1, 16, 16}, ds::Device::CPU);
  ds::Tensor z = ds::Tensor::zeros({2, 4, 1, 1}, ds::Device::CPU);
  ds::normal_noise(z, 1, 3, 0);
  const ds::GanStepHostCounters before = ds::GanStepHostCounters::read(G, D, st);
  ds::gan_step(G, D, st, real, z, ds::AdamConfig{});
  const ds::GanStepHostCounters delta = ds::GanStepHostCounters::read(G, D, st).minus(before);
  // One Adam update each; every BN stage of D saw three training forwards (real, G(z), G(z) again for
  // G's update), every BN stage of G one; stages without BN never count.
  CHECK(delta.adam_g == 1);
  CHECK(delta.adam_d == 1);
  int bn_g = 0, bn_d = 0;
  for (size_t i = 0; i < G.stages().size(); ++i) {
    CHECK(delta.tracked_g[i] == (G.stages()[i].has_bn ? 1 : 0));
    bn_g += G.stages()[i].has_bn;
  }
  for (size_t i = 0; i < D.stages().size(); ++i) {
    CHECK(delta.tracked_d[i] == (D.stages()[i].has_bn ? 3 : 0));
    bn_d += D.stages()[i].has_bn;
  }
  CHECK(bn_g >= 2);
  CHECK(bn_d >= 1);
  // Two "replays" mirrored on fresh networks give the counters of two real steps.
  ds::gan_step(G, D, st, real, z, ds::AdamConfig{});
  ds::GanStepHostCounters::add(G2, D2, st2, delta);
  ds::GanStepHostCounters::add(G2, D2, st2, delta);
  const ds::GanStepHostCounters real_two = ds::GanStepHostCounters::read(G, D, st);
  const ds::GanStepHostCounters mirrored_two = ds::GanStepHostCounters::read(G2, D2, st2);
  CHECK(mirrored_two.adam_g == real_two.adam_g);
  CHECK(mirrored_two.adam_d == real_two.adam_d);
  CHECK(mirrored_two.tracked_g == real_two.tracked_g);
  CHECK(mirrored_two.tracked_d == real_two.tracked_d);
  // And a negative delta undoes (what a failed capture does before it runs the step eagerly).
  ds::GanStepHostCounters::add(G2, D2, st2, before.minus(mirrored_two));
  CHECK(ds::GanStepHostCounters::read(G2, D2, st2).tracked_d == before.tracked_d);
  CHECK(st2.stepD.step() == 0);
}
