// Checkpoints: networks as safetensors with PyTorch's DCGAN state_dict names (netG.safetensors and
// netD.safetensors load strictly into the example's modules), and loading a generator back from
// either those or the whole-state last.safetensors.
#pragma once
#include <memory>
#include <string>

#include "engine/nn/dcgan.h"
#include "engine/formats/safetensors.h"

namespace ds {

// Metadata keys.
inline constexpr const char* kMetaModel = "darkstar.model";      // ModelConfig JSON
inline constexpr const char* kMetaTrain = "darkstar.train";      // TrainConfig JSON
inline constexpr const char* kMetaDataset = "darkstar.dataset";  // the dataset's sidecar JSON
inline constexpr const char* kMetaKind = "darkstar.kind";        // "netG" | "netD" | "training-state"

// Adds every state_dict tensor of `net` under `prefix` (weights, BN affine and running statistics as
// F32, num_batches_tracked as a 0-d I64), copied to the host.
void add_network(SafeTensorsFile& file, const Network& net, const std::string& prefix);
// Loads them back; every tensor must be present with the right shape, or the error names the file,
// the tensor and what was expected (a checkpoint of another architecture is refused this way).
void load_network(Network& net, const SafeTensorsFile& file, const std::string& prefix, const std::string& path);

struct LoadedGenerator {
  ModelConfig model;
  std::unique_ptr<Generator> generator;
  std::string dataset_sidecar;  // empty if the checkpoint carries none
};
// From netG.safetensors or last.safetensors (recognised by its metadata).
LoadedGenerator load_generator(const std::string& path, int64_t batch, Device device);

}  // namespace ds
