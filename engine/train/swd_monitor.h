// The sliced Wasserstein distance logged during training (`train --swd-every N`): a fixed subset of
// the dataset (Philox-chosen rows, prepared once as an SwdReference) against the generator's images
// for a fixed noise batch of the same size, drawn in eval mode as the sample grids are. The SWD
// itself runs on the CPU (engine/inspect/swd.h); on CUDA only the generator's forward runs there.
#pragma once
#include <cstdint>
#include <memory>

#include "engine/core/tensor.h"
#include "engine/data/image_dataset.h"
#include "engine/inspect/swd.h"
#include "engine/nn/dcgan.h"

namespace ds {

// `train --swd-every`'s default (the trainer's own default, TrainConfig::swd_every, is 0: off).
inline constexpr int64_t kDefaultSwdEvery = 500;

class SwdMonitor {
 public:
  // images: the subset's size (clamped to the dataset's rows). Throws std::invalid_argument when the
  // images are smaller than the 16 px the pyramid's coarsest level needs.
  SwdMonitor(const ImageDataset& data, const ModelConfig& model, int64_t images, uint64_t seed, Device device);
  // SWD ×1e3 per level (finest first) and their mean, of `generator`'s current weights.
  SwdResult measure(Generator& generator);
  int64_t images() const { return images_; }

 private:
  int64_t images_;
  std::unique_ptr<SwdReference> reference_;
  std::unique_ptr<Generator> sampler_;
  Tensor noise_;
};

}  // namespace ds
