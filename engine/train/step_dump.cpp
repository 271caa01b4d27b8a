// train --dump (see step_dump.h): names each tensor the networks show the observer, copies it to the
// host and writes it as .npy at once (a dump never holds more than one tensor in memory), then
// index.json.
#include "engine/train/step_dump.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/formats/atomic_file.h"
#include "engine/formats/npy.h"

namespace fs = std::filesystem;

namespace ds {

std::string StepDump::directory(const std::string& run_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%07lld", static_cast<long long>(step));
  return (fs::path(run_dir) / "dump" / name).string();
}

void check_dump_request(const std::string& run_dir, int64_t dump_step, int64_t steps, int64_t start_step) {
  const std::string n = std::to_string(dump_step);
  if (dump_step < 1 || dump_step > steps)
    throw std::invalid_argument("--dump " + n + ": expected a step from 1 to --steps " + std::to_string(steps));
  if (dump_step <= start_step)
    throw std::invalid_argument("--dump " + n + ": the run resumes at step " + std::to_string(start_step) +
                                ", past it; give a later step (or dump from a fresh run)");
  const std::string dir = StepDump::directory(run_dir, dump_step);
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec))
    throw std::invalid_argument("--dump " + n + ": " + dir + " already holds a dump; move it away or dump another step");
}

StepDump::StepDump(const std::string& dir, int64_t step, Generator& G, Discriminator& D)
    : dir_(dir), step_(step), G_(G), D_(D) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_)) throw std::runtime_error("--dump: cannot create " + dir_ + ": " + ec.message());
  G_.set_observer(this);
  D_.set_observer(this);
}

StepDump::~StepDump() {
  G_.set_observer(nullptr);
  D_.set_observer(nullptr);
}

std::string StepDump::net_name(const Network& net) const {
  if (&net == &G_) return "G";
  if (&net == &D_) return "D";
  throw std::logic_error("StepDump: a network it does not watch");
}

std::pair<std::string, std::string> StepDump::layer_of(const Network& net, int stage, StageModule module) const {
  const std::string n = net_name(net);
  if (module == StageModule::Input) return {n + ".input", "input"};
  const Stage& s = const_cast<Network&>(net).stages().at(static_cast<size_t>(stage));
  switch (module) {
    case StageModule::Conv:
      return {n + ".main." + std::to_string(s.seq_conv), s.geometry.transposed ? "ConvTranspose2d" : "Conv2d"};
    case StageModule::BatchNorm: return {n + ".main." + std::to_string(s.seq_bn), "BatchNorm2d"};
    case StageModule::Activation: {
      const int index = (s.has_bn ? s.seq_bn : s.seq_conv) + 1;
      const char* type = s.activation == Activation::ReLU        ? "ReLU"
                         : s.activation == Activation::LeakyReLU ? "LeakyReLU"
                                                                 : "Tanh";
      return {n + ".main." + std::to_string(index), type};
    }
    case StageModule::Input: break;
  }
  return {n + ".input", "input"};
}

void StepDump::begin(const Network& net, bool backward) {
  if (&net == &D_ && !backward) {
    d_pass_ = d_updated_ ? "G_step" : d_forwards_ == 0 ? "D_real" : "D_fake";
    ++d_forwards_;
  }
}

void StepDump::observe(const Network& net, int stage, StageModule module, bool gradient, const Tensor& t) {
  Entry e;
  e.net = net_name(net);
  // G runs forward once, in D's fake pass, and backward once, in the G step.
  const std::string pass = e.net == "D" ? d_pass_ : (gradient ? "G_step" : "D_fake");
  const std::string forward_pass = e.net == "D" ? d_pass_ : "D_fake";
  const auto [layer, type] = layer_of(net, stage, module);
  e.layer = layer;
  e.module = type;
  e.pass = pass;
  const std::string value = module == StageModule::Input ? layer : layer + ".out";
  if (gradient) {
    e.kind = "gradient";
    e.name = pass + "." + value + ".grad";
    e.gradient_of = forward_pass + "." + value;
  } else {
    e.kind = "activation";
    e.name = pass + "." + value;
  }
  write(std::move(e), t);
}

void StepDump::write(Entry e, const Tensor& t) {
  if (by_name_.count(e.name))
    throw std::logic_error("--dump: " + e.name + " seen twice (gan_step's order of passes changed?)");
  e.shape = t.shape();
  const std::vector<float> host = t.to_host();
  write_npy((fs::path(dir_) / (e.name + ".npy")).string(), DType::F32, e.shape, host.data());
  by_name_[e.name] = entries_.size();
  entries_.push_back(std::move(e));
}

void StepDump::write_parameters(const char* pass, const char* net_name, Network& net, bool with_grads) {
  const std::vector<NamedTensor>& params = net.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& pname = params[i].name;  // "main.3.weight"
    Entry e;
    e.pass = pass;
    e.net = net_name;
    e.layer = std::string(net_name) + "." + pname.substr(0, pname.rfind('.'));
    e.module = "";
    e.kind = "parameter";
    e.name = std::string(pass) + "." + net_name + "." + pname;
    const Tensor& p = params[i].tensor;
    write(e, p);
    if (!with_grads) continue;
    e.kind = "parameter_gradient";
    e.gradient_of = e.name;
    e.name += ".grad";
    write(e, Tensor::view(net.grads().data() + net.parameter_offsets()[i], p.shape(), net.device()));
  }
}

std::function<void(const char*)> StepDump::before_adam_hook() {
  return [this](const char* net) {
    if (!watching_) return;
    if (std::string(net) == "D") {
      write_parameters("D_step", "D", D_, true);
      d_updated_ = true;
    } else {
      write_parameters("G_step", "D", D_, false);  // the updated D the G step ran through
      write_parameters("G_step", "G", G_, true);
    }
  };
}

void StepDump::finish() {
  G_.set_observer(nullptr);
  D_.set_observer(nullptr);
  watching_ = false;
  nlohmann::json tensors = nlohmann::json::array();
  for (const Entry& e : entries_) {
    nlohmann::json j = {{"name", e.name},   {"file", e.name + ".npy"}, {"pass", e.pass},
                        {"kind", e.kind},   {"net", e.net},            {"layer", e.layer},
                        {"shape", e.shape}, {"dtype", "float32"}};
    if (!e.module.empty()) j["module"] = e.module;
    if (!e.gradient_of.empty()) j["gradient_of"] = e.gradient_of;
    tensors.push_back(j);
  }
  const nlohmann::json index = {
      {"step", step_},
      {"passes",
       {{"D_real", "D forward and backward on the real batch (label 1), train-mode batch norm"},
        {"D_fake", "G forward on z (train mode); D forward and backward on G(z) detached (label 0)"},
        {"D_step", "D's parameters before its Adam step and the gradients Adam consumes (D_real + D_fake)"},
        {"G_step", "D after its update, forward and backward on G(z) (label 1), back into G (whose forward is "
                   "D_fake's); G's parameters before its Adam step and the gradients Adam consumes"}}},
      {"kinds",
       {{"activation", "a module's forward output (or the network's input)"},
        {"gradient", "d(loss of the pass)/d(the tensor named by gradient_of)"},
        {"parameter", "a parameter as the pass used it"},
        {"parameter_gradient", "the accumulated parameter gradient Adam consumes"}}},
      {"tensors", tensors}};
  write_text_atomic((fs::path(dir_) / "index.json").string(), index.dump(1) + "\n");
}

}  // namespace ds
