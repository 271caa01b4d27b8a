// The DCGAN training loop of PyTorch's examples/dcgan, step for step, with checkpoints, sample grids,
// logging and resume. Every buffer is allocated before the first step; a step allocates nothing.
// DataOrder: which dataset rows each step trains on (host bookkeeping, and what the CUDA trainer's
// device double buffer of orders must hold).
#pragma once
#include <csignal>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/data/batch_stream.h"
#include "engine/nn/dcgan.h"
#include "engine/data/image_dataset.h"
#include "engine/core/rng.h"
#include "engine/train/telemetry.h"

namespace ds {

struct TrainConfig {
  ModelConfig model;  // height/width/channels come from the dataset
  int64_t batch = 64;
  AdamConfig adam;
  double lr_d = 0;  // > 0: the discriminator's Adam learning rate instead of adam.lr (G keeps adam.lr)
  uint64_t seed = 1;
  int64_t steps = 2000;
  double minutes = 0;  // > 0: a wall-time budget for this call of run(): it stops at the end of the first
                       // step past it (checkpoint, samples and log line as after the last step)
  int64_t checkpoint_every = 500;
  int64_t sample_every = 200;
  int64_t log_every = 10;
  int64_t histogram_every = 100;  // > 0: weight/gradient histograms every N steps and at the last step
  int64_t n_samples = 64;
  int64_t swd_every = 0;     // > 0: the SWD against a fixed data subset every this many steps (swd_monitor.h)
  int64_t swd_images = 256;  // rows in that subset, and fixed-noise images it is compared with
  Device device = Device::CPU;
  DeviceData device_data = DeviceData::Auto;  // CUDA: dataset resident or streamed (batch_stream.h)
  std::string data_path;
  std::string out_dir;
  bool resume = false;
  bool quiet = false;
  int64_t dump_step = 0;  // > 0: train --dump, every tensor of that step into out_dir/dump (step_dump.h)
  bool cuda_graph = true;  // CUDA: capture the step once and replay it (step_graph.h); false: train --no-graph
  std::string to_json() const;
};

// Per-step statistics, as the example prints them.
struct StepStats {
  int64_t step = 0;
  float loss_d = 0, loss_g = 0, d_x = 0, d_g_z1 = 0, d_g_z2 = 0;
  double images_per_second = 0, eta_seconds = 0;
  bool stopped = false;  // run() ended before cfg.steps because *stop_requested was set
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
              const AdamConfig& adam, const std::function<void(const char* net)>& before_adam = nullptr,
              const AdamConfig* adam_d = nullptr);  // adam_d: D's settings when they differ from G's

// A fresh Philox permutation of the dataset each epoch, read a batch at a time; the tail of an epoch
// shorter than a batch is skipped (it starts the next epoch). Pure host bookkeeping, the same code on
// both devices, so CPU and CUDA train on the same batches and checkpoints store the same order.
// On CUDA the orders also live on the device, epoch e in half e % 2 of a 2×count buffer read through
// a device cursor (kernels/image.h, advance_batch_cursor); the last three members say what that buffer
// and cursor must hold, so the trainer only copies and a step's launches never change.
class DataOrder {
 public:
  DataOrder(uint64_t seed, uint32_t rng_stream, int64_t count, int64_t batch);
  // Moves on to the next batch, drawing the next epoch's order when this one has fewer than `batch`
  // rows left; returns the index into permutation() of the batch's first row.
  int64_t next_batch();
  const std::vector<int32_t>& permutation() const { return permutation_; }  // empty before the first batch
  int64_t position() const { return position_; }  // index into permutation() of the next batch's first row
  int64_t epoch() const { return epoch_; }        // 1-based; 0 before the first batch
  // The permutation generator after drawing this epoch's order (never moved by the device's look-ahead).
  PhiloxState rng_state() const { return rng_.state(); }
  // Resume from what a checkpoint stored (an empty permutation: no epoch drawn yet). The device then
  // holds nothing: set its cursor to device_cursor() and copy what uploads_due() lists.
  void restore(std::vector<int32_t> permutation, int64_t position, int64_t epoch, const PhiloxState& rng);

  // The device cursor before the next batch: half·count + index within the epoch (the start of the
  // next epoch's half when this epoch is used up, as advance_batch_cursor leaves it).
  int64_t device_cursor() const;
  struct Upload {
    int64_t half;          // 0 or 1: copy count indices to buffer + half·count
    const int32_t* order;  // valid until the next call of any non-const member
  };
  // Called after next_batch(): the orders the device lacks for this epoch and the next (drawing the
  // next one ahead, from a copy of the generator), in epoch order, each listed once; returns how many
  // were written to `due` (0 on most steps, 1 when an epoch starts, 2 on the first batch or after restore).
  int uploads_due(Upload due[2]);

 private:
  void draw(std::vector<int32_t>& order, Philox& rng) const;
  int64_t count_, batch_;
  Philox rng_;
  std::vector<int32_t> permutation_;
  int64_t position_ = 0, epoch_ = 0;
  std::vector<int32_t> next_permutation_;  // epoch_ + 1's order when next_valid_ (the device look-ahead)
  PhiloxState next_rng_;                   // the generator after drawing it
  bool next_valid_ = false;
  int64_t uploaded_through_ = 0;  // the device holds the orders of epochs up to this one
};

class Trainer {
 public:
  explicit Trainer(const TrainConfig& cfg);
  ~Trainer();
  // Trains until cfg.steps; returns the last step's statistics (step = the current step, also when
  // there was nothing left to train). Throws on non-finite losses after keeping the last good
  // checkpoint. When *stop_requested (set by a signal handler, say) is non-zero after a step, writes
  // the checkpoint of that step and returns with stopped = true.
  StepStats run(const std::function<void(const StepStats&)>& on_log = nullptr,
                const volatile std::sig_atomic_t* stop_requested = nullptr);
  // One training step (exposed for tests).
  void step();
  int64_t current_step() const { return step_; }
  // Whether the last run() ended on cfg.minutes rather than at cfg.steps.
  bool stopped_on_time_budget() const { return stopped_on_time_budget_; }
  // The last step's real batch and statistics slots (GanStat order), on the training device (for tests).
  const Tensor& real_batch() const;
  const Tensor& statistics() const;
  const DataOrder& data_order() const;
  bool dataset_streamed() const;  // CUDA with the dataset streamed per batch (batch_stream.h)
  // CUDA: whether the next step replays the captured graph (false before the capture, with --no-graph,
  // on the CPU and after a failed capture, whose reason is then cuda_graph_failure()).
  bool cuda_graph_replaying() const;
  std::string cuda_graph_failure() const;
  Generator& generator() { return *G_; }
  Discriminator& discriminator() { return *D_; }
  void write_checkpoint();
  // Writes the fixed-noise grid to png_path; returns the samples (host copy, n_samples × C × H × W).
  std::vector<float> write_samples(const std::string& png_path);
  // TensorBoard additions from outside the engine (audio for mel datasets, apps/); see telemetry.h.
  void set_sample_hook(SampleHook hook);
  std::string last_checkpoint_path() const;

 private:
  struct Impl;
  StepStats train_steps(const std::function<void(const StepStats&)>& on_log,
                        const volatile std::sig_atomic_t* stop_requested);  // run() without its error wording
  TrainConfig cfg_;
  ImageDataset data_;
  std::unique_ptr<Generator> G_;
  std::unique_ptr<Discriminator> D_;
  std::unique_ptr<Impl> impl_;
  int64_t step_ = 0;
  bool stopped_on_time_budget_ = false;
};

}  // namespace ds
