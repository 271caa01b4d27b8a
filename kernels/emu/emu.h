// kernels/emu: the CUDA execution model run on the CPU, so every kernel in kernels/ can be tested here.
//
// The model. DS_LAUNCH runs the whole grid before it returns. Blocks run one after another on the
// calling OS thread; every thread of a block is a fiber with its own stack (mmap'd, with a PROT_NONE
// guard region under it), and fibers switch only at barriers: __syncthreads() (a block barrier;
// threads that have exited count as arrived) and the warp operations (__shfl*_sync, __ballot_sync,
// __syncwarp: a barrier among the live threads of the warp named by the mask). A thread that
// reaches no barrier runs start to finish, so a block without barriers costs no switching at all
// (its threads run one after another on one fiber). The block's threads start, and resume after every
// barrier, in a shuffled order (seeded per launch, block and barrier phase), so a kernel that relies on
// thread order fails here. Shared memory (DS_SHARED, DS_DYNAMIC_SHARED) is one copy per block and is
// filled with 0xFF bytes (NaN as float, -1 as int) before the block first touches it, so reading
// shared memory no thread wrote is visible. Atomics are plain read-modify-writes (no fiber switches
// inside one). Launch configurations are checked as CUDA does (ds::CudaError naming the kernel).
// Failures stop the process with a message naming the kernel launch: a deadlock (no thread can run,
// e.g. __syncthreads reached by some threads while others wait in a warp operation), __syncthreads
// reached at different places by threads of one phase (divergent __syncthreads), a fiber stack
// overflow (caught by the guard region), and a segmentation fault inside a kernel.
//
// What it does not emulate: races between blocks or concurrent threads of one block (blocks never
// overlap and threads interleave only at barriers, so a missing __syncthreads between writes and
// reads of *different* phases is caught but a data race inside one phase mostly is not); the memory
// model, fences and caches (__threadfence is a no-op, __ldg a plain load); warp divergence and its
// timing (lanes are independent threads: a warp operation waits for every live lane in its mask);
// streams (every launch is synchronous), events, graphs, cooperative groups, CUB; the rounding of
// fast-math intrinsics (__expf, __fdividef, rsqrtf ... use the accurate libm functions); TF32 and
// FMA contraction decisions of nvcc; grids needing more than 48 KiB shared memory per block.
//
// Knobs: DS_EMU_STACK_KIB (fiber stack size, default 64 KiB) or ds::emu::set_fiber_stack_size;
// DS_EMU_SEED (seed of the thread order).
#pragma once
#include <cuda_runtime_api.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kernels/check.h"
#include "kernels/launch_log.h"

// The CUDA host headers give these GNU attribute (or empty) definitions; here they must be plain C++.
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// A raw __shared__ variable would be per thread here, silently wrong: kernels/ uses DS_SHARED.
#define __shared__ static_assert(false, "kernels/: use DS_SHARED or DS_DYNAMIC_SHARED, not __shared__");

