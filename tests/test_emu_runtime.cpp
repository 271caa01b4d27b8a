// Tests of kernels/emu itself: coordinates, barriers and thread order, shared memory and its poison,
// warp shuffles and ballots, atomics, launch checks, and the failures it must stop on (stack overflow,
// deadlock, divergent __syncthreads), the last ones in forked children.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/kernel_common.h"
#include "kernels/fill.h"

namespace emu_runtime_test {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ unsigned linear_thread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
__device__ unsigned threads_per_block() { return blockDim.x * blockDim.y * blockDim.z; }
__device__ unsigned linear_block() { return blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z); }

// out[6 * global thread + k]: the thread's own coordinates, so every (block, thread) pair shows up once.
__global__ void coordinates_kernel(unsigned* out) {
  unsigned* o = out + 6 * (linear_block() * threads_per_block() + linear_thread());
  o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
  o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
}

// Every thread writes its slot, then after the barrier reads every slot of the block.
__global__ void all_see_all_kernel(int* ok) {
  DS_SHARED(int, slot, 1024);
  const unsigned t = linear_thread(), n = threads_per_block();
  slot[t] = static_cast<int>(t * 3 + linear_block());
  __syncthreads();
  int good = 1;
  for (unsigned k = 0; k < n; ++k) good &= slot[k] == static_cast<int>(k * 3 + linear_block());
  ok[linear_block() * n + t] = good;
}

// Hillis-Steele inclusive scan in place: wrong unless both barriers of every step hold.
__global__ void block_scan_kernel(int* out, const int* in, int n) {
  DS_SHARED(int, buf, 1024);
  const unsigned t = linear_thread(), threads = threads_per_block();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * threads + t;
  buf[t] = i < n ? in[i] : 0;
  __syncthreads();
  for (unsigned offset = 1; offset < threads; offset *= 2) {
    const int add = t >= offset ? buf[t - offset] : 0;
    __syncthreads();
    buf[t] += add;
    __syncthreads();
  }
  if (i < n) out[i] = buf[t];
}

// order[phase][block][k] = the k-th thread of the block to run in that phase.
__global__ void order_kernel(int* order, int* counters) {
  const unsigned n = threads_per_block(), b = blockIdx.x;
  for (int phase = 0; phase < 2; ++phase) {
    int* counter = &counters[phase * gridDim.x + b];
    order[(phase * gridDim.x + b) * n + atomicAdd(counter, 1)] = static_cast<int>(threadIdx.x);
    __syncthreads();
  }
}

// A bug the emulator must expose: thread 0 writes, the others read without a barrier.
__global__ void order_dependent_kernel(int* seen) {
  DS_SHARED(int, value, 1);
  if (threadIdx.x == 0) value[0] = 42;
  seen[blockIdx.x * blockDim.x + threadIdx.x] = value[0];
}

// Tree reduction for any block size (not only powers of two).
__global__ void block_sum_kernel(float* partial, const float* x, int n) {
  DS_SHARED(float, s, 1024);
  const unsigned t = threadIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + t;
  s[t] = i < n ? x[i] : 0.0f;
  __syncthreads();
  unsigned pow2 = 1;
  while (pow2 < blockDim.x) pow2 *= 2;
  for (unsigned half = pow2 / 2; half > 0; half /= 2) {
    if (t < half && t + half < blockDim.x) s[t] += s[t + half];
    __syncthreads();
  }
  if (t == 0) partial[blockIdx.x] = s[0];
}

// Per-warp sums with __shfl_down_sync (lane 0 holds the sum), then per block in shared memory.
template <class T>
__global__ void shfl_down_block_sum_kernel(T* block_sums, const T* x, int n) {
  DS_SHARED(T, warp_sums, 32);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  T v = i < n ? x[i] : T(0);
  for (unsigned offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(kFullMask, v, offset);
  if (threadIdx.x % warpSize == 0) warp_sums[threadIdx.x / warpSize] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    T sum = 0;
    for (unsigned w = 0; w < blockDim.x / warpSize; ++w) sum += warp_sums[w];
    block_sums[blockIdx.x] = sum;
  }
}

// Butterfly with __shfl_xor_sync: every lane ends with its warp's sum.
template <class T>
__global__ void shfl_xor_warp_sum_kernel(T* lane_sums, const T* x, int n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  T v = i < n ? x[i] : T(0);
  for (int mask = warpSize / 2; mask > 0; mask /= 2) v += __shfl_xor_sync(kFullMask, v, mask);
  lane_sums[i] = v;
}

