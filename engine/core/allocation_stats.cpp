// The per-device byte counters of allocation_stats.h (a mutex: data loaders allocate on their threads).
#include "engine/core/allocation_stats.h"

#include <algorithm>
#include <mutex>

namespace ds {
namespace {
// Never destroyed: a static Tensor or DeviceBuffer may be released during static destruction.
std::mutex& g_mutex = *new std::mutex;
AllocationStats* const g_stats = new AllocationStats[2];
AllocationStats& slot(Device d) { return g_stats[d == Device::CUDA ? 1 : 0]; }
}  // namespace

void note_allocation(Device device, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  AllocationStats& s = slot(device);
  s.live += int64_t(bytes);
  s.requested += int64_t(bytes);
  s.peak = std::max(s.peak, s.live);
}

void note_release(Device device, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  slot(device).live -= int64_t(bytes);
}

AllocationStats allocation_stats(Device device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  return slot(device);
}

void reset_allocation_peak(Device device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  slot(device).peak = slot(device).live;
}

}  // namespace ds
