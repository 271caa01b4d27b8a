// The training loop (see trainer.h): one step exactly as PyTorch's examples/dcgan, checkpoints,
// samples, logs, resume.
//
// CUDA graphs. On CUDA, Trainer::step enqueues the same kernels with the same arguments every step,
// so the step can be captured once and replayed: every per-step value lives in device memory and is
// advanced there by one-thread kernels: the batch cursor into the double-buffered data order
// (images_u8_to_float_at / gather_rows_at, then advance_batch_cursor), the noise step
// (normal_fill_at, then advance_counter) and Adam's step counters (AdamCounter). Capturable: the gather,
// the noise and everything in gan_step. NOT captured, enqueued on the same stream between steps by
// the host: the copies of an epoch's order into its half of the buffer (cudaMemcpyAsync from pinned
// staging, listed by DataOrder::uploads_due: one when an epoch starts, for the epoch after it; two on
// the first step and after a resume), each preceded by a host wait on the copy that last read the
// same staging buffer, enqueued two epochs earlier (done unless the GPU lags the host by two epochs;
// with one batch per epoch this bounds how far the host runs ahead to two steps).
// A streamed dataset (--device-data, engine/data/batch_stream.h) adds, between steps: the host gathers the
// batch rows from the memory map into pinned staging[k % 2] (after waiting on that buffer's copy,
// enqueued two steps earlier), a copy stream copies them into device slot k % 2 (after an event says
// the step that last read the slot has run) and the step's stream waits on that copy; the step's
// gather reads the slot through its own device cursor (same kernels, fixed arguments).
// The host mirrors all bookkeeping deterministically (DataOrder, step_, AdamCounter::step()), so a
// step never reads the device; only samples, checkpoints (which read the weights, moments and the host
// mirror) and SWD synchronise, every sample_every / checkpoint_every / swd_every steps. A logged step's
// values are copied to pinned memory behind it and written after the next step is enqueued (see
// train_steps), so logging waits only for copies the device has already passed. The capture (engine/train/step_graph.h): the first step of a
// Trainer runs eagerly, the second is captured and launched, later ones replay it (cfg.cuda_graph,
// train --no-graph: always eager); a --dump step runs eagerly (its observer reads tensors on the host).
// StepScope (kernels/launch_log.h) makes any host read, synchronisation or allocation inside the
// captured part throw, on both devices.
#include "engine/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/formats/atomic_file.h"
#include "engine/train/checkpoint.h"
#include "engine/train/step_dump.h"
#include "engine/train/step_graph.h"
#include "engine/train/run_folder.h"
#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"
#include "engine/core/host_readback.h"
#include "engine/formats/png.h"
#include "engine/core/rng.h"
#include "engine/formats/safetensors.h"
#include "engine/formats/tensorboard.h"
#include "engine/train/swd_monitor.h"
#include "kernels/image.h"
#include "kernels/launch_log.h"
#include "kernels/rng.h"

namespace fs = std::filesystem;