// One block of 64 threads; out[k * 64 + thread] for the k-th operation.
__global__ void shuffle_width_kernel(int* out) {
  const unsigned t = threadIdx.x;
  const int lane = static_cast<int>(t % warpSize);
  out[0 * 64 + t] = __shfl_sync(kFullMask, lane * 10, 3, 8);
  out[1 * 64 + t] = __shfl_sync(kFullMask, lane * 10, 35);
  out[2 * 64 + t] = __shfl_up_sync(kFullMask, lane, 2, 16);
  out[3 * 64 + t] = __shfl_down_sync(kFullMask, lane, 3, 8);
  out[4 * 64 + t] = __shfl_xor_sync(kFullMask, lane, 8, 8);
  out[5 * 64 + t] = __shfl_down_sync(kFullMask, lane, 5);
  out[6 * 64 + t] = static_cast<int>(__ballot_sync(kFullMask, lane % 3 == 0));
}

// A block of 40 threads: its second warp has 8 lanes.
__global__ void partial_warp_ballot_kernel(unsigned* out) {
  out[threadIdx.x] = __ballot_sync(kFullMask, threadIdx.x % 2 == 0);
}

__global__ void atomics_kernel(int* counter, float* float_sum, double* double_sum, unsigned long long* index_sum,
                               int* int_max, int* int_min, unsigned* unsigned_max, unsigned* cas_max, int* histogram) {
  DS_SHARED(int, local_histogram, 16);
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (threadIdx.x < 16) local_histogram[threadIdx.x] = 0;
  __syncthreads();
  atomicAdd(counter, 1);
  atomicAdd(float_sum, 1.0f);
  atomicAdd(double_sum, 0.5);
  atomicAdd(index_sum, static_cast<unsigned long long>(i));
  atomicMax(int_max, (i * 7919) % 100003 - 50000);
  atomicMin(int_min, (i * 7919) % 100003 - 50000);
  atomicMax(unsigned_max, static_cast<unsigned>(i) * 3u);
  unsigned old = *cas_max, assumed;
  do {
    assumed = old;
    old = atomicCAS(cas_max, assumed, max(assumed, static_cast<unsigned>(i)));
  } while (assumed != old);
  atomicAdd(&local_histogram[i % 16], 1);
  __syncthreads();
  if (threadIdx.x < 16) atomicAdd(&histogram[threadIdx.x], local_histogram[threadIdx.x]);
}

// Reverses each block's slice through dynamic shared memory.
__global__ void reverse_in_block_kernel(double* out, const double* x) {
  DS_DYNAMIC_SHARED(double, buf);
  const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  buf[t] = x[i];
  __syncthreads();
  out[i] = buf[blockDim.x - 1 - t];
}

// Reads shared memory before any thread wrote it, in every block, then writes it.
__global__ void read_unwritten_shared_kernel(float* static_seen, unsigned* dynamic_seen) {
  DS_SHARED(float, never_written_yet, 64);
  DS_DYNAMIC_SHARED(unsigned, dyn);
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  static_seen[i] = never_written_yet[threadIdx.x];
  dynamic_seen[i] = dyn[threadIdx.x];
  __syncthreads();
  never_written_yet[threadIdx.x] = 1.0f;  // the next block must not see this
  dyn[threadIdx.x] = 1u;
}

__global__ void store_kernel(int* out, int value) { out[blockIdx.x * blockDim.x + threadIdx.x] = value; }

// 40000 bytes of static shared memory.
__global__ void big_static_shared_kernel(float* out) {
  DS_SHARED(float, big, 10000);
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}

__device__ int recurse(int depth) {
  volatile char pad[512];
  pad[depth % 512] = static_cast<char>(depth);
  if (depth == 0) return pad[0];
  return recurse(depth - 1) + pad[depth % 512];
}
__global__ void deep_recursion_kernel(int* out, int depth) {
  if (threadIdx.x == 3 && blockIdx.x == 1) out[0] = recurse(depth);
}

