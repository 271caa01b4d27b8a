// Checkpoint reading/writing of networks (see checkpoint.h).
#include "engine/train/checkpoint.h"

#include <stdexcept>

namespace ds {

void add_network(SafeTensorsFile& file, const Network& net, const std::string& prefix) {
  for (const NamedTensor& t : net.state_tensors()) {
    const std::vector<float> host = t.tensor.to_host();
    file.add_f32(prefix + t.name, t.tensor.shape(), host.data());
  }
  for (auto& [name, count] : const_cast<Network&>(net).batches_tracked())
    file.add(prefix + name, DType::I64, {}, count);
}

void load_network(Network& net, const SafeTensorsFile& file, const std::string& prefix, const std::string& path) {
  try {
    for (const NamedTensor& t : net.state_tensors()) {
      const SafeTensor& st = file.get(prefix + t.name, DType::F32, t.tensor.shape());
      Tensor dst = t.tensor;
      dst.copy_from_host(reinterpret_cast<const float*>(st.data.data()), dst.numel());
    }
    for (auto& [name, count] : net.batches_tracked()) {
      const SafeTensor& st = file.get(prefix + name, DType::I64, {});
      *count = *reinterpret_cast<const int64_t*>(st.data.data());
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": does not fit this architecture: " + e.what());
  }
}

LoadedGenerator load_generator(const std::string& path, int64_t batch, Device device) {
  const SafeTensorsFile file = read_safetensors(path);
  auto model = file.metadata.find(kMetaModel);
  if (model == file.metadata.end())
    throw std::runtime_error(path + ": no '" + std::string(kMetaModel) +
                             "' metadata: not a darkstar checkpoint (expected netG.safetensors or last.safetensors)");
  auto kind = file.metadata.find(kMetaKind);
  const bool whole_state = kind != file.metadata.end() && kind->second == "training-state";
  if (kind != file.metadata.end() && kind->second == "netD")
    throw std::runtime_error(path + ": is a discriminator checkpoint; expected netG.safetensors or last.safetensors");
  LoadedGenerator out;
  out.model = ModelConfig::from_json(model->second);
  out.generator = std::make_unique<Generator>(out.model, batch, device);
  load_network(*out.generator, file, whole_state ? "netG." : "", path);
  auto ds_meta = file.metadata.find(kMetaDataset);
  if (ds_meta != file.metadata.end()) out.dataset_sidecar = ds_meta->second;
  return out;
}

}  // namespace ds
