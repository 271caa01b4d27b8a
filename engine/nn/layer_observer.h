// A read-only hook into Network::forward/backward, for tools that study a network's internals
// (train --dump: engine/train/step_dump.h). Activations are computed in place (a stage's conv output
// aliases its activation's output when it has no batch norm, the activation overwrites the batch
// norm's output, the activation's backward overwrites the gradient it reads), so an observer sees
// each tensor at the one moment it holds that value and must copy it before returning.
// With no observer set (training as usual) the network does nothing more than a null check.
#pragma once

#include "engine/core/tensor.h"

namespace ds {

class Network;

// Which module of a stage a tensor belongs to: the network's input (stage 0 only), the stage's
// convolution, its batch norm, its activation (PyTorch Sequential indices: Stage::seq_conv,
// Stage::seq_bn, and the activation right after the last of them).
enum class StageModule { Input, Conv, BatchNorm, Activation };

class LayerObserver {
 public:
  virtual ~LayerObserver() = default;
  // Called first in every forward (backward = false) and backward (backward = true) of `net`.
  virtual void begin(const Network& net, bool backward) = 0;
  // Forward: `t` is the output of `module` of stage `stage` (Input: the network's input).
  // Backward: `t` is d(loss)/d(that same output); Input: d(loss)/d(network input), only when the
  // caller asked for it. Valid only during the call.
  virtual void observe(const Network& net, int stage, StageModule module, bool gradient, const Tensor& t) = 0;
};

}  // namespace ds