// __syncthreads for half the warp while the other half waits in a shuffle: neither can finish.
__global__ void barrier_vs_shuffle_kernel(float* out) {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    out[threadIdx.x] = __shfl_down_sync(kFullMask, 1.0f, 1);
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x % 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

struct ChildResult {
  bool signaled = false;
  int signal = 0;
  int exit_code = -1;
  std::string stderr_text;
};

// Runs body in a forked child with its stderr captured; the child's crash cannot take the suite down.
template <class F>
ChildResult run_in_child(F body) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    std::signal(SIGABRT, SIG_DFL);  // no test-framework crash report from the child
    std::signal(SIGSEGV, SIG_DFL);
    try {
      body();
    } catch (...) {
      _exit(3);
    }
    _exit(0);
  }
  close(fds[1]);
  ChildResult r;
  char buf[4096];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) r.stderr_text.append(buf, static_cast<size_t>(got));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.signaled = WIFSIGNALED(status);
  if (r.signaled) r.signal = WTERMSIG(status);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

// Integers in [-8, 8] as T: every sum below is exact in float, so results compare exactly.
template <class T>
std::vector<T> small_integers(size_t n, unsigned seed) {
  std::vector<T> v(n);
  uint32_t s = seed;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<T>(static_cast<int>((s >> 16) % 17) - 8);
  }
  return v;
}

template <class T>
void check_shuffle_sums(int n, int threads) {
  std::vector<T> x = small_integers<T>(static_cast<size_t>(n), 17);
  if constexpr (std::is_unsigned_v<T>)
    for (auto& v : x) v += 8;  // keep unsigned values non-negative
  const unsigned blocks = ds::blocks_for(n, threads);
  std::vector<T> block_sums(blocks, T(7)), lane_sums(static_cast<size_t>(blocks) * threads);
  DS_LAUNCH(shfl_down_block_sum_kernel<T>, blocks, threads, 0, 0, block_sums.data(), x.data(), n);
  DS_LAUNCH(shfl_xor_warp_sum_kernel<T>, blocks, threads, 0, 0, lane_sums.data(), x.data(), n);
  for (unsigned b = 0; b < blocks; ++b) {
    T expected = 0;
    for (int k = 0; k < threads; ++k) {
      const int64_t i = static_cast<int64_t>(b) * threads + k;
      if (i < n) expected += x[i];
    }
    CHECK(block_sums[b] == expected);
  }
  int wrong_lanes = 0;
  for (size_t w = 0; w < lane_sums.size() / 32; ++w) {
    T expected = 0;
    for (size_t k = w * 32; k < w * 32 + 32; ++k)
      if (k < static_cast<size_t>(n)) expected += x[k];
    for (size_t k = w * 32; k < w * 32 + 32; ++k) wrong_lanes += lane_sums[k] != expected;
  }
  CHECK(wrong_lanes == 0);
}

}  // namespace emu_runtime_test

using namespace emu_runtime_test;

TEST_CASE("emu runtime threadIdx, blockIdx, blockDim and gridDim cover a 3-D launch once each") {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const unsigned total = 3 * 2 * 2 * 4 * 3 * 2;
  std::vector<unsigned> out(6 * total, 0xdeadbeefu);
  DS_LAUNCH(coordinates_kernel, grid, block, 0, 0, out.data());
  int wrong = 0;
  for (unsigned bz = 0, k = 0; bz < 2; ++bz)
    for (unsigned by = 0; by < 2; ++by)
      for (unsigned bx = 0; bx < 3; ++bx)
        for (unsigned tz = 0; tz < 2; ++tz)
          for (unsigned ty = 0; ty < 3; ++ty)
            for (unsigned tx = 0; tx < 4; ++tx, ++k) {
              const unsigned* o = &out[6 * k];
              wrong += o[0] != tx || o[1] != ty || o[2] != tz || o[3] != bx || o[4] != by || o[5] != bz;
            }
  CHECK(wrong == 0);
}

TEST_CASE("emu runtime __syncthreads makes every write before it visible to every thread after it") {
  const dim3 block(7, 5, 3);  // 105 threads: a partial last warp
  std::vector<int> ok(4 * 105, -1);
  DS_LAUNCH(all_see_all_kernel, 4, block, 0, 0, ok.data());
  CHECK(std::count(ok.begin(), ok.end(), 1) == static_cast<long>(ok.size()));

  const int n = 1000;  // 10 blocks of 105, the last one partial
  std::vector<int> in(n), out(n, -7);
  for (int i = 0; i < n; ++i) in[i] = (i * 37) % 11 - 5;
  DS_LAUNCH(block_scan_kernel, ds::blocks_for(n, 105), block, 0, 0, out.data(), in.data(), n);
  int wrong = 0;
  for (int b = 0; b * 105 < n; ++b) {
    int running = 0;
    for (int k = 0; k < 105 && b * 105 + k < n; ++k) {
      running += in[b * 105 + k];
      wrong += out[b * 105 + k] != running;
    }
  }
  CHECK(wrong == 0);
}