namespace ds::emu {

constexpr int kWarpSize = 32;
constexpr std::size_t kMaxSharedBytes = 48 * 1024;  // per block, static + dynamic, without opt-in

struct Fiber;

enum class ThreadState : std::uint8_t { NotStarted, Running, WaitBlock, WaitWarp, Ready, Done };

// One thread of the current block.
struct ThreadRec {
  uint3 idx;
  int warp, lane;
  ThreadState state;
  Fiber* fiber;
  const char* wait_file;  // where it waits at __syncthreads (for messages)
  int wait_line;
};

// What a running kernel thread reads through threadIdx & co. Constant-initialised thread_local, so
// reading it is one thread-pointer-relative load.
struct Current {
  ThreadRec* thread;
  uint3 block_idx, block_dim, grid_dim;
  unsigned char* dynamic_shared;
  std::uint64_t block_serial;  // increases with every block run on this OS thread
};
inline thread_local Current current{};

struct LaunchConfig {
  const char* kernel;
  const char* file;
  int line;
  dim3 grid, block;
  std::size_t shared_bytes;
};

// Runs a whole launch: validates cfg (throws ds::CudaError), then calls invoke(args) once per thread.
void run(const LaunchConfig& cfg, void (*invoke)(const void* args), const void* args);

template <class... P, class... A>
void launch(const LaunchConfig& cfg, cudaStream_t stream /* recorded only: every emulated launch is synchronous */,
            void (*kernel)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "DS_LAUNCH: wrong number of kernel arguments");
  // Arguments are converted to the parameter types once, here, as a CUDA launch copies them.
  struct Bound {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> params;
  };
  const Bound bound{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  if (::ds::launch_log::LaunchLog* log = ::ds::launch_log::active())  // kernels/launch_log.h
    std::apply([&](const auto&... p) { ::ds::launch_log::record_kernel(*log, cfg.kernel, cfg.grid, cfg.block,
                                                                       cfg.shared_bytes, stream, kernel, p...); },
               bound.params);
  run(cfg, [](const void* b) {
        const Bound& x = *static_cast<const Bound*>(b);
        std::apply(x.kernel, x.params);  // each thread gets its own copies of the parameters
      }, &bound);
}

// Fiber stacks: the size used for fibers created from now on (rounded up to pages, at least 16 KiB).
void set_fiber_stack_size(std::size_t bytes);
std::size_t fiber_stack_size();

// ---- barriers and warp exchange (emu.cpp) ----
void syncthreads(const char* file, int line);
void warp_barrier(unsigned mask);
// Warp exchange: write this lane's value, wait for the lanes of the mask, read any lane's value
// from the returned 32 slots (slot_bytes apart; lanes that did not take part read 0xFF bytes), then
// warp_exchange_end before the slots are reused.
constexpr std::size_t kSlotBytes = 8;
const unsigned char* warp_exchange_begin(unsigned mask, const void* value, std::size_t bytes);
void warp_exchange_end(unsigned mask);
unsigned ballot(unsigned mask, bool predicate);
unsigned live_lanes();

// Claims a DS_SHARED array for the current block: the first thread of a block to reach it poisons it.
void claim_static_shared(void* storage, std::size_t bytes, const char* name);
template <class T, std::size_t N>
inline T (&shared_array(T (&storage)[N], std::uint64_t& claimed_in_block, const char* name))[N] {
  if (claimed_in_block != current.block_serial) {
    claimed_in_block = current.block_serial;
    claim_static_shared(static_cast<void*>(storage), sizeof(storage), name);
  }
  return storage;
}

enum class ShuffleMode { Idx, Up, Down, Xor };
// Source lane of a shuffle, as PTX shfl.sync computes it (PTX ISA, shfl.sync "Semantics"), with the
// c operand CUDA's sm_30_intrinsics.hpp passes: ((32-width)<<8) | 0x1f, and (32-width)<<8 for up.
// A lane whose source leaves its width-segment (later segments for xor) gets its own value.
int shuffle_source_lane(ShuffleMode mode, int lane, unsigned b, int width);

template <class T>
inline T shuffle(unsigned mask, T var, ShuffleMode mode, unsigned b, int width) {
  static_assert(std::is_arithmetic_v<T> && sizeof(T) <= kSlotBytes, "warp shuffles take arithmetic types");
  const unsigned char* slots = warp_exchange_begin(mask, &var, sizeof(T));
  T out;
  std::memcpy(&out, slots + kSlotBytes * shuffle_source_lane(mode, current.thread->lane, b, width), sizeof(T));
  warp_exchange_end(mask);
  return out;
}

inline uint3 thread_idx() { return current.thread->idx; }
inline uint3 block_idx() { return current.block_idx; }
inline dim3 block_dim() { return dim3(current.block_dim); }
inline dim3 grid_dim() { return dim3(current.grid_dim); }

}  // namespace ds::emu

// ---- what kernel code sees --------------------------------------------------------------------
// Values, not references: `threadIdx.x = 0` does not compile, as in CUDA.
#define threadIdx (::ds::emu::thread_idx())
#define blockIdx (::ds::emu::block_idx())
#define blockDim (::ds::emu::block_dim())
#define gridDim (::ds::emu::grid_dim())
constexpr int warpSize = ::ds::emu::kWarpSize;

#define __syncthreads() ::ds::emu::syncthreads(__FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::ds::emu::warp_barrier(mask); }
inline void __threadfence() {}
inline void __threadfence_block() {}
inline unsigned __activemask() { return ::ds::emu::live_lanes(); }

