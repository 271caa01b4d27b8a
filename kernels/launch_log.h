// The launch log and the step scope: CPU-side evidence for the CUDA-graph-captured training step
// (engine/train/step_graph.h). A graph replays the launches it captured with the arguments they had at
// capture, so a step may be captured only if it enqueues the same launches with the same argument
// bytes every step and never reads the device from the host; these two tools check exactly that.
//
// LaunchLog: while a LaunchLogScope is active on a thread, every DS_LAUNCH on that thread (the nvcc one
// in kernels/kernel_common.h and the emulated one in kernels/emu/emu.h) appends the kernel's name,
// grid, block, dynamic shared bytes, stream and the bytes of each argument converted to the kernel's
// parameter type; library calls the step makes (cuDNN convolutions, device copies) append their own
// record. Two steps whose logs are equal are replayable by one graph; a host value baked into an
// argument (a step number, an Adam bias correction, a learning rate that moves) shows as a difference.
// Inactive (the usual case) it costs one thread-local load and a predictable branch per launch. With
// the nvcc DS_LAUNCH the argument expressions are evaluated a second time while a log is active, so
// they must be free of side effects (every DS_LAUNCH in kernels/ passes plain values).
//
// StepScope: while one is active on a thread, the calls that would be illegal or wrong inside a
// captured step (a host read of a tensor, a host-to-device copy from a host buffer, a stream or device
// synchronisation, a device allocation, growing the workspace) throw std::logic_error naming the call
// (require_outside_step). Checked on both devices, so the CPU tests that train exercise it too.
//
// Both are thread-local, as the trainer's capture is (cudaStreamCaptureModeThreadLocal).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>
#include <vector_types.h>

namespace ds::launch_log {

struct Record {
  std::string what;  // kernel name (as written in DS_LAUNCH) or library call
  unsigned grid[3] = {0, 0, 0}, block[3] = {0, 0, 0};
  size_t shared_bytes = 0;
  const void* stream = nullptr;
  std::vector<unsigned char> args;  // argument bytes, in order
  bool operator==(const Record& o) const {
    return what == o.what && std::memcmp(grid, o.grid, sizeof grid) == 0 &&
           std::memcmp(block, o.block, sizeof block) == 0 && shared_bytes == o.shared_bytes && stream == o.stream &&
           args == o.args;
  }
  bool operator!=(const Record& o) const { return !(*this == o); }
};

class LaunchLog {
 public:
  std::vector<Record> records;
  void clear() { records.clear(); }
  // Appends the bytes of one value (trivially copyable: a pointer, a number, a small struct).
  template <class T>
  static void append(std::vector<unsigned char>& bytes, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>, "launch log: arguments must be trivially copyable");
    const auto* p = reinterpret_cast<const unsigned char*>(&value);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  // A library call: its name, stream and argument values (pointers, sizes, scalars, handles).
  template <class... A>
  void call(const char* what, cudaStream_t stream, const A&... args) {
    Record r;
    r.what = what;
    r.stream = stream;
    (append(r.args, args), ...);
    records.push_back(std::move(r));
  }
};

// Where the first difference between two logs is, in words ("" when they are equal), for test messages.
inline std::string first_difference(const LaunchLog& a, const LaunchLog& b) {
  const size_t n = a.records.size() < b.records.size() ? a.records.size() : b.records.size();
  for (size_t i = 0; i < n; ++i)
    if (a.records[i] != b.records[i])
      return "record " + std::to_string(i) + ": " + a.records[i].what + " vs " + b.records[i].what +
             (a.records[i].what == b.records[i].what ? " (same call, different configuration or arguments)" : "");
  if (a.records.size() != b.records.size())
    return std::to_string(a.records.size()) + " records vs " + std::to_string(b.records.size());
  return "";
}

// The thread's active log (nullptr: none). Constant-initialised, so reading it is one TLS load.
inline thread_local LaunchLog* active_log = nullptr;
inline LaunchLog* active() { return active_log; }

// Activates `log` on this thread for the scope's lifetime (nesting restores the outer one).
class LaunchLogScope {
 public:
  explicit LaunchLogScope(LaunchLog& log) : previous_(active_log) { active_log = &log; }
  ~LaunchLogScope() { active_log = previous_; }
  LaunchLogScope(const LaunchLogScope&) = delete;
  LaunchLogScope& operator=(const LaunchLogScope&) = delete;

 private:
  LaunchLog* previous_;
};

// A kernel launch: each argument converted to the kernel's parameter type, as the launch copies it.
template <class... P, class... A>
void record_kernel(LaunchLog& log, const char* kernel_name, dim3 grid, dim3 block, size_t shared_bytes,
                   cudaStream_t stream, void (*)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "DS_LAUNCH: wrong number of kernel arguments");
  Record r;
  r.what = kernel_name;
  r.grid[0] = grid.x, r.grid[1] = grid.y, r.grid[2] = grid.z;
  r.block[0] = block.x, r.block[1] = block.y, r.block[2] = block.z;
  r.shared_bytes = shared_bytes;
  r.stream = stream;
  (LaunchLog::append(r.args, static_cast<std::decay_t<P>>(std::forward<A>(args))), ...);
  log.records.push_back(std::move(r));
}

// ---- the step scope --------------------------------------------------------------------------

inline thread_local int step_scope_depth = 0;

class StepScope {
 public:
  StepScope() { ++step_scope_depth; }
  ~StepScope() { --step_scope_depth; }
  StepScope(const StepScope&) = delete;
  StepScope& operator=(const StepScope&) = delete;
};

inline bool inside_step() { return step_scope_depth > 0; }

// Throws when called inside a step: `what` names the call ("Tensor::to_host", ...).
inline void require_outside_step(const char* what) {
  if (step_scope_depth > 0)
    throw std::logic_error(std::string(what) +
                           " inside a training step: a captured CUDA graph cannot replay a host read, a host "
                           "synchronisation or an allocation (kernels/launch_log.h, StepScope)");
}

}  // namespace ds::launch_log