namespace ds {

namespace {
// Philox streams: one per purpose, so changing one use never shifts another's numbers.
constexpr uint32_t kStreamInitG = 0, kStreamInitD = 1, kStreamData = 2, kStreamNoise = 3, kStreamFixedNoise = 4;

}  // namespace

std::string TrainConfig::to_json() const {
  nlohmann::json j = {{"batch", batch},         {"lr", adam.lr},          {"lr_d", lr_d},
                      {"beta1", adam.beta1},    {"beta2", adam.beta2},
                      {"eps", adam.eps},        {"seed", seed},
                      {"steps", steps},         {"checkpoint_every", checkpoint_every},
                      {"sample_every", sample_every}, {"log_every", log_every},
                      {"n_samples", n_samples}, {"data", data_path},   {"cuda_graph", cuda_graph},
                      {"model", nlohmann::json::parse(model.to_json())}};
  return j.dump();
}

GanStepState::GanStepState(const Generator& G, const Discriminator& D) : stepG(G.device()), stepD(G.device()) {
  const Device dev = G.device();
  const Shape fake = G.output().shape();
  dlogits = Tensor::zeros(D.output().shape(), dev);
  dfake = Tensor::zeros(fake, dev);
  stats = Tensor::zeros({kGanStatCount}, dev);
  mG = Tensor::zeros(G.params().shape(), dev);
  vG = Tensor::zeros(mG.shape(), dev);
  mD = Tensor::zeros(D.params().shape(), dev);
  vD = Tensor::zeros(mD.shape(), dev);
}

void gan_step(Generator& G, Discriminator& D, GanStepState& st, const Tensor& real, const Tensor& z,
              const AdamConfig& adam, const std::function<void(const char* net)>& before_adam,
              const AdamConfig* adam_d) {
  const Device dev = G.device();
  auto slot = [&](int i) { return Tensor::view(st.stats.data() + i, {1}, dev); };
  Tensor err_d_real = slot(kErrDReal), d_x = slot(kDx), err_d_fake = slot(kErrDFake), d_g_z1 = slot(kDGz1),
         err_g = slot(kErrG), d_g_z2 = slot(kDGz2);

  // (1) Update D: maximize log(D(x)) + log(1 - D(G(z))), real and fake batches with their own statistics.
  D.zero_grad();
  D.forward(real, true);
  bce_with_logits(st.dlogits, err_d_real, d_x, D.output(), 1.f);
  D.backward(st.dlogits, nullptr, true);
  G.forward(z, true);
  D.forward(G.output(), true);  // G(z).detach(): no gradient flows to G here
  bce_with_logits(st.dlogits, err_d_fake, d_g_z1, D.output(), 0.f);
  D.backward(st.dlogits, nullptr, true);
  if (before_adam) before_adam("D");
  adam_step(D.params(), st.mD, st.vD, D.grads(), adam_d ? *adam_d : adam, st.stepD);

  // (2) Update G: maximize log(D(G(z))) against the updated D (non-saturating loss, label 1).
  G.zero_grad();
  D.forward(G.output(), true);
  bce_with_logits(st.dlogits, err_g, d_g_z2, D.output(), 1.f);
  D.backward(st.dlogits, &st.dfake, false);  // D's parameter gradients are not needed in this pass
  G.backward(st.dfake, nullptr, true);
  if (before_adam) before_adam("G");
  adam_step(G.params(), st.mG, st.vG, G.grads(), adam, st.stepG);
}

DataOrder::DataOrder(uint64_t seed, uint32_t rng_stream, int64_t count, int64_t batch)
    : count_(count), batch_(batch), rng_(seed, rng_stream) {}

void DataOrder::draw(std::vector<int32_t>& order, Philox& rng) const {
  const std::vector<int64_t> drawn = rng.permutation(count_);
  order.assign(drawn.begin(), drawn.end());
}

int64_t DataOrder::next_batch() {
  if (permutation_.empty() || position_ + batch_ > count_) {
    if (next_valid_) {  // drawn ahead for the device: the same numbers rng_ would draw now
      permutation_.swap(next_permutation_);
      rng_.restore(next_rng_);
      next_valid_ = false;
    } else {
      draw(permutation_, rng_);
    }
    position_ = 0;
    if (!permutation_.empty()) ++epoch_;
  }
  const int64_t first = position_;
  position_ += batch_;
  return first;
}

void DataOrder::restore(std::vector<int32_t> permutation, int64_t position, int64_t epoch, const PhiloxState& rng) {
  permutation_ = std::move(permutation);
  position_ = position;
  epoch_ = epoch;
  rng_.restore(rng);
  next_valid_ = false;
  uploaded_through_ = 0;
}

int64_t DataOrder::device_cursor() const {
  if (permutation_.empty() || position_ + batch_ > count_) return ((epoch_ + 1) % 2) * count_;
  return (epoch_ % 2) * count_ + position_;
}

int DataOrder::uploads_due(Upload due[2]) {
  int n = 0;
  for (int64_t e = std::max(uploaded_through_ + 1, epoch_); e <= epoch_ + 1; ++e) {
    if (e == epoch_) {
      due[n++] = {e % 2, permutation_.data()};
    } else {
      if (!next_valid_) {
        Philox ahead(rng_.state());
        draw(next_permutation_, ahead);
        next_rng_ = ahead.state();
        next_valid_ = true;
      }
      due[n++] = {e % 2, next_permutation_.data()};
    }
  }
  uploaded_through_ = std::max(uploaded_through_, epoch_ + 1);
  return n;
}

namespace {
// The CUDA side of the data order and noise (see the file comment): device memory the step's kernels
// read, and pinned staging for the order copies, one buffer per half so a copy still in flight is
// never overwritten.
struct DeviceStepState {
  DeviceBuffer<int32_t> orders;      // 2×count: epoch e's order in half e % 2
  DeviceBuffer<int64_t> cursor{1};   // half·count + index of the next batch's first row
  DeviceBuffer<int64_t> noise_step{1};  // the step number the next noise draw belongs to
  int32_t* staging[2] = {nullptr, nullptr};
  cudaEvent_t staged_copy_done[2] = {nullptr, nullptr};
  int64_t count;

  explicit DeviceStepState(int64_t n) : orders(static_cast<size_t>(2 * n)), count(n) {
    for (int h = 0; h < 2; ++h) {
      DS_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&staging[h]), static_cast<size_t>(n) * sizeof(int32_t),
                                  cudaHostAllocDefault));
      DS_CUDA_CHECK(cudaEventCreateWithFlags(&staged_copy_done[h], cudaEventDisableTiming));
    }
  }
  ~DeviceStepState() {
    for (int h = 0; h < 2; ++h) {
      if (staged_copy_done[h]) cudaEventDestroy(staged_copy_done[h]);
      if (staging[h]) cudaFreeHost(staging[h]);
    }
  }
  DeviceStepState(const DeviceStepState&) = delete;
  DeviceStepState& operator=(const DeviceStepState&) = delete;

  // Host-side values after construction or resume (synchronous: never inside a step).
  void set(int64_t cursor_value, int64_t step) {
    cursor.upload(&cursor_value, 1);
    noise_step.upload(&step, 1);
  }
  // Enqueues the copies `order` lists as due (not part of a captured step; see the file comment).
  void upload_due(DataOrder& order) {
    DataOrder::Upload due[2];
    const int n = order.uploads_due(due);
    cudaStream_t stream = CudaContext::get().stream();
    for (int i = 0; i < n; ++i) {
      const int64_t h = due[i].half;
      // The last copy out of this staging buffer was enqueued two epochs ago.
      DS_CUDA_CHECK(cudaEventSynchronize(staged_copy_done[h]));
      std::copy(due[i].order, due[i].order + count, staging[h]);
      DS_CUDA_CHECK(cudaMemcpyAsync(orders.get() + h * count, staging[h], static_cast<size_t>(count) * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, stream));
      DS_CUDA_CHECK(cudaEventRecord(staged_copy_done[h], stream));
    }
  }
};

// The streamed dataset's device side (see the file comment and batch_stream.h).
struct DeviceStreamState {
  BatchStream plan;
  DeviceBuffer<uint8_t> ring;        // 2 slots of plan.slot_bytes()
  DeviceBuffer<int32_t> ring_order;  // identity over the 2·batch ring rows
  DeviceBuffer<int64_t> cursor{1};   // 0 or batch: the slot the next gather reads
  void* staging[2] = {nullptr, nullptr};
  cudaEvent_t copied[2] = {nullptr, nullptr};    // on the copy stream, after slot s's last copy
  cudaEvent_t consumed[2] = {nullptr, nullptr};  // on the step stream, after the step that read slot s
  cudaStream_t copy_stream = nullptr;
  int last_slot = -1;

