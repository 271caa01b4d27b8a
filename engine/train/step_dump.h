// train --dump STEP: every activation and gradient of one GAN step (gan_step in trainer.h) as
// float32 .npy files with layer names, plus index.json, for study in numpy. Read-only: the networks
// are watched through their LayerObserver hook (engine/nn/layer_observer.h) and gan_step's
// before_adam callback, so the step computes exactly what it computes without the dump.
//
// Passes, in gan_step's order:  D_real  D forward and backward on the real batch (label 1);
// D_fake  G forward on z (train mode), D forward and backward on G(z) detached (label 0);
// D_step  D's parameters and the gradients its Adam step consumes (the sum over D_real and D_fake);
// G_step  D (after its update) forward and backward on G(z) (label 1), back into G; G's parameters
// and gradients (G's backward uses the activations of its D_fake forward).
// Names: PASS.NET.main.K.out (the output of module K of PyTorch's nn.Sequential), .out.grad its
// gradient, PASS.NET.input(.grad), PASS.NET.main.K.weight(.grad) and .bias(.grad). On CUDA each
// tensor is copied to the host once, at the moment the step holds it (the stream is synchronised
// for each copy, at this step only).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/nn/dcgan.h"

namespace ds {

// Before training: --dump STEP must be a step this call will train (start_step < STEP <= steps) and
// its folder must not hold a dump already (nothing is overwritten). Throws std::invalid_argument
// naming --dump and what to do.
void check_dump_request(const std::string& run_dir, int64_t dump_step, int64_t steps, int64_t start_step);

class StepDump : public LayerObserver {
 public:
  // RUN/dump/step_NNNNNNN
  static std::string directory(const std::string& run_dir, int64_t step);

  // Creates `dir` and watches G and D until finish() or destruction.
  StepDump(const std::string& dir, int64_t step, Generator& G, Discriminator& D);
  ~StepDump() override;
  StepDump(const StepDump&) = delete;
  StepDump& operator=(const StepDump&) = delete;

  // gan_step's before_adam: the parameters and the gradients Adam is about to consume.
  std::function<void(const char*)> before_adam_hook();
  // Stops watching and writes index.json (last, so its presence means the dump is complete).
  void finish();

  void begin(const Network& net, bool backward) override;
  void observe(const Network& net, int stage, StageModule module, bool gradient, const Tensor& t) override;

 private:
  struct Entry {
    std::string name, pass, kind, net, layer, module, gradient_of;
    Shape shape;
  };
  void write(Entry e, const Tensor& t);
  void write_parameters(const char* pass, const char* net_name, Network& net, bool with_grads);
  std::string net_name(const Network& net) const;
  // "D.main.3" and its module type ("BatchNorm2d") for a stage's module.
  std::pair<std::string, std::string> layer_of(const Network& net, int stage, StageModule module) const;

  std::string dir_;
  int64_t step_;
  Generator& G_;
  Discriminator& D_;
  bool watching_ = true;
  bool d_updated_ = false;  // before_adam("D") has run: what follows is the G step
  int d_forwards_ = 0;
  std::string d_pass_;  // the pass of D's latest forward (its backward belongs to it)
  std::vector<Entry> entries_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace ds
