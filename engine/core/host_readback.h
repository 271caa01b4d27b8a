// Host copies of device tensors taken without waiting for them: the trainer logs step k while the GPU
// runs step k+1. enqueue() puts a device-to-host copy into pinned host memory on the context's stream
// (CUDA; stream-ordered after the work already enqueued, before the work enqueued later) or copies at
// once (CPU); wait() returns when every copy enqueued since the last wait has landed, and landed() says
// when that was on the host clock (CPU: when the copy was made, CUDA: when wait() saw it done), so a
// throughput figure taken then counts only the steps the copies follow.
// Slots are allocated on first use (outside a training step: cudaHostAlloc) and reused after.
#pragma once
#include <chrono>
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace ds {

class HostReadback {
 public:
  explicit HostReadback(Device device);
  ~HostReadback();
  HostReadback(const HostReadback&) = delete;
  HostReadback& operator=(const HostReadback&) = delete;

  // Copies `src` (on this readback's device) into slot `slot` without waiting. The slot's previous
  // contents must have been read: call wait() and read before enqueueing into it again.
  void enqueue(int slot, const Tensor& src);
  // Marks the end of a group of enqueues (CUDA: records an event after them on the stream).
  void record();
  // Blocks until everything enqueued before the last record() has landed.
  void wait();
  std::chrono::steady_clock::time_point landed() const { return landed_; }
  // Slot contents (valid after wait()), `count` floats as enqueued.
  const float* data(int slot) const;
  int64_t count(int slot) const;
  std::vector<float> copy(int slot) const;

 private:
  struct Slot {
    float* host = nullptr;  // pinned on CUDA, new[] on the CPU
    int64_t capacity = 0, count = 0;
  };
  Device device_;
  std::vector<Slot> slots_;
  void* event_ = nullptr;  // cudaEvent_t, created on first record()
  bool pending_ = false;
  std::chrono::steady_clock::time_point landed_{};
  void release(Slot& s);
};

}  // namespace ds