  DeviceStreamState(int64_t batch, const ImageDataset& data)
      : plan(batch, data), ring(2 * plan.slot_bytes()), ring_order(static_cast<size_t>(2 * batch)) {
    ring_order.upload(plan.ring_order());
    const int64_t zero = 0;
    cursor.upload(&zero, 1);
    DS_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
    for (int s = 0; s < 2; ++s) {
      DS_CUDA_CHECK(cudaHostAlloc(&staging[s], plan.slot_bytes(), cudaHostAllocDefault));
      DS_CUDA_CHECK(cudaEventCreateWithFlags(&copied[s], cudaEventDisableTiming));
      DS_CUDA_CHECK(cudaEventCreateWithFlags(&consumed[s], cudaEventDisableTiming));
    }
  }
  ~DeviceStreamState() {
    if (copy_stream) cudaStreamSynchronize(copy_stream);
    for (int s = 0; s < 2; ++s) {
      if (copied[s]) cudaEventDestroy(copied[s]);
      if (consumed[s]) cudaEventDestroy(consumed[s]);
      if (staging[s]) cudaFreeHost(staging[s]);
    }
    if (copy_stream) cudaStreamDestroy(copy_stream);
  }
  DeviceStreamState(const DeviceStreamState&) = delete;
  DeviceStreamState& operator=(const DeviceStreamState&) = delete;

  // Between steps: this step's rows into their slot, ordered before the step's gather.
  void upload(const std::vector<int32_t>& permutation, int64_t first) {
    cudaStream_t step_stream = CudaContext::get().stream();
    // Everything enqueued so far (the previous step) is what last read last_slot.
    if (last_slot >= 0) DS_CUDA_CHECK(cudaEventRecord(consumed[last_slot], step_stream));
    const BatchStream::Upload u = plan.next(permutation, first);
    DS_CUDA_CHECK(cudaEventSynchronize(copied[u.slot]));  // staging[slot]'s copy of two steps ago
    plan.stage(staging[u.slot], u.rows, u.n);
    DS_CUDA_CHECK(cudaStreamWaitEvent(copy_stream, consumed[u.slot], 0));  // never recorded: no wait
    DS_CUDA_CHECK(cudaMemcpyAsync(ring.get() + u.slot * plan.slot_bytes(), staging[u.slot], plan.slot_bytes(),
                                  cudaMemcpyHostToDevice, copy_stream));
    DS_CUDA_CHECK(cudaEventRecord(copied[u.slot], copy_stream));
    DS_CUDA_CHECK(cudaStreamWaitEvent(step_stream, copied[u.slot], 0));
    last_slot = u.slot;
  }
};
}  // namespace

struct Trainer::Impl {
  Tensor real, z;
  std::unique_ptr<GanStepState> gan;
  // CUDA, resident: the dataset on the device (CPU: batches are gathered from the memory map).
  Tensor data_f32;                     // float16 datasets (mels), converted to float32
  DeviceBuffer<uint8_t> data_u8_dev;   // uint8 datasets as stored
  std::unique_ptr<DataOrder> order;
  std::unique_ptr<DeviceStepState> device_step;  // CUDA only
  std::unique_ptr<DeviceStreamState> device_stream;  // CUDA with a streamed dataset only
  std::unique_ptr<Generator> sampler;  // G with batch n_samples for the fixed-noise grids
  Tensor fixed_noise;
  std::string last_good_checkpoint;
  int64_t last_good_step = -1;
  Tensor paramsG_before, paramsD_before;  // parameters before a logged step's update (update ratios)
  SampleHook sample_hook;
  std::unique_ptr<CudaStepGraph> graph;  // CUDA only: the captured step (step_graph.h)
  std::unique_ptr<HostReadback> readback;  // a logged step's values on their way to the host
};

namespace {
// The whole dataset onto the device, read from the memory map a chunk at a time (float16 converted
// to float32 on the host in ~16 MiB pieces), so the host never holds a copy of the file.
void upload_resident_dataset(Tensor& data_f32, DeviceBuffer<uint8_t>& data_u8, const ImageDataset& data) {
  const size_t device_bytes = resident_device_bytes(data);
  if (data.dtype == DType::U8) {
    data_u8 = DeviceBuffer<uint8_t>(device_bytes);
    data_u8.upload(data.row(0), device_bytes);
    return;
  }
  data_f32 = Tensor::empty({data.count, data.channels, data.height, data.width}, Device::CUDA);
  const int64_t rows_per_chunk = std::max<int64_t>(1, (int64_t(16) << 20) / (data.sample_size() * 4));
  std::vector<float> chunk(static_cast<size_t>(std::min(rows_per_chunk, data.count) * data.sample_size()));
  std::vector<int32_t> rows(static_cast<size_t>(rows_per_chunk));
  for (int64_t begin = 0; begin < data.count; begin += rows_per_chunk) {
    const int64_t n = std::min(rows_per_chunk, data.count - begin);
    for (int64_t i = 0; i < n; ++i) rows[i] = static_cast<int32_t>(begin + i);
    data.gather_as_float(chunk.data(), rows.data(), n);
    data_f32.rows(begin, begin + n).copy_from_host(chunk.data(), n * data.sample_size());
  }
}
}  // namespace

