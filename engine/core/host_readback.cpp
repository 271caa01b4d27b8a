// HostReadback (see host_readback.h). The CUDA calls: cudaHostAlloc (page-locked memory, which is what
// makes cudaMemcpyAsync device-to-host asynchronous: the runtime API's "API synchronization behavior"
// page, docs.nvidia.com/cuda/cuda-runtime-api/api-sync-behavior.html, lists under Asynchronous only the
// pageable exception, "For transfers from device memory to pageable host memory, the function will
// return only once the copy has completed"), cudaMemcpyAsync on the context's stream, and one event
// recorded after a group of copies and waited on with cudaEventSynchronize.
#include "engine/core/host_readback.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include <cuda_runtime_api.h>

#include "engine/core/cuda_context.h"
#include "kernels/launch_log.h"

namespace ds {

HostReadback::HostReadback(Device device) : device_(device) {}

HostReadback::~HostReadback() {
  // Never throws: a pending copy is waited for (its destination is about to be freed).
  if (device_ == Device::CUDA && event_) {
    if (pending_) cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
    cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
  for (Slot& s : slots_) release(s);
}

void HostReadback::release(Slot& s) {
  if (!s.host) return;
  if (device_ == Device::CUDA)
    cudaFreeHost(s.host);
  else
    delete[] s.host;
  s.host = nullptr;
  s.capacity = 0;
}

void HostReadback::enqueue(int slot, const Tensor& src) {
  launch_log::require_outside_step("HostReadback::enqueue");
  if (slot < 0) throw std::invalid_argument("HostReadback::enqueue: negative slot");
  if (src.device() != device_) throw std::invalid_argument("HostReadback::enqueue: tensor on the other device");
  if (static_cast<size_t>(slot) >= slots_.size()) slots_.resize(static_cast<size_t>(slot) + 1);
  Slot& s = slots_[static_cast<size_t>(slot)];
  const int64_t n = src.numel();
  if (n > s.capacity) {
    if (pending_) wait();  // the old buffer may still be a copy's destination
    release(s);
    if (device_ == Device::CUDA) {
      void* p = nullptr;
      DS_CUDA_CHECK(cudaHostAlloc(&p, static_cast<size_t>(n) * sizeof(float), cudaHostAllocDefault));
      s.host = static_cast<float*>(p);
    } else {
      s.host = new float[static_cast<size_t>(n)];
    }
    s.capacity = n;
  }
  s.count = n;
  if (n == 0) return;
  if (device_ == Device::CPU) {
    std::memcpy(s.host, src.data(), static_cast<size_t>(n) * sizeof(float));
    landed_ = std::chrono::steady_clock::now();
    return;
  }
  DS_CUDA_CHECK(cudaMemcpyAsync(s.host, src.data(), static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToHost,
                                CudaContext::get().stream()));
}

void HostReadback::record() {
  if (device_ == Device::CPU) return;
  if (!event_) {
    cudaEvent_t e = nullptr;
    // No timing: cudaEventDisableTiming events are the cheap kind for synchronisation (runtime API,
    // cudaEventCreateWithFlags).
    DS_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    event_ = e;
  }
  DS_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), CudaContext::get().stream()));
  pending_ = true;
}

void HostReadback::wait() {
  if (device_ == Device::CPU || !pending_) return;
  launch_log::require_outside_step("HostReadback::wait (cudaEventSynchronize)");
  DS_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
  pending_ = false;
  landed_ = std::chrono::steady_clock::now();
}

const float* HostReadback::data(int slot) const {
  if (slot < 0 || static_cast<size_t>(slot) >= slots_.size())
    throw std::out_of_range("HostReadback: slot " + std::to_string(slot) + " was never filled");
  return slots_[static_cast<size_t>(slot)].host;
}

int64_t HostReadback::count(int slot) const {
  if (slot < 0 || static_cast<size_t>(slot) >= slots_.size()) return 0;
  return slots_[static_cast<size_t>(slot)].count;
}

std::vector<float> HostReadback::copy(int slot) const {
  const float* p = data(slot);
  return std::vector<float>(p, p + count(slot));
}

}  // namespace ds
