// What the trainer writes to TensorBoard besides its losses: per parameter tensor weight norm, gradient
// norm and update-to-weight ratio, batch-norm batch statistics, weight and gradient histograms (all from
// host copies taken at logging / histogram steps only), and the hook through which apps/ adds what the
// engine knows nothing of (audio for mel datasets). Tag names are listed in README.md's run folder section.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/formats/tensorboard.h"
#include "engine/nn/dcgan.h"

namespace ds {

// Called by Trainer::run at every sample step and at the last step with the event file and a host copy
// of the fixed-noise samples (n_samples × C × H × W, values in [−1, 1]); it must return quickly (hand
// heavy work to a thread of its own: the writer is thread-safe and the shared_ptr keeps it open).
// finish() is called before run() returns normally, so work still in flight (the last step's) can be
// waited for; an owner must also wait in its destructor, since run() may end by an exception.
struct SampleHook {
  std::function<void(const std::shared_ptr<TensorBoardWriter>& tb, int64_t step, const std::vector<float>& samples)>
      on_samples;
  std::function<void()> finish;
};

// Host copies of one network's flat buffers (laid out like params(), padding included) at one step.
// params_before: the parameters before this step's Adam update (empty when not taken).
struct NetworkSnapshot {
  std::vector<float> params, grads, params_before;
};

// ‖x‖₂ over count floats, accumulated in double.
double l2_norm(const float* x, size_t count);
// ‖a − b‖₂ over count floats, in double.
double l2_distance(const float* a, const float* b, size_t count);

// For every parameter tensor p of net (PyTorch name n, e.g. "main.0.weight"), tags
// "weight_norm/<net_name>.<n>" = ‖p‖₂, "grad_norm/<net_name>.<n>" = ‖∂loss/∂p‖₂ (the gradient this
// step's Adam update used), and when snapshot.params_before is present "update_ratio/<net_name>.<n>" =
// ‖p_after − p_before‖₂ / ‖p_before‖₂ (0 / 0 → 0).
void add_parameter_scalars(TensorBoardWriter& tb, const std::string& net_name, const Network& net,
                           const NetworkSnapshot& snapshot, int64_t step);

// For every batch-norm layer (Sequential index k): "bn_batch_mean/<net_name>.main.<k>" = the mean over
// channels of the per-channel batch mean, and "bn_batch_var/<net_name>.main.<k>" = the mean over channels
// of the per-channel biased batch variance (1/invstd² − eps), of the layer's last training forward pass.
// Reads the saved statistics back from the device.
void add_batchnorm_scalars(TensorBoardWriter& tb, const std::string& net_name, Network& net, int64_t step);
// The same from host copies: means[i], invstds[i] are the saved statistics of the i-th batch-norm stage
// of net.stages() (the trainer copies them asynchronously with its log values).
void add_batchnorm_scalars(TensorBoardWriter& tb, const std::string& net_name, const Network& net,
                           const std::vector<std::vector<float>>& means,
                           const std::vector<std::vector<float>>& invstds, int64_t step);

// Histograms "weights/<net_name>.<n>" and "grads/<net_name>.<n>" of every parameter tensor (padding excluded).
void add_parameter_histograms(TensorBoardWriter& tb, const std::string& net_name, const Network& net,
                              const NetworkSnapshot& snapshot, int64_t step);

}  // namespace ds