Trainer::Trainer(const TrainConfig& cfg) : cfg_(cfg), impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  data_ = load_image_dataset(cfg_.data_path);
  cfg_.model.height = data_.height;
  cfg_.model.width = data_.width;
  cfg_.model.channels = data_.channels;
  cfg_.model.validate();
  if (cfg_.batch < 2)
    throw std::invalid_argument("--batch " + std::to_string(cfg_.batch) +
                                ": expected at least 2 (batch norm needs two values per channel)");
  if (cfg_.batch > data_.count)
    throw std::invalid_argument("--batch " + std::to_string(cfg_.batch) + " is larger than the dataset " +
                                cfg_.data_path + " (" + std::to_string(data_.count) + " images)");
  if (cfg_.steps < 0) throw std::invalid_argument("--steps must be >= 0");
  const Device dev = cfg_.device;
  const ModelConfig& mc = cfg_.model;
  G_ = std::make_unique<Generator>(mc, cfg_.batch, dev);
  D_ = std::make_unique<Discriminator>(mc, cfg_.batch, dev);
  m.sampler = std::make_unique<Generator>(mc, cfg_.n_samples, dev);
  m.real = Tensor::zeros({cfg_.batch, mc.channels, mc.height, mc.width}, dev);
  m.z = Tensor::zeros({cfg_.batch, mc.nz, 1, 1}, dev);
  m.gan = std::make_unique<GanStepState>(*G_, *D_);
  m.paramsG_before = Tensor::zeros(G_->params().shape(), dev);
  m.paramsD_before = Tensor::zeros(D_->params().shape(), dev);
  m.readback = std::make_unique<HostReadback>(dev);
  m.fixed_noise = Tensor::zeros({cfg_.n_samples, mc.nz, 1, 1}, dev);
  normal_noise(m.fixed_noise, cfg_.seed, kStreamFixedNoise, 0);
  if (dev == Device::CUDA) {  // on the CPU, batches are read in place from the memory map
    size_t free_bytes = 0, total_bytes = 0;
    DS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const size_t bytes = resident_device_bytes(data_);
    const bool resident = choose_resident(cfg_.device_data, bytes, free_bytes);
    if (!cfg_.quiet)
      std::fprintf(stderr, "darkstar: dataset %s takes %zu MiB on the device, budget %zu MiB: %s\n",
                   cfg_.data_path.c_str(), bytes >> 20, resident_budget(free_bytes) >> 20,
                   resident ? "resident" : "streamed in pinned, double-buffered batches");
    if (resident)
      upload_resident_dataset(m.data_f32, m.data_u8_dev, data_);
    else
      m.device_stream = std::make_unique<DeviceStreamState>(cfg_.batch, data_);
  }
  m.order = std::make_unique<DataOrder>(cfg_.seed, kStreamData, data_.count, cfg_.batch);
  if (dev == Device::CUDA) m.device_step = std::make_unique<DeviceStepState>(data_.count);
  G_->init_weights(cfg_.seed, kStreamInitG);
  D_->init_weights(cfg_.seed, kStreamInitD);
  fs::create_directories(cfg_.out_dir);
  fs::create_directories(fs::path(cfg_.out_dir) / "samples");

  if (cfg_.resume) {
    const std::string path = last_checkpoint_path();
    if (!fs::exists(path)) throw std::runtime_error("--resume: no checkpoint at " + path);
    const SafeTensorsFile file = read_safetensors(path);
    auto meta = file.metadata.find(kMetaModel);
    if (meta == file.metadata.end()) throw std::runtime_error(path + ": not a darkstar training state");
    const ModelConfig saved = ModelConfig::from_json(meta->second);
    if (saved.to_json() != cfg_.model.to_json())
      throw std::runtime_error(path + ": checkpoint model " + saved.to_json() + " differs from this run's " +
                               cfg_.model.to_json() + " (same --data, --nz, --ngf, --ndf expected)");
    load_network(*G_, file, "netG.", path);
    load_network(*D_, file, "netD.", path);
    auto load = [&](Tensor& t, const std::string& name) {
      const SafeTensor& st = file.get(name, DType::F32, t.shape());
      t.copy_from_host(reinterpret_cast<const float*>(st.data.data()), t.numel());
    };
    // Adam's moments are stored packed (no alignment padding, engine/nn/dcgan.h), as before the padding.
    auto load_moment = [&](Tensor& t, const Network& net, const std::string& name) {
      const SafeTensor& st = file.get(name, DType::F32, {net.packed_parameter_count()});
      net.unpack(t, reinterpret_cast<const float*>(st.data.data()), net.packed_parameter_count());
    };
    load_moment(m.gan->mG, *G_, "optG.exp_avg");
    load_moment(m.gan->vG, *G_, "optG.exp_avg_sq");
    load_moment(m.gan->mD, *D_, "optD.exp_avg");
    load_moment(m.gan->vD, *D_, "optD.exp_avg_sq");
    load(m.fixed_noise, "fixed_noise");
    step_ = *reinterpret_cast<const int64_t*>(file.get("step", DType::I64, {}).data.data());
    m.gan->stepG.set(step_);
    m.gan->stepD.set(step_);
    // Empty when the state was written before the first step (no epoch drawn yet).
    auto perm_it = file.tensors.find("data.permutation");
    const int64_t perm_count =
        perm_it != file.tensors.end() && perm_it->second.shape.size() == 1 && perm_it->second.shape[0] == 0 ? 0
                                                                                                             : data_.count;
    const SafeTensor& perm = file.get("data.permutation", DType::I32, {perm_count});
    std::vector<int32_t> permutation(reinterpret_cast<const int32_t*>(perm.data.data()),
                                     reinterpret_cast<const int32_t*>(perm.data.data()) + perm_count);
    const int64_t* order = reinterpret_cast<const int64_t*>(file.get("data.state", DType::I64, {7}).data.data());
    PhiloxState rs;
    rs.seed = static_cast<uint64_t>(order[2]);
    rs.stream = static_cast<uint32_t>(order[3]);
    rs.offset = static_cast<uint64_t>(order[4]);
    rs.lane = static_cast<uint32_t>(order[5]);
    rs.kind = static_cast<uint32_t>(order[6]);
    m.order->restore(std::move(permutation), order[0], order[1], rs);
    m.last_good_checkpoint = path;
    m.last_good_step = step_;
  }
  if (m.device_step) m.device_step->set(m.order->device_cursor(), step_);
  if (dev == Device::CUDA) m.graph = std::make_unique<CudaStepGraph>(cfg_.cuda_graph, cfg_.quiet);
}

