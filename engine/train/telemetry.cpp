// The trainer's TensorBoard statistics (see telemetry.h).
#include "engine/train/telemetry.h"

#include <cmath>
#include <stdexcept>

namespace ds {
namespace {
// engine/nn/dcgan.cpp's batch-norm eps (PyTorch's default): invstd = 1 / sqrt(var + eps).
constexpr double kBatchNormEps = 1e-5;

void check_snapshot_size(const std::vector<float>& buffer, const Network& net, const char* what) {
  if (!buffer.empty() && static_cast<int64_t>(buffer.size()) != net.params().numel())
    throw std::invalid_argument(std::string("telemetry: ") + what + " holds " + std::to_string(buffer.size()) +
                                " floats, the network's parameter buffer " + std::to_string(net.params().numel()));
}
}  // namespace

double l2_norm(const float* x, size_t count) {
  double sum = 0;
  for (size_t i = 0; i < count; ++i) sum += static_cast<double>(x[i]) * x[i];
  return std::sqrt(sum);
}

double l2_distance(const float* a, const float* b, size_t count) {
  double sum = 0;
  for (size_t i = 0; i < count; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    sum += d * d;
  }
  return std::sqrt(sum);
}

void add_parameter_scalars(TensorBoardWriter& tb, const std::string& net_name, const Network& net,
                           const NetworkSnapshot& snapshot, int64_t step) {
  check_snapshot_size(snapshot.params, net, "params");
  check_snapshot_size(snapshot.grads, net, "grads");
  check_snapshot_size(snapshot.params_before, net, "params_before");
  const std::vector<NamedTensor>& parameters = net.parameters();
  const std::vector<int64_t>& offsets = net.parameter_offsets();
  for (size_t i = 0; i < parameters.size(); ++i) {
    const std::string name = net_name + "." + parameters[i].name;
    const size_t at = static_cast<size_t>(offsets[i]), count = static_cast<size_t>(parameters[i].tensor.numel());
    if (!snapshot.params.empty())
      tb.add_scalar("weight_norm/" + name, static_cast<float>(l2_norm(snapshot.params.data() + at, count)), step);
    if (!snapshot.grads.empty())
      tb.add_scalar("grad_norm/" + name, static_cast<float>(l2_norm(snapshot.grads.data() + at, count)), step);
    if (!snapshot.params.empty() && !snapshot.params_before.empty()) {
      const double before = l2_norm(snapshot.params_before.data() + at, count);
      const double update = l2_distance(snapshot.params.data() + at, snapshot.params_before.data() + at, count);
      tb.add_scalar("update_ratio/" + name, static_cast<float>(before > 0 ? update / before : 0.0), step);
    }
  }
}

void add_batchnorm_scalars(TensorBoardWriter& tb, const std::string& net_name, Network& net, int64_t step) {
  std::vector<std::vector<float>> means, invstds;
  for (Stage& s : net.stages()) {
    if (!s.has_bn) continue;
    means.push_back(s.saved_mean.to_host());
    invstds.push_back(s.saved_invstd.to_host());
  }
  add_batchnorm_scalars(tb, net_name, net, means, invstds, step);
}

void add_batchnorm_scalars(TensorBoardWriter& tb, const std::string& net_name, const Network& net,
                           const std::vector<std::vector<float>>& means,
                           const std::vector<std::vector<float>>& invstds, int64_t step) {
  size_t i = 0;
  for (const Stage& s : net.stages()) {
    if (!s.has_bn) continue;
    if (i >= means.size() || i >= invstds.size() || means[i].size() != invstds[i].size())
      throw std::invalid_argument("add_batchnorm_scalars: host statistics for " + net_name + " do not match its stages");
    const std::vector<float>& mean = means[i];
    const std::vector<float>& invstd = invstds[i];
    ++i;
    double mean_sum = 0, var_sum = 0;
    for (size_t c = 0; c < mean.size(); ++c) {
      mean_sum += mean[c];
      var_sum += 1.0 / (static_cast<double>(invstd[c]) * invstd[c]) - kBatchNormEps;
    }
    const double channels = static_cast<double>(mean.size());
    const std::string layer = net_name + ".main." + std::to_string(s.seq_bn);
    tb.add_scalar("bn_batch_mean/" + layer, static_cast<float>(mean_sum / channels), step);
    tb.add_scalar("bn_batch_var/" + layer, static_cast<float>(var_sum / channels), step);
  }
}

void add_parameter_histograms(TensorBoardWriter& tb, const std::string& net_name, const Network& net,
                              const NetworkSnapshot& snapshot, int64_t step) {
  check_snapshot_size(snapshot.params, net, "params");
  check_snapshot_size(snapshot.grads, net, "grads");
  const std::vector<NamedTensor>& parameters = net.parameters();
  const std::vector<int64_t>& offsets = net.parameter_offsets();
  for (size_t i = 0; i < parameters.size(); ++i) {
    const std::string name = net_name + "." + parameters[i].name;
    const size_t at = static_cast<size_t>(offsets[i]), count = static_cast<size_t>(parameters[i].tensor.numel());
    if (!snapshot.params.empty()) tb.add_histogram("weights/" + name, snapshot.params.data() + at, count, step);
    if (!snapshot.grads.empty()) tb.add_histogram("grads/" + name, snapshot.grads.data() + at, count, step);
  }
}

}  // namespace ds
