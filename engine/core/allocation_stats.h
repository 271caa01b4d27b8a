// Bytes the engine's own allocations hold, per device: every Tensor storage (host and device), every
// DeviceBuffer and the CUDA context's workspace, counted where they are made and released. It is what
// the engine asked for, not what the allocator or the libraries took (cuDNN's and cuBLAS's handles, the
// CUDA context itself and cudaMalloc's rounding are not in it); the bench prints it beside
// cudaMemGetInfo's figure, and tests compare the builds of a network with it (tests/test_unit_network_memory.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/core/tensor.h"

namespace ds {

struct AllocationStats {
  int64_t live = 0;       // bytes held now
  int64_t peak = 0;       // the most held at once since the last reset_allocation_peak
  int64_t requested = 0;  // bytes asked for since the process started (releases not subtracted)
};

void note_allocation(Device device, size_t bytes);
void note_release(Device device, size_t bytes);
AllocationStats allocation_stats(Device device);
void reset_allocation_peak(Device device);  // peak := live

}  // namespace ds