Trainer::~Trainer() = default;

std::string Trainer::last_checkpoint_path() const { return (fs::path(cfg_.out_dir) / "last.safetensors").string(); }

void Trainer::step() {
  Impl& m = *impl_;
  const int64_t B = cfg_.batch;
  const int64_t first = m.order->next_batch();
  AdamConfig adam_d = cfg_.adam;
  if (cfg_.lr_d > 0) adam_d.lr = cfg_.lr_d;
  // train --dump: this step's tensors, read on the host as the step makes them (an observer, unfused
  // batch norm): a different launch sequence with host reads, so that step always runs eagerly,
  // outside the step scope; the graph (same buffers) stays valid for the steps after it.
  std::unique_ptr<StepDump> dump;
  if (cfg_.dump_step == step_ + 1)
    dump = std::make_unique<StepDump>(StepDump::directory(cfg_.out_dir, step_ + 1), step_ + 1, *G_, *D_);
  auto train_on_batch = [&] {
    gan_step(*G_, *D_, *m.gan, m.real, m.z, cfg_.adam, dump ? dump->before_adam_hook() : nullptr,
             cfg_.lr_d > 0 ? &adam_d : nullptr);
  };
  if (m.device_step) {
    // Between steps (not captured): this epoch's and the next one's orders into their halves.
    DeviceStepState& d = *m.device_step;
    d.upload_due(*m.order);
    if (m.device_stream) m.device_stream->upload(m.order->permutation(), first);
    // From here to the end of gan_step, the same launches with the same arguments every step: what
    // the CUDA graph captures (engine/train/step_graph.h).
    auto enqueue = [&] {
      cudaStream_t stream = CudaContext::get().stream();
      if (m.device_stream) {  // the batch's rows are in the slot the stream's cursor points at
        DeviceStreamState& ds = *m.device_stream;
        if (data_.dtype == DType::U8) {
          gather_images_at(m.real, ds.ring.get(), ds.ring_order.get(), ds.cursor.get(), B, data_.sample_size());
        } else {
          const Tensor ring = Tensor::view(reinterpret_cast<float*>(ds.ring.get()),
                                           {2 * B, data_.channels, data_.height, data_.width}, Device::CUDA);
          gather_rows_at(m.real, ring, ds.ring_order.get(), ds.cursor.get(), B);
        }
        kcuda::advance_batch_cursor(ds.cursor.get(), B, B, stream);
      } else if (data_.dtype == DType::U8) {
        gather_images_at(m.real, m.data_u8_dev.get(), d.orders.get(), d.cursor.get(), B, data_.sample_size());
      } else {
        gather_rows_at(m.real, m.data_f32, d.orders.get(), d.cursor.get(), B);
      }
      kcuda::advance_batch_cursor(d.cursor.get(), B, data_.count, stream);
      normal_noise_at(m.z, cfg_.seed, kStreamNoise, d.noise_step.get(), philox_tuples_for(m.z.numel()));
      kcuda::advance_counter(d.noise_step.get(), stream);
      train_on_batch();
    };
    if (dump) {
      enqueue();
    } else {
      // Every buffer the captured launches point into; all are allocated once in the constructor, so
      // this never changes (a change would drop the graph rather than replay freed pointers).
      std::vector<const void*> fingerprint{m.real.data(), m.z.data(), d.orders.get(), d.cursor.get(),
                                           d.noise_step.get(), m.data_f32.data(), m.data_u8_dev.get(),
                                           m.gan->stepG.device_step(), m.gan->stepD.device_step()};
      if (m.device_stream)
        for (const void* p : {static_cast<const void*>(m.device_stream->ring.get()),
                              static_cast<const void*>(m.device_stream->ring_order.get()),
                              static_cast<const void*>(m.device_stream->cursor.get())})
          fingerprint.push_back(p);
      for (const Tensor* t : {&G_->params(), &G_->grads(), &D_->params(), &D_->grads(), &m.gan->dlogits,
                              &m.gan->dfake, &m.gan->stats, &m.gan->mG, &m.gan->vG, &m.gan->mD, &m.gan->vD})
        fingerprint.push_back(t->data());
      m.graph->run(enqueue, *G_, *D_, *m.gan, fingerprint);
    }
  } else {
    std::unique_ptr<launch_log::StepScope> scope;  // the same rule on the CPU: no host reads inside a step
    if (!dump) scope = std::make_unique<launch_log::StepScope>();
    data_.gather_as_float(m.real.data(), m.order->permutation().data() + first, B);
    normal_noise(m.z, cfg_.seed, kStreamNoise, static_cast<uint64_t>(step_) * philox_tuples_for(m.z.numel()));
    train_on_batch();
  }
  if (dump) dump->finish();
  ++step_;
}

const Tensor& Trainer::real_batch() const { return impl_->real; }
const Tensor& Trainer::statistics() const { return impl_->gan->stats; }
const DataOrder& Trainer::data_order() const { return *impl_->order; }
bool Trainer::dataset_streamed() const { return impl_->device_stream != nullptr; }
bool Trainer::cuda_graph_replaying() const { return impl_->graph && impl_->graph->replaying(); }
std::string Trainer::cuda_graph_failure() const { return impl_->graph ? impl_->graph->failure() : std::string(); }

void Trainer::set_sample_hook(SampleHook hook) { impl_->sample_hook = std::move(hook); }

