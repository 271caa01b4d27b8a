// DS_PARALLEL_FOR_IF(condition): an OpenMP static `parallel for` over the next loop when the condition
// holds, and nothing where OpenMP is off (the kernels' emulated build and nvcc include the same
// reference headers without -fopenmp). Used only on loops whose iterations are independent, so results
// never depend on the thread count.
#pragma once
#include <cstdint>

#define DS_PRAGMA(x) _Pragma(#x)
#if defined(_OPENMP)
#define DS_PARALLEL_FOR_IF(condition) DS_PRAGMA(omp parallel for schedule(static) if (condition))
#else
#define DS_PARALLEL_FOR_IF(condition)
#endif

namespace ds::cpu {
// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelElements = int64_t(1) << 15;
}  // namespace ds::cpu