TEST_CASE("emu runtime runs threads in a shuffled order that changes per block and per barrier phase") {
  const int threads = 96, blocks = 3;
  std::vector<int> order(2 * blocks * threads, -1), counters(2 * blocks, 0);
  DS_LAUNCH(order_kernel, blocks, threads, 0, 0, order.data(), counters.data());
  std::vector<int> identity(threads);
  std::iota(identity.begin(), identity.end(), 0);
  std::vector<std::vector<int>> runs;
  for (int r = 0; r < 2 * blocks; ++r) {
    std::vector<int> run(order.begin() + r * threads, order.begin() + (r + 1) * threads);
    std::vector<int> sorted = run;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == identity);  // every thread ran exactly once per phase
    CHECK(run != identity);
    runs.push_back(run);
  }
  CHECK(runs[0] != runs[blocks]);  // block 0: phase 0 vs phase 1
  CHECK(runs[0] != runs[1]);       // phase 0: block 0 vs block 1

  // Hence a kernel that reads before the writer ran is caught: some threads see the poison (-1).
  std::vector<int> seen(4 * 256, 0);
  DS_LAUNCH(order_dependent_kernel, 4, 256, 0, 0, seen.data());
  const long poisoned = std::count(seen.begin(), seen.end(), -1), written = std::count(seen.begin(), seen.end(), 42);
  CHECK(poisoned > 0);
  CHECK(poisoned + written == static_cast<long>(seen.size()));
}

TEST_CASE("emu runtime shared-memory tree reduction matches a serial sum for odd sizes") {
  const int n = 100003;
  const std::vector<float> x = small_integers<float>(n, 5);
  double serial = 0;
  for (float v : x) serial += v;
  for (int threads : {100, 255, 256, 1024}) {
    CAPTURE(threads);
    const unsigned blocks = ds::blocks_for(n, threads);
    std::vector<float> partial(blocks, std::nanf(""));
    DS_LAUNCH(block_sum_kernel, blocks, threads, 0, 0, partial.data(), x.data(), n);
    double total = 0;
    for (float p : partial) total += p;
    CHECK(total == serial);  // integer values: every partial sum is exact in float
    double first_block = 0;
    for (int k = 0; k < threads; ++k) first_block += x[k];
    CHECK(partial[0] == first_block);
  }
}

TEST_CASE("emu runtime warp shuffle reductions (__shfl_down_sync, __shfl_xor_sync) match a serial sum") {
  check_shuffle_sums<float>(100003, 256);
  check_shuffle_sums<double>(5001, 96);
  check_shuffle_sums<int>(4099, 128);
  check_shuffle_sums<unsigned>(777, 64);
}

TEST_CASE("emu runtime shuffles honour width and out-of-range lanes as CUDA does, and ballots count live lanes") {
  std::vector<int> out(7 * 64, -99);
  DS_LAUNCH(shuffle_width_kernel, 1, 64, 0, 0, out.data());
  int wrong = 0;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    // CUDA Programming Guide, warp shuffle functions: a source outside the lane's width-segment gives
    // the lane its own value (up/down/xor); srcLane is taken modulo width.
    wrong += out[0 * 64 + t] != ((lane / 8) * 8 + 3) * 10;
    wrong += out[1 * 64 + t] != 3 * 10;
    wrong += out[2 * 64 + t] != (lane % 16 >= 2 ? lane - 2 : lane);
    wrong += out[3 * 64 + t] != (lane % 8 + 3 < 8 ? lane + 3 : lane);
    const int partner = lane ^ 8;
    wrong += out[4 * 64 + t] != (partner / 8 <= lane / 8 ? partner : lane);
    wrong += out[5 * 64 + t] != (lane + 5 < 32 ? lane + 5 : lane);
    unsigned every_third = 0;
    for (int l = 0; l < 32; l += 3) every_third |= 1u << l;
    wrong += static_cast<unsigned>(out[6 * 64 + t]) != every_third;
  }
  CHECK(wrong == 0);

  std::vector<unsigned> ballots(40, 0);
  DS_LAUNCH(partial_warp_ballot_kernel, 1, 40, 0, 0, ballots.data());
  CHECK(ballots[0] == 0x55555555u);
  CHECK(ballots[31] == 0x55555555u);
  CHECK(ballots[32] == 0x55u);  // lanes 0..7 exist in the second warp
  CHECK(ballots[39] == 0x55u);
}