std::vector<float> Trainer::write_samples(const std::string& png_path) {
  Impl& m = *impl_;
  m.sampler->copy_state_from(*G_);
  m.sampler->forward(m.fixed_noise, false);
  const std::vector<float> host = m.sampler->output().to_host();
  const ModelConfig& mc = cfg_.model;
  write_png_grid(png_path, host.data(), static_cast<int>(cfg_.n_samples), static_cast<int>(mc.channels),
                 static_cast<int>(mc.height), static_cast<int>(mc.width), 8);
  return host;
}

namespace {
// Everything a checkpoint would store that can go non-finite: parameters and BN running statistics.
bool network_finite(Network& net) {
  std::vector<Tensor> tensors{net.params()};
  for (Stage& s : net.stages())
    if (s.has_bn) {
      tensors.push_back(s.running_mean);
      tensors.push_back(s.running_var);
    }
  return all_finite(tensors);
}

std::string last_good_text(const std::string& path, int64_t step) {
  return path.empty() ? std::string("none") : path + " (step " + std::to_string(step) + ")";
}

void add_tensor(SafeTensorsFile& f, const std::string& name, const Tensor& t) {
  const std::vector<float> host = t.to_host();
  f.add_f32(name, t.shape(), host.data());
}
// A buffer laid out like net's parameters, stored without the alignment padding (PyTorch's layout).
void add_packed(SafeTensorsFile& f, const std::string& name, const Network& net, const Tensor& flat) {
  const std::vector<float> host = net.packed(flat);
  f.add_f32(name, {static_cast<int64_t>(host.size())}, host.data());
}
}  // namespace

void Trainer::write_checkpoint() {
  Impl& m = *impl_;
  if (!network_finite(*G_) || !network_finite(*D_))
    throw std::runtime_error("non-finite weights at step " + std::to_string(step_) +
                             ": checkpoint not written; last good checkpoint: " +
                             (m.last_good_checkpoint.empty() ? std::string("none")
                                                             : m.last_good_checkpoint + " (step " +
                                                                   std::to_string(m.last_good_step) + ")"));
  const std::string model_json = cfg_.model.to_json();
  const fs::path dir(cfg_.out_dir);
  SafeTensorsFile g, d, all;
  for (SafeTensorsFile* f : {&g, &d, &all}) {
    f->metadata[kMetaModel] = model_json;
    f->metadata["format"] = "pt";
    if (!data_.sidecar_json.empty()) f->metadata[kMetaDataset] = data_.sidecar_json;
  }
  g.metadata[kMetaKind] = "netG";
  d.metadata[kMetaKind] = "netD";
  all.metadata[kMetaKind] = "training-state";
  all.metadata[kMetaTrain] = cfg_.to_json();
  add_network(g, *G_, "");
  add_network(d, *D_, "");
  add_network(all, *G_, "netG.");
  add_network(all, *D_, "netD.");
  add_packed(all, "optG.exp_avg", *G_, m.gan->mG);
  add_packed(all, "optG.exp_avg_sq", *G_, m.gan->vG);
  add_packed(all, "optD.exp_avg", *D_, m.gan->mD);
  add_packed(all, "optD.exp_avg_sq", *D_, m.gan->vD);
  add_tensor(all, "fixed_noise", m.fixed_noise);
  all.add("step", DType::I64, {}, &step_);
  const std::vector<int32_t>& permutation = m.order->permutation();
  all.add("data.permutation", DType::I32, {static_cast<int64_t>(permutation.size())}, permutation.data());
  // Data order: position in the epoch, epoch, and the permutation generator's whole Philox state.
  const PhiloxState rs = m.order->rng_state();
  const int64_t state[7] = {m.order->position(), m.order->epoch(), static_cast<int64_t>(rs.seed), rs.stream,
                            static_cast<int64_t>(rs.offset), rs.lane, rs.kind};
  all.add("data.state", DType::I64, {7}, state);
  try {  // each write is atomic: a failure (a full disk) leaves every earlier file as it was
    write_safetensors((dir / "netG.safetensors").string(), g);
    write_safetensors((dir / "netD.safetensors").string(), d);
    write_safetensors(last_checkpoint_path(), all);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + "; checkpoint of step " + std::to_string(step_) +
                             " not written; last good checkpoint: " +
                             last_good_text(m.last_good_checkpoint, m.last_good_step));
  }
  m.last_good_checkpoint = last_checkpoint_path();
  m.last_good_step = step_;
}

StepStats Trainer::run(const std::function<void(const StepStats&)>& on_log,
                       const volatile std::sig_atomic_t* stop_requested) {
  try {
    return train_steps(on_log, stop_requested);
  } catch (const std::exception& e) {  // a full disk under the log or the event file, say: say what survives
    const std::string what = e.what();
    if (what.find("last good checkpoint") != std::string::npos) throw;
    throw std::runtime_error(what + "; training stopped; last good checkpoint: " +
                             last_good_text(impl_->last_good_checkpoint, impl_->last_good_step));
  }
}

