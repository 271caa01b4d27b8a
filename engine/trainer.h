// The DCGAN training loop of PyTorch's examples/dcgan, step for step, with checkpoints, sample grids,
// logging and resume. Every buffer is allocated before the first step; a step allocates nothing.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/dcgan.h"
#include "engine/image_dataset.h"

namespace ds {

struct TrainConfig {
  ModelConfig model;  // height/width/channels come from the dataset
  int64_t batch = 64;
  AdamConfig adam;
  uint64_t seed = 1;
  int64_t steps = 2000;
  int64_t checkpoint_every = 500;
  int64_t sample_every = 200;
  int64_t log_every = 10;
  int64_t n_samples = 64;
  Device device = Device::CPU;
  std::string data_path;
  std::string out_dir;
  bool resume = false;
  bool quiet = false;
  std::string to_json() const;
};

// Per-step statistics, as the example prints them.
struct StepStats {
  int64_t step = 0;
  float loss_d = 0, loss_g = 0, d_x = 0, d_g_z1 = 0, d_g_z2 = 0;
  double images_per_second = 0, eta_seconds = 0;
};


// The buffers of one GAN step besides the networks' own: loss gradient, gradient flowing into G's
// output, the statistics slots and both Adam states (contiguous, like the parameters).
struct GanStepState {
  Tensor dlogits, dfake, stats;
  Tensor mG, vG, mD, vD;    // Adam's exp_avg / exp_avg_sq, laid out like the parameters
  AdamCounter stepG, stepD;  // Adam's state['step'] of each optimizer
  GanStepState(const Generator& G, const Discriminator& D);
};
// Statistics slots written by gan_step (device-side; read them back only when logging).
enum GanStat { kErrDReal, kDx, kErrDFake, kDGz1, kErrG, kDGz2, kGanStatCount };

// One training step exactly as PyTorch's examples/dcgan: D on `real` (label 1) and on G(z) detached
// (label 0), each with its own batch statistics, Adam on D; then G against the updated D (label 1),
// Adam on G (each optimizer's step counter advances by one). `before_adam`, if given, is called with "D" and "G"
// right before each Adam step (tests read the gradients there, as PyTorch's .grad before step()).
void gan_step(Generator& G, Discriminator& D, GanStepState& st, const Tensor& real, const Tensor& z,
              const AdamConfig& adam, const std::function<void(const char* net)>& before_adam = nullptr);

class Trainer {
 public:
  explicit Trainer(const TrainConfig& cfg);
  ~Trainer();
  // Trains until cfg.steps; returns the last step's statistics. Throws on non-finite losses after
  // keeping the last good checkpoint.
  StepStats run(const std::function<void(const StepStats&)>& on_log = nullptr);
  // One training step (exposed for tests).
  void step();
  int64_t current_step() const { return step_; }
  Generator& generator() { return *G_; }
  Discriminator& discriminator() { return *D_; }
  void write_checkpoint();
  void write_samples(const std::string& png_path);
  std::string last_checkpoint_path() const;

 private:
  struct Impl;
  TrainConfig cfg_;
  ImageDataset data_;
  std::unique_ptr<Generator> G_;
  std::unique_ptr<Discriminator> D_;
  std::unique_ptr<Impl> impl_;
  int64_t step_ = 0;
};

}  // namespace ds