template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  return ::ds::emu::shuffle(mask, var, ::ds::emu::ShuffleMode::Idx, static_cast<unsigned>(src_lane), width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::ds::emu::shuffle(mask, var, ::ds::emu::ShuffleMode::Up, delta, width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::ds::emu::shuffle(mask, var, ::ds::emu::ShuffleMode::Down, delta, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  return ::ds::emu::shuffle(mask, var, ::ds::emu::ShuffleMode::Xor, static_cast<unsigned>(lane_mask), width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) { return ::ds::emu::ballot(mask, predicate != 0); }
inline int __any_sync(unsigned mask, int predicate) { return ::ds::emu::ballot(mask, predicate != 0) != 0; }
inline int __all_sync(unsigned mask, int predicate) {
  return ::ds::emu::ballot(mask, predicate != 0) == (mask & ::ds::emu::live_lanes());
}

// Shared memory. DS_SHARED behaves as `T name[count]` shared by the block (function-local storage,
// thread_local so that launches on different OS threads do not share it).
#define DS_SHARED(T, name, count)                                  \
  static thread_local T name##_ds_shared_storage_[count];         \
  static thread_local ::std::uint64_t name##_ds_shared_block_ = 0; \
  T(&name)[count] = ::ds::emu::shared_array(name##_ds_shared_storage_, name##_ds_shared_block_, #name)
#define DS_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::ds::emu::current.dynamic_shared)

#define DS_LAUNCH(kernel, grid, block, shared_bytes, stream, ...)                                            \
  ::ds::emu::launch(::ds::emu::LaunchConfig{#kernel, __FILE__, __LINE__, dim3(grid), dim3(block),            \
                                            static_cast<::std::size_t>(shared_bytes)},                        \
                    (stream), kernel, ##__VA_ARGS__)

// ---- atomics: fibers never switch inside one, so a plain read-modify-write is atomic here --------
template <class T>
inline T ds_emu_atomic_add(T* address, T value) {
  T old = *address;
  *address = old + value;
  return old;
}
inline float atomicAdd(float* a, float v) { return ds_emu_atomic_add(a, v); }
inline double atomicAdd(double* a, double v) { return ds_emu_atomic_add(a, v); }
inline int atomicAdd(int* a, int v) { return ds_emu_atomic_add(a, v); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return ds_emu_atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return ds_emu_atomic_add(a, v); }
inline int atomicSub(int* a, int v) { return ds_emu_atomic_add(a, -v); }
inline unsigned atomicSub(unsigned* a, unsigned v) { return ds_emu_atomic_add(a, 0u - v); }
#define DS_EMU_ATOMIC_MINMAX(T)                                    \
  inline T atomicMax(T* a, T v) { T old = *a; if (v > old) *a = v; return old; } \
  inline T atomicMin(T* a, T v) { T old = *a; if (v < old) *a = v; return old; }
DS_EMU_ATOMIC_MINMAX(int)
DS_EMU_ATOMIC_MINMAX(unsigned)
DS_EMU_ATOMIC_MINMAX(long long)
DS_EMU_ATOMIC_MINMAX(unsigned long long)
#undef DS_EMU_ATOMIC_MINMAX
#define DS_EMU_ATOMIC_BITS(T)                                                       \
  inline T atomicCAS(T* a, T compare, T v) { T old = *a; if (old == compare) *a = v; return old; } \
  inline T atomicExch(T* a, T v) { T old = *a; *a = v; return old; }                \
  inline T atomicAnd(T* a, T v) { T old = *a; *a = old & v; return old; }           \
  inline T atomicOr(T* a, T v) { T old = *a; *a = old | v; return old; }            \
  inline T atomicXor(T* a, T v) { T old = *a; *a = old ^ v; return old; }
DS_EMU_ATOMIC_BITS(int)
DS_EMU_ATOMIC_BITS(unsigned)
DS_EMU_ATOMIC_BITS(unsigned long long)
#undef DS_EMU_ATOMIC_BITS
inline float atomicExch(float* a, float v) { float old = *a; *a = v; return old; }

// ---- device math ------------------------------------------------------------------------------
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline double __dadd_rn(double x, double y) { return x + y; }
inline double __dsub_rn(double x, double y) { return x - y; }
inline double __dmul_rn(double x, double y) { return x * y; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, sizeof i); return i; }
inline unsigned __float_as_uint(float x) { unsigned i; std::memcpy(&i, &x, sizeof i); return i; }
inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, sizeof x); return x; }
inline float __uint_as_float(unsigned i) { float x; std::memcpy(&x, &i, sizeof x); return x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <class T>
inline T __ldg(const T* p) { return *p; }
// glibc's <math.h> declares these (as aliases it does not export), so they are defined with C linkage.
extern "C" {
inline float __expf(float x) noexcept { return expf(x); }
inline float __exp10f(float x) noexcept { return exp10f(x); }
inline float __logf(float x) noexcept { return logf(x); }
inline float __log2f(float x) noexcept { return log2f(x); }
inline float __log10f(float x) noexcept { return log10f(x); }
inline float __powf(float x, float y) noexcept { return powf(x, y); }
inline float __sinf(float x) noexcept { return sinf(x); }
inline float __cosf(float x) noexcept { return cosf(x); }
inline float __tanf(float x) noexcept { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) noexcept { sincosf(x, s, c); }
}
#define DS_EMU_MINMAX(T, MIN, MAX)                 \
  inline T min(T a, T b) { return MIN; }           \
  inline T max(T a, T b) { return MAX; }
DS_EMU_MINMAX(int, b < a ? b : a, a < b ? b : a)
DS_EMU_MINMAX(unsigned, b < a ? b : a, a < b ? b : a)
DS_EMU_MINMAX(long, b < a ? b : a, a < b ? b : a)
DS_EMU_MINMAX(unsigned long, b < a ? b : a, a < b ? b : a)
DS_EMU_MINMAX(long long, b < a ? b : a, a < b ? b : a)
DS_EMU_MINMAX(unsigned long long, b < a ? b : a, a < b ? b : a)
DS_EMU_MINMAX(float, fminf(a, b), fmaxf(a, b))
DS_EMU_MINMAX(double, fmin(a, b), fmax(a, b))
#undef DS_EMU_MINMAX