StepStats Trainer::train_steps(const std::function<void(const StepStats&)>& on_log,
                               const volatile std::sig_atomic_t* stop_requested) {
  Impl& m = *impl_;
  const fs::path dir(cfg_.out_dir);
  const std::string log_path = (dir / "log.jsonl").string();
  repair_log_tail(log_path);  // a torn last line (full disk, power loss) would break the appended lines
  if (cfg_.resume) {
    // Lines the interrupted run logged past this checkpoint: those steps are trained and logged again.
    const std::string aside = (dir / "log.rolled-back.jsonl").string();
    const int64_t moved = set_aside_log_lines_after(log_path, step_, aside);
    if (moved > 0)
      std::fprintf(stderr, "darkstar: resuming at step %lld: %lld line(s) of log.jsonl logged after that checkpoint "
                   "moved to %s (those steps are trained again)\n", static_cast<long long>(step_),
                   static_cast<long long>(moved), aside.c_str());
  }
  FILE* log = std::fopen(log_path.c_str(), "a");
  if (!log) throw std::runtime_error("cannot write " + log_path + ": " + std::strerror(errno));
  std::unique_ptr<FILE, int (*)(FILE*)> log_guard(log, std::fclose);
  // Shared: a sample hook's worker thread may still write audio after a step (telemetry.h).
  const std::shared_ptr<TensorBoardWriter> tb_shared = std::make_shared<TensorBoardWriter>(cfg_.out_dir);
  TensorBoardWriter& tb = *tb_shared;
  // Every run marks its first step; at a resume TensorBoard then hides what the earlier event files hold
  // from that step on (see add_session_start).
  tb.add_session_start(step_ + 1);
  tb.add_text("config", cfg_.to_json(), step_);
  tb.flush();
  std::unique_ptr<SwdMonitor> swd;  // --swd-every: its steps are also logged steps, holding the figures
  if (cfg_.swd_every > 0) swd = std::make_unique<SwdMonitor>(data_, cfg_.model, cfg_.swd_images, cfg_.seed, cfg_.device);
  // The first step has no checkpoint to fall back to; make one so a NaN never leaves nothing behind.
  if (m.last_good_step < 0 && cfg_.checkpoint_every > 0) write_checkpoint();
  StepStats stats;
  stats.step = step_;
  auto t0 = std::chrono::steady_clock::now();
  const int64_t first = step_;
  stopped_on_time_budget_ = false;

  // Logging without stalling the GPU. At a logged step the values it reports (the statistics slots:
  // losses and D outputs; at logged and histogram steps the parameters, gradients and batch-norm
  // statistics) are copied into pinned host memory behind the step (HostReadback: no wait), and the
  // line is written after the NEXT step has been enqueued, so the GPU runs step k+1 while the host
  // formats step k; the wait is for copies that follow step k, which the device has passed by then.
  // A step that must read the device anyway (SWD, samples, a checkpoint, a stop, the last step) writes
  // its own line first, at once, as before: a non-finite loss still stops training before its weights
  // are checkpointed. The copies are stream-ordered before the next step's writes, so what lands is
  // step k's state. On the CPU the copies are plain copies and the order is the same.
  HostReadback& readback = *m.readback;
  struct PendingLog {
    int64_t step = -1;  // -1: nothing pending
    bool line = false, swd = false, logged = false, with_before = false, histogram = false;
    int params[2] = {0, 0}, grads[2] = {0, 0}, before[2] = {0, 0};
    std::vector<int> bn_mean[2], bn_invstd[2];
  } pending;
  auto network = [&](int n) -> Network& { return n == 0 ? static_cast<Network&>(*G_) : static_cast<Network&>(*D_); };
  // line: a log.jsonl line and the scalars (log steps, SWD steps); logged: the network internals of a
  // log step; histogram_step: the histograms (which need the parameters and gradients too).
  auto enqueue_log = [&](bool line, bool swd_now, bool logged, bool with_before, bool histogram_step) {
    pending = PendingLog{};
    pending.step = step_;
    pending.line = line;
    pending.swd = swd_now;
    pending.logged = logged;
    pending.with_before = logged && with_before;
    pending.histogram = histogram_step;
    int slot = 0;
    readback.enqueue(slot++, m.gan->stats);
    if (logged || histogram_step) {
      for (int n = 0; n < 2; ++n) {
        Network& net = network(n);
        readback.enqueue(pending.params[n] = slot++, net.params());
        readback.enqueue(pending.grads[n] = slot++, net.grads());
        if (pending.with_before) readback.enqueue(pending.before[n] = slot++, n == 0 ? m.paramsG_before : m.paramsD_before);
        if (!logged) continue;
        for (Stage& st : net.stages()) {
          if (!st.has_bn) continue;
          pending.bn_mean[n].push_back(slot);
          readback.enqueue(slot++, st.saved_mean);
          pending.bn_invstd[n].push_back(slot);
          readback.enqueue(slot++, st.saved_invstd);
        }
      }
    }
    readback.record();
  };
  auto write_line = [&](const PendingLog& p) {
    const float* s = readback.data(0);
    stats.step = p.step;
    stats.loss_d = s[kErrDReal] + s[kErrDFake];
    stats.loss_g = s[kErrG];
    stats.d_x = s[kDx];
    stats.d_g_z1 = s[kDGz1];
    stats.d_g_z2 = s[kDGz2];
    // Timed when the copies behind step p.step had landed: p.step − first steps done by then.
    const double elapsed = std::chrono::duration<double>(readback.landed() - t0).count();
    const double steps_done = static_cast<double>(p.step - first);
    stats.images_per_second = elapsed > 0 ? steps_done * cfg_.batch / elapsed : 0;
    stats.eta_seconds = steps_done > 0 ? elapsed / steps_done * static_cast<double>(cfg_.steps - p.step) : 0;
    nlohmann::json j = {{"step", p.step},          {"Loss_D", stats.loss_d},  {"Loss_G", stats.loss_g},
                        {"D_x", stats.d_x},        {"D_G_z1", stats.d_g_z1},  {"D_G_z2", stats.d_g_z2},
                        {"images_per_second", stats.images_per_second}, {"elapsed_s", elapsed}};
    if (p.swd) {  // written at once (never deferred), so G is still at step p.step
      const SwdResult r = swd->measure(*G_);
      j["swd_mean"] = r.mean;
      j["swd_levels"] = r.levels;  // ×1e3, finest level first
      tb.add_scalar("SWD/mean", static_cast<float>(r.mean), p.step);
      for (size_t l = 0; l < r.levels.size(); ++l)
        tb.add_scalar("SWD/" + std::to_string(r.heights[l]) + "x" + std::to_string(r.widths[l]),
                      static_cast<float>(r.levels[l]), p.step);
    }
    // A full disk shows here (ENOSPC): stop, naming the file, rather than train on with no log.
    if (std::fprintf(log, "%s\n", j.dump().c_str()) < 0 || std::fflush(log) != 0)
      throw std::runtime_error("cannot write " + log_path + " at step " + std::to_string(p.step) + ": " +
                               std::strerror(errno) + "; training stopped; last good checkpoint: " +
                               last_good_text(m.last_good_checkpoint, m.last_good_step));
    tb.add_scalar("Loss_D", stats.loss_d, p.step);
    tb.add_scalar("Loss_G", stats.loss_g, p.step);
    tb.add_scalar("D(x)", stats.d_x, p.step);
    tb.add_scalar("D(G(z))/before_D_update", stats.d_g_z1, p.step);
    tb.add_scalar("D(G(z))/after_D_update", stats.d_g_z2, p.step);
    tb.add_scalar("images_per_second", static_cast<float>(stats.images_per_second), p.step);
    tb.flush();
    if (on_log) on_log(stats);
    if (!std::isfinite(stats.loss_d) || !std::isfinite(stats.loss_g))
      throw std::runtime_error(
          "non-finite loss at step " + std::to_string(p.step) + " (Loss_D " + std::to_string(stats.loss_d) +
          ", Loss_G " + std::to_string(stats.loss_g) + "): training stopped; last good checkpoint: " +
          (m.last_good_checkpoint.empty() ? std::string("none")
                                          : m.last_good_checkpoint + " (step " + std::to_string(m.last_good_step) + ")"));
  };
  auto finish_log = [&]() {
    PendingLog p = std::move(pending);
    pending = PendingLog{};
    readback.wait();  // the only host wait of a logged step
    if (p.line) write_line(p);
    if (p.logged || p.histogram) {  // network internals, from the same copies
      for (int n = 0; n < 2; ++n) {
        const Network& net = network(n);
        const char* name = n == 0 ? "netG" : "netD";
        NetworkSnapshot snapshot;
        snapshot.params = readback.copy(p.params[n]);
        snapshot.grads = readback.copy(p.grads[n]);
        if (p.with_before) snapshot.params_before = readback.copy(p.before[n]);
        if (p.logged) {
          add_parameter_scalars(tb, name, net, snapshot, p.step);
          std::vector<std::vector<float>> means, invstds;
          for (int slot : p.bn_mean[n]) means.push_back(readback.copy(slot));
          for (int slot : p.bn_invstd[n]) invstds.push_back(readback.copy(slot));
          add_batchnorm_scalars(tb, name, net, means, invstds, p.step);
        }
        if (p.histogram) add_parameter_histograms(tb, name, net, snapshot, p.step);
      }
      tb.flush();
    }
  };

  while (step_ < cfg_.steps) {
    // A step that will be logged keeps its parameters before the update (a device copy on CUDA, no
    // host wait) for the update-to-weight ratios; a step that ends on the time budget is not foreseen.
    const bool logs_next = (step_ + 1) % cfg_.log_every == 0 || step_ + 1 == cfg_.steps;
    if (logs_next) {
      m.paramsG_before.copy_from(G_->params());
      m.paramsD_before.copy_from(D_->params());
    }
    try {
      step();
    } catch (...) {
      // The previous step's line is not lost with this one (best effort: the device may be unusable).
      if (pending.step >= 0) try { finish_log(); } catch (...) {}
      throw;
    }
    // The budget is checked between steps, on the host clock (on CUDA the host may be a few queued
    // steps ahead of the device; the checkpoint below synchronises, so what it saves is complete).
    stopped_on_time_budget_ =
        cfg_.minutes > 0 && step_ < cfg_.steps &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >= cfg_.minutes * 60.0;
    const bool last = step_ == cfg_.steps || stopped_on_time_budget_;
    const bool swd_now = swd && (step_ % cfg_.swd_every == 0 || last);
    const bool logged = step_ % cfg_.log_every == 0 || last;
    const bool histogram_step = cfg_.histogram_every > 0 && (step_ % cfg_.histogram_every == 0 || last);
    const bool sample_now = cfg_.sample_every > 0 && (step_ % cfg_.sample_every == 0 || last);
    const bool checkpointed = cfg_.checkpoint_every > 0 && (step_ % cfg_.checkpoint_every == 0 || last);
    const bool stop_now = stop_requested && *stop_requested && !last;
    if (pending.step >= 0) finish_log();  // the previous step's, behind which this step is already queued
    if (logged || swd_now || histogram_step) enqueue_log(logged || swd_now, swd_now, logged, logs_next, histogram_step);
    if (pending.step >= 0 && (swd_now || sample_now || checkpointed || stop_now || last)) finish_log();
    if (sample_now) {
      char name[64];
      std::snprintf(name, sizeof name, "step_%07lld.png", static_cast<long long>(step_));
      const std::vector<float> samples = write_samples((dir / "samples" / name).string());
      const ModelConfig& mc = cfg_.model;
      const EncodedPng png = encode_png_grid(samples.data(), static_cast<int>(cfg_.n_samples), static_cast<int>(mc.channels),
                                             static_cast<int>(mc.height), static_cast<int>(mc.width), 8);
      tb.add_image("samples", std::string(png.bytes.begin(), png.bytes.end()), png.height, png.width, png.channels, step_);
      tb.flush();
      if (m.sample_hook.on_samples) m.sample_hook.on_samples(tb_shared, step_, samples);
    }
    if (checkpointed) write_checkpoint();
    if (stop_now) {  // asked to stop: keep this step, whatever checkpoint_every says
      if (!checkpointed) write_checkpoint();
      stats.step = step_;
      stats.stopped = true;
      break;
    }
    if (stopped_on_time_budget_) break;
  }
  if (pending.step >= 0) finish_log();  // not reached (the last step writes its own), kept for safety
  if (m.sample_hook.finish) m.sample_hook.finish();  // the last step's audio lands before run() returns
  tb.flush();
  return stats;
}

}  // namespace ds