TEST_CASE("emu runtime atomics from many blocks and threads") {
  const int blocks = 300, threads = 128, total = blocks * threads;
  int counter = 0, int_max = -1000000, int_min = 1000000;
  float float_sum = 0;
  double double_sum = 0;
  unsigned long long index_sum = 0;
  unsigned unsigned_max = 0, cas_max = 0;
  std::vector<int> histogram(16, 0);
  DS_LAUNCH(atomics_kernel, blocks, threads, 0, 0, &counter, &float_sum, &double_sum, &index_sum, &int_max, &int_min,
            &unsigned_max, &cas_max, histogram.data());
  CHECK(counter == total);
  CHECK(float_sum == static_cast<float>(total));  // 38400 < 2^24: exact
  CHECK(double_sum == 0.5 * total);
  CHECK(index_sum == static_cast<unsigned long long>(total) * (total - 1) / 2);
  int expected_max = -1000000, expected_min = 1000000;
  for (int i = 0; i < total; ++i) {
    expected_max = std::max(expected_max, (i * 7919) % 100003 - 50000);
    expected_min = std::min(expected_min, (i * 7919) % 100003 - 50000);
  }
  CHECK(int_max == expected_max);
  CHECK(int_min == expected_min);
  CHECK(unsigned_max == static_cast<unsigned>(total - 1) * 3u);
  CHECK(cas_max == static_cast<unsigned>(total - 1));
  for (int b = 0; b < 16; ++b) CHECK(histogram[b] == total / 16);

  int exchanged = 5;
  CHECK(atomicExch(&exchanged, 9) == 5);
  CHECK(exchanged == 9);
  unsigned long long wide = 3;
  CHECK(atomicCAS(&wide, 4ull, 8ull) == 3ull);
  CHECK(wide == 3ull);
  CHECK(atomicCAS(&wide, 3ull, 8ull) == 3ull);
  CHECK(wide == 8ull);
}

TEST_CASE("emu runtime dynamic shared memory is shared by the block") {
  const int threads = 77, blocks = 13, n = threads * blocks;
  std::vector<double> x(n), out(n, -1.0);
  for (int i = 0; i < n; ++i) x[i] = 0.25 * i;
  DS_LAUNCH(reverse_in_block_kernel, blocks, threads, threads * sizeof(double), 0, out.data(), x.data());
  int wrong = 0;
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) wrong += out[b * threads + t] != x[b * threads + threads - 1 - t];
  CHECK(wrong == 0);
}

TEST_CASE("emu runtime poisons shared memory before every block") {
  const int threads = 64, blocks = 3;
  std::vector<float> static_seen(threads * blocks, 0.0f);
  std::vector<unsigned> dynamic_seen(threads * blocks, 0);
  DS_LAUNCH(read_unwritten_shared_kernel, blocks, threads, threads * sizeof(unsigned), 0, static_seen.data(),
            dynamic_seen.data());
  int not_poisoned = 0;
  for (int i = 0; i < threads * blocks; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &static_seen[i], sizeof bits);
    not_poisoned += !std::isnan(static_seen[i]) || bits != 0xffffffffu || dynamic_seen[i] != 0xffffffffu;
  }
  CHECK(not_poisoned == 0);  // blocks 1 and 2 would see 1 if the poison were applied once per launch
}

TEST_CASE("emu runtime evaluates kernel arguments once") {
  int calls = 0;
  auto next_value = [&calls] { return ++calls * 10; };
  std::vector<int> out(5 * 33, 0);
  DS_LAUNCH(store_kernel, 5, 33, 0, 0, out.data(), next_value());
  CHECK(calls == 1);
  CHECK(std::count(out.begin(), out.end(), 10) == static_cast<long>(out.size()));
}

