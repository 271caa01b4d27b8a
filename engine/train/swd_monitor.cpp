// The training-time SWD (see swd_monitor.h).
#include "engine/train/swd_monitor.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/core/rng.h"

namespace ds {

namespace {
// Philox streams of their own (the trainer's are 0..4, memorisation's held-out rows 7), so the
// monitor never shifts the training's numbers: rows of the subset, the noise, the SWD's draws (seed).
constexpr uint32_t kStreamSwdRows = 8, kStreamSwdNoise = 9;
}  // namespace

SwdMonitor::SwdMonitor(const ImageDataset& data, const ModelConfig& model, int64_t images, uint64_t seed,
                       Device device)
    : images_(std::min(images, data.count)) {
  if (images_ < 1) throw std::invalid_argument("--swd-images " + std::to_string(images) + ": expected at least 1");
  SwdOptions o;
  o.seed = seed;
  if (swd_level_count(data.height, data.width, o.min_resolution) == 0)
    throw std::invalid_argument("--swd-every: images of " + std::to_string(data.height) + "×" +
                                std::to_string(data.width) + " px are smaller than the " +
                                std::to_string(o.min_resolution) + " px on each side the SWD's pyramid needs");
  const std::vector<int64_t> rows64 = fixed_subset(data.count, images_, seed, kStreamSwdRows);
  const std::vector<int32_t> rows(rows64.begin(), rows64.end());
  std::vector<float> real(static_cast<size_t>(images_ * data.sample_size()));
  data.gather_as_float(real.data(), rows.data(), images_);  // as the trainer feeds them
  reference_ = std::make_unique<SwdReference>(
      ImageSetView{real.data(), images_, data.channels, data.height, data.width}, o);
  sampler_ = std::make_unique<Generator>(model, images_, device);
  std::vector<float> z(static_cast<size_t>(images_ * model.nz));
  Philox(seed, kStreamSwdNoise).fill_normal(z.data(), 0.f, 1.f, static_cast<int64_t>(z.size()));
  noise_ = Tensor::from_host(z, {images_, model.nz, 1, 1}, device);
}

SwdResult SwdMonitor::measure(Generator& generator) {
  sampler_->copy_state_from(generator);
  sampler_->forward(noise_, false);
  const std::vector<float> fake = sampler_->output().to_host();
  const Shape& s = sampler_->output().shape();
  return reference_->compare(ImageSetView{fake.data(), s[0], s[1], s[2], s[3]});
}

}  // namespace ds
