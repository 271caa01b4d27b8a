// RAII device memory: a typed buffer that owns a cudaMalloc'd allocation, plus host<->device copies.
// Allocation happens when a model is built, never inside a training step.
#pragma once
#include <cstddef>
#include <utility>
#include <vector>

#include "engine/core/allocation_stats.h"
#include "engine/core/cuda_context.h"
#include "kernels/check.h"
#include "kernels/launch_log.h"

namespace ds {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) : count_(count) {
    launch_log::require_outside_step("DeviceBuffer (cudaMalloc)");
    if (count_ > 0) {
      DS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), count_ * sizeof(T)));
      note_allocation(Device::CUDA, count_ * sizeof(T));
    }
  }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }

  T* get() const { return ptr_; }
  size_t size() const { return count_; }

  // Copies go through the context's stream (non-blocking, so not ordered with the legacy default
  // stream a plain cudaMemcpy uses) and wait, so kernels enqueued afterwards see the data and the
  // host buffer may be reused at once.
  void upload(const T* host, size_t count) {
    launch_log::require_outside_step("DeviceBuffer::upload");
    CudaContext& ctx = CudaContext::get();
    DS_CUDA_CHECK(cudaMemcpyAsync(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice, ctx.stream()));
    ctx.synchronize();
  }
  void upload(const std::vector<T>& host) { upload(host.data(), host.size()); }
  void download(T* host, size_t count) const {
    launch_log::require_outside_step("DeviceBuffer::download");
    CudaContext& ctx = CudaContext::get();
    DS_CUDA_CHECK(cudaMemcpyAsync(host, ptr_, count * sizeof(T), cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    download(host.data(), count_);
    return host;
  }

  static DeviceBuffer from_host(const std::vector<T>& host) {
    DeviceBuffer b(host.size());
    b.upload(host);
    return b;
  }

 private:
  void release() noexcept {  // never throws: called from the destructor
    if (!ptr_) return;
    cudaFree(ptr_);
    note_release(Device::CUDA, count_ * sizeof(T));
    ptr_ = nullptr;
  }
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

}  // namespace ds