TEST_CASE("emu runtime rejects bad launch configurations as CUDA does") {
  std::vector<int> out(2048, 0);
  auto message_of = [](auto&& launch) -> std::string {
    try {
      launch();
    } catch (const ds::CudaError& e) {
      return e.what();
    }
    return "no ds::CudaError";
  };
  const std::string too_many = message_of([&] { DS_LAUNCH(store_kernel, 1, 1025, 0, 0, out.data(), 1); });
  CHECK(too_many.find("store_kernel") != std::string::npos);
  CHECK(too_many.find("1025") != std::string::npos);
  CHECK(too_many.find("cudaErrorInvalidConfiguration") != std::string::npos);
  CHECK(std::count(out.begin(), out.end(), 1) == 0);  // nothing ran
  CHECK(message_of([&] { DS_LAUNCH(store_kernel, dim3(1, 1, 1), dim3(1, 1, 65), 0, 0, out.data(), 1); }) != "no ds::CudaError");
  CHECK(message_of([&] { DS_LAUNCH(store_kernel, 0, 32, 0, 0, out.data(), 1); }) != "no ds::CudaError");
  CHECK(message_of([&] { DS_LAUNCH(store_kernel, dim3(1, 65536, 1), 32, 0, 0, out.data(), 1); }) != "no ds::CudaError");
  CHECK(message_of([&] { DS_LAUNCH(store_kernel, 1, 32, 48 * 1024 + 1, 0, out.data(), 1); }) != "no ds::CudaError");
  // Limits that hold are accepted: 1024 threads, 48 KiB.
  CHECK(message_of([&] { DS_LAUNCH(store_kernel, 2, 1024, 48 * 1024, 0, out.data(), 1); }) == "no ds::CudaError");
  CHECK(std::count(out.begin(), out.end(), 1) == 2048);

  // 40000 static + 10000 dynamic bytes: found when the kernel reaches its DS_SHARED.
  std::vector<float> f(64, 0.0f);
  const std::string too_much_shared = message_of([&] { DS_LAUNCH(big_static_shared_kernel, 2, 64, 10000, 0, f.data()); });
  CHECK(too_much_shared.find("big_static_shared_kernel") != std::string::npos);
  CHECK(too_much_shared.find("big") != std::string::npos);
  // The emulator recovers: the same kernel within the limit, then a kernel with barriers.
  CHECK(message_of([&] { DS_LAUNCH(big_static_shared_kernel, 2, 64, 0, 0, f.data()); }) == "no ds::CudaError");
  CHECK(std::count(f.begin(), f.end(), 1.0f) == 64);
  std::vector<int> ok(2 * 105, 0);
  DS_LAUNCH(all_see_all_kernel, 2, dim3(7, 5, 3), 0, 0, ok.data());
  CHECK(std::count(ok.begin(), ok.end(), 1) == static_cast<long>(ok.size()));
}

TEST_CASE("emu runtime catches a fiber stack overflow and names the thread") {
  const ChildResult r = run_in_child([] {
    int out = 0;
    DS_LAUNCH(deep_recursion_kernel, 2, 8, 0, 0, &out, 1 << 20);
  });
  INFO("child stderr: ", r.stderr_text);
  CHECK(r.signaled);
  CHECK(r.signal == SIGABRT);
  CHECK(r.stderr_text.find("kernels/emu: fiber stack overflow in thread (3,0,0) of block (1,0,0)") != std::string::npos);
  CHECK(r.stderr_text.find("deep_recursion_kernel") != std::string::npos);

  // A shallow recursion fits in the default stack.
  int out = -1;
  DS_LAUNCH(deep_recursion_kernel, 2, 8, 0, 0, &out, 20);
  CHECK(out == 210);  // 20 + 19 + ... + 0
}

TEST_CASE("emu runtime stops on a deadlock and on __syncthreads in divergent code") {
  const ChildResult deadlock = run_in_child([] {
    std::vector<float> out(32, 0.0f);
    DS_LAUNCH(barrier_vs_shuffle_kernel, 1, 32, 0, 0, out.data());
  });
  INFO("deadlock child stderr: ", deadlock.stderr_text);
  CHECK(deadlock.signaled);
  CHECK(deadlock.signal == SIGABRT);
  CHECK(deadlock.stderr_text.find("deadlock in kernel barrier_vs_shuffle_kernel") != std::string::npos);

  const ChildResult divergent = run_in_child([] {
    std::vector<int> out(64, 0);
    DS_LAUNCH(divergent_barrier_kernel, 1, 64, 0, 0, out.data());
  });
  INFO("divergent child stderr: ", divergent.stderr_text);
  CHECK(divergent.signaled);
  CHECK(divergent.signal == SIGABRT);
  CHECK(divergent.stderr_text.find("__syncthreads reached at different places") != std::string::npos);
  CHECK(divergent.stderr_text.find("divergent_barrier_kernel") != std::string::npos);
}

TEST_CASE("emu runtime runs kernels/fill.cu on a million elements") {
  const int64_t n = 1000003;
  std::vector<float> out(n, 0.0f);
  ds::kemu::fill(out.data(), 2.5f, n, nullptr);
  CHECK(std::count(out.begin(), out.end(), 2.5f) == n);
}
