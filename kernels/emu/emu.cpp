// kernels/emu: the scheduler (blocks, fibers, barriers, warp exchange), fiber stacks and the
// stack-overflow / segfault reporting behind the CUDA emulation declared in emu.h.
#include "kernels/emu/emu.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

// Context switches. glibc's swapcontext makes a sigprocmask system call on every switch (about
// 170 ns here), which dominates kernels with many barriers; on x86-64 a switch that saves only the
// callee-saved registers (SysV ABI) costs a few ns. Other targets, or -DDS_EMU_UCONTEXT, use ucontext.
#if defined(__x86_64__) && !defined(DS_EMU_UCONTEXT)
#define DS_EMU_ASM_SWITCH 1
extern "C" void ds_emu_switch_stack(void** save_sp, void* load_sp);
asm(R"(
  .text
  .p2align 4
  .globl ds_emu_switch_stack
  .hidden ds_emu_switch_stack
  .type ds_emu_switch_stack, @function
ds_emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ds_emu_switch_stack, .-ds_emu_switch_stack
)");
#else
#define DS_EMU_ASM_SWITCH 0
#endif

// AddressSanitizer keeps its own idea of the current stack; a switch it is not told about makes it
// see the fiber's frames as a wild stack (false reports, or a crash when it unpoisons "the" stack).
// Every switch is therefore bracketed by __sanitizer_start_switch_fiber (the destination's bounds) and
// __sanitizer_finish_switch_fiber (on arrival), as compiler-rt's common_interface_defs.h describes.
#if defined(__SANITIZE_ADDRESS__)
#define DS_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DS_EMU_ASAN 1
#endif
#endif
#ifndef DS_EMU_ASAN
#define DS_EMU_ASAN 0
#endif
#if DS_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace ds::emu {

struct Context {
#if DS_EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
#if DS_EMU_ASAN
  // The stack this context runs on, for ASan: a fiber's is set when it is mapped, the scheduler's
  // (the OS thread's own stack) is learnt from the first switch into a fiber.
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
#endif
};

struct Fiber {
  Context ctx;
  unsigned char* map = nullptr;  // [guard | stack]
  std::size_t map_bytes = 0;
  unsigned char* guard_end = nullptr;  // the guard is [map, guard_end)
  unsigned char* stack_top = nullptr;
  ThreadRec* thread = nullptr;
  bool started = false;  // false: the next switch to it starts fiber_main afresh
  ~Fiber() {
    if (map) munmap(map, map_bytes);
  }
};

namespace {

// Below the stack; larger than one page so that a kernel frame of a few KiB cannot jump over it.
constexpr std::size_t kGuardBytes = 64 * 1024;

std::size_t page_size() {
  static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return page;
}
std::size_t round_to_pages(std::size_t bytes) { return (bytes + page_size() - 1) / page_size() * page_size(); }

std::size_t initial_stack_bytes() {
  if (const char* kib = std::getenv("DS_EMU_STACK_KIB")) {
    const long v = std::strtol(kib, nullptr, 10);
    if (v > 0) return round_to_pages(std::max<std::size_t>(16 * 1024, static_cast<std::size_t>(v) * 1024));
  }
  return 64 * 1024;
}
std::atomic<std::size_t> g_stack_bytes{initial_stack_bytes()};

std::uint64_t initial_seed() {
  const char* s = std::getenv("DS_EMU_SEED");
  return s ? std::strtoull(s, nullptr, 0) : 0x5eedda4c57a2ull;
}
const std::uint64_t g_seed = initial_seed();

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct WarpRec {
  unsigned exists = 0, done = 0, arrived = 0, required = 0, released = 0;
  alignas(16) unsigned char slots[kWarpSize][kSlotBytes];
};

[[noreturn]] void fiber_main();

// Everything one OS thread needs to run launches.
struct Emulator {
  Context main_ctx;
  std::vector<std::unique_ptr<Fiber>> fibers;
  std::vector<Fiber*> idle;
  std::size_t fibers_stack_bytes = 0;
  Fiber* running = nullptr;  // the fiber now executing kernel code, for the SIGSEGV handler
  unsigned char* alt_stack = nullptr;

  // the launch in progress
  const LaunchConfig* cfg = nullptr;
  void (*invoke)(const void*) = nullptr;
  const void* invoke_args = nullptr;
  std::uint64_t launch_serial = 0;
  std::exception_ptr error;

  // the block in progress
  std::vector<ThreadRec> threads;
  std::vector<WarpRec> warps;
  std::vector<int> ready;  // threads to run, in order; ready[ready_pos] is next
  std::vector<int> released_scratch;
  std::size_t ready_pos = 0;
  int n_threads = 0, n_done = 0, block_arrived = 0;
  const char* block_site_file = nullptr;
  int block_site_line = 0;
  int block_site_thread = 0;
  std::size_t static_shared_bytes = 0;
  std::vector<std::max_align_t> dynamic_arena;
  std::uint64_t rng = 0;

  ~Emulator() { if (alt_stack) munmap(alt_stack, kAltStackBytes); }
  static constexpr std::size_t kAltStackBytes = 64 * 1024;

  void shuffle_into_ready(std::vector<int>& ids) {
    for (std::size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[splitmix64(rng) % i]);
    ready.insert(ready.end(), ids.begin(), ids.end());
  }

  Fiber* acquire_fiber() {
    if (!idle.empty()) {
      Fiber* f = idle.back();
      idle.pop_back();
      return f;
    }
    auto f = std::make_unique<Fiber>();
    const std::size_t stack = fibers_stack_bytes, guard = round_to_pages(kGuardBytes);
    void* m = mmap(nullptr, guard + stack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("kernels/emu: cannot map a fiber stack of " + std::to_string(stack) + " bytes");
    f->map = static_cast<unsigned char*>(m);
    f->map_bytes = guard + stack;
    if (mprotect(m, guard, PROT_NONE) != 0) throw std::runtime_error("kernels/emu: cannot protect a fiber guard page");
    f->guard_end = f->map + guard;
    f->stack_top = f->map + guard + stack;
#if DS_EMU_ASAN
    f->ctx.stack_bottom = f->guard_end;
    f->ctx.stack_size = stack;
#endif
    fibers.push_back(std::move(f));
    return fibers.back().get();
  }

  void start_context(Fiber* f) {
#if DS_EMU_ASAN
    // A fiber restarted on its stack abandons the frames of its last run, whose redzones ASan still
    // has poisoned: clear the whole stack, as a thread's would be on exit.
    __asan_unpoison_memory_region(f->guard_end, static_cast<std::size_t>(f->stack_top - f->guard_end));
#endif
#if DS_EMU_ASM_SWITCH
    // The frame ds_emu_switch_stack pops: control words, r15..r12, rbx, rbp, return address; above it
    // a fake return address, so fiber_main starts with the stack alignment of a called function.
    auto* sp = reinterpret_cast<std::uint64_t*>(reinterpret_cast<std::uintptr_t>(f->stack_top) & ~std::uintptr_t{15});
    *--sp = 0;
    *--sp = reinterpret_cast<std::uint64_t>(&fiber_main);
    for (int i = 0; i < 6; ++i) *--sp = 0;
    *--sp = (std::uint64_t{0x037f} << 32) | 0x1f80;  // default x87 control word and MXCSR
    f->ctx.sp = sp;
#else
    getcontext(&f->ctx.uc);
    f->ctx.uc.uc_stack.ss_sp = f->guard_end;
    f->ctx.uc.uc_stack.ss_size = static_cast<std::size_t>(f->stack_top - f->guard_end);
    f->ctx.uc.uc_link = nullptr;
    makecontext(&f->ctx.uc, &fiber_main, 0);
#endif
    f->started = true;
  }

  static void switch_context(Context& from, Context& to) {
#if DS_EMU_ASAN
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, to.stack_bottom, to.stack_size);
#endif
#if DS_EMU_ASM_SWITCH
    ds_emu_switch_stack(&from.sp, to.sp);
#else
    swapcontext(&from.uc, &to.uc);
#endif
#if DS_EMU_ASAN
    // Back on from's stack. Fibers only ever switch to the scheduler and it only to fibers, so whoever
    // switched here is the context we last left for, `to`: its bounds are refreshed (for a fiber
    // resuming, that is the scheduler's stack).
    __sanitizer_finish_switch_fiber(fake_stack, &to.stack_bottom, &to.stack_size);
#endif
  }

  // From kernel code: give the CPU back to the scheduler until this thread is released.
  void suspend(ThreadRec* t) { switch_context(t->fiber->ctx, main_ctx); }

  void release_block() {
    released_scratch.clear();
    for (int i = 0; i < n_threads; ++i)
      if (threads[i].state == ThreadState::WaitBlock) {
        threads[i].state = ThreadState::Ready;
        released_scratch.push_back(i);
      }
    shuffle_into_ready(released_scratch);
    block_arrived = 0;
    block_site_file = nullptr;
  }

  void maybe_release_warp(int warp) {
    WarpRec& w = warps[warp];
    const unsigned live = w.exists & ~w.done;
    if ((w.required & live & ~w.arrived) != 0) return;
    released_scratch.clear();
    for (int lane = 0; lane < kWarpSize; ++lane)
      if (w.arrived & (1u << lane)) {
        const int id = warp * kWarpSize + lane;
        threads[id].state = ThreadState::Ready;
        released_scratch.push_back(id);
      }
    w.released = w.arrived;
    w.arrived = w.required = 0;
    shuffle_into_ready(released_scratch);
  }

  void thread_exited(ThreadRec* t) {
    t->state = ThreadState::Done;
    ++n_done;
    WarpRec& w = warps[t->warp];
    w.done |= 1u << t->lane;
    if (w.arrived) maybe_release_warp(t->warp);
    if (block_arrived && block_arrived + n_done == n_threads) release_block();
  }

  // The next thread to run, if it has not started yet (it can then run on the calling fiber).
  ThreadRec* take_unstarted() {
    if (error || ready_pos >= ready.size()) return nullptr;
    ThreadRec* t = &threads[ready[ready_pos]];
    if (t->state != ThreadState::NotStarted) return nullptr;
    ++ready_pos;
    return t;
  }

  void prepare_block_threads(dim3 block) {
    n_threads = static_cast<int>(block.x * block.y * block.z);
    threads.resize(n_threads);
    for (unsigned z = 0, i = 0; z < block.z; ++z)
      for (unsigned y = 0; y < block.y; ++y)
        for (unsigned x = 0; x < block.x; ++x, ++i) {
          ThreadRec& t = threads[i];
          t.idx = make_uint3(x, y, z);
          t.warp = static_cast<int>(i) / kWarpSize;
          t.lane = static_cast<int>(i) % kWarpSize;
        }
    warps.assign((n_threads + kWarpSize - 1) / kWarpSize, WarpRec{});
  }

  void run_block(uint3 block_idx, std::uint64_t block_linear);
  [[noreturn]] void deadlock();
  std::string where() const;
};

thread_local std::unique_ptr<Emulator> tls_emulator_owner;
thread_local Emulator* tls_emulator = nullptr;  // constant-initialised: safe to read in a signal handler

Emulator& emulator() {
  if (!tls_emulator) {
    tls_emulator_owner = std::make_unique<Emulator>();
    tls_emulator = tls_emulator_owner.get();
  }
  return *tls_emulator;
}

std::string coords(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

std::string Emulator::where() const {
  return std::string("kernel ") + cfg->kernel + " launched at " + cfg->file + ":" + std::to_string(cfg->line) +
         ", block " + coords(current.block_idx);
}

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "kernels/emu: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

void Emulator::deadlock() {
  std::string msg = "deadlock in " + where() + ": no thread can run.";
  int at_block = 0, at_warp = 0;
  std::string first_block, first_warp;
  for (const ThreadRec& t : threads) {
    if (t.state == ThreadState::WaitBlock && at_block++ == 0)
      first_block = " (first: thread " + coords(t.idx) + " at " + t.wait_file + ":" + std::to_string(t.wait_line) + ")";
    if (t.state == ThreadState::WaitWarp && at_warp++ == 0)
      first_warp = " (first: thread " + coords(t.idx) + ", warp " + std::to_string(t.warp) + " lane " +
                   std::to_string(t.lane) + ")";
  }
  msg += " " + std::to_string(at_block) + " thread(s) wait at __syncthreads" + first_block + ", " +
         std::to_string(at_warp) + " in a warp operation (__shfl*_sync/__ballot_sync/__syncwarp)" + first_warp + ", " +
         std::to_string(n_done) + " exited. Is __syncthreads or a warp operation inside divergent code?";
  fail(msg);
}

[[noreturn]] void fiber_main() {
  Emulator& e = *tls_emulator;
#if DS_EMU_ASAN
  // A fresh fiber arrives here, not after the switch in switch_context: finish that switch, learning
  // the scheduler's stack (the fiber switches back to it).
  __sanitizer_finish_switch_fiber(nullptr, &e.main_ctx.stack_bottom, &e.main_ctx.stack_size);
#endif
  Fiber* const f = e.running;
  for (;;) {
    ThreadRec* t = f->thread;
    try {
      e.invoke(e.invoke_args);
    } catch (...) {
      if (!e.error) e.error = std::current_exception();
    }
    e.thread_exited(t);
    // Threads that reach no barrier run one after another on this fiber, without switching.
    if (ThreadRec* next = e.take_unstarted()) {
      next->fiber = f;
      next->state = ThreadState::Running;
      f->thread = next;
      current.thread = next;
      continue;
    }
    f->thread = nullptr;
    e.idle.push_back(f);
    Emulator::switch_context(f->ctx, e.main_ctx);
  }
}

void Emulator::run_block(uint3 block_idx, std::uint64_t block_linear) {
  current.block_idx = block_idx;
  ++current.block_serial;
  static_shared_bytes = 0;
  if (cfg->shared_bytes) std::memset(dynamic_arena.data(), 0xFF, cfg->shared_bytes);
  rng = g_seed ^ (launch_serial * 0xd1b54a32d192ed03ull) ^ (block_linear * 0x9e3779b97f4a7c15ull);
  splitmix64(rng);

  for (ThreadRec& t : threads) {
    t.state = ThreadState::NotStarted;
    t.fiber = nullptr;
  }
  for (std::size_t w = 0; w < warps.size(); ++w) {
    WarpRec& rec = warps[w];
    const int lanes = std::min(kWarpSize, n_threads - static_cast<int>(w) * kWarpSize);
    rec.exists = lanes == kWarpSize ? 0xffffffffu : (1u << lanes) - 1;
    rec.done = rec.arrived = rec.required = rec.released = 0;
    std::memset(rec.slots, 0xFF, sizeof rec.slots);
  }
  n_done = block_arrived = 0;
  block_site_file = nullptr;
  ready.clear();
  ready_pos = 0;
  released_scratch.resize(n_threads);
  for (int i = 0; i < n_threads; ++i) released_scratch[i] = i;
  shuffle_into_ready(released_scratch);

  for (;;) {
    while (ready_pos < ready.size()) {
      ThreadRec* t = &threads[ready[ready_pos++]];
      if (t->state == ThreadState::NotStarted) {
        Fiber* f = acquire_fiber();
        f->thread = t;
        t->fiber = f;
        if (!f->started) start_context(f);
      }
      t->state = ThreadState::Running;
      current.thread = t;
      running = t->fiber;
      switch_context(main_ctx, t->fiber->ctx);
      running = nullptr;
      current.thread = nullptr;
      if (error) return;
      // Keep the queue short in kernels with many barriers.
      if (ready_pos >= 4096 && 2 * ready_pos >= ready.size()) {
        ready.erase(ready.begin(), ready.begin() + static_cast<std::ptrdiff_t>(ready_pos));
        ready_pos = 0;
      }
    }
    if (n_done == n_threads) return;
    deadlock();
  }
}

// ---- signals: a fault inside a fiber is reported with the kernel thread that caused it ----------

std::mutex g_signal_mutex;
struct sigaction g_previous_segv;  // restored (and the fault re-raised) for faults that are not ours

void write_str(char*& p, char* end, const char* s) {
  while (*s && p < end) *p++ = *s++;
}
void write_uint(char*& p, char* end, unsigned long long v, int base = 10) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  while (n && p < end) *p++ = digits[--n];
}
void write_coords(char*& p, char* end, uint3 v) {
  write_str(p, end, "(");
  write_uint(p, end, v.x);
  write_str(p, end, ",");
  write_uint(p, end, v.y);
  write_str(p, end, ",");
  write_uint(p, end, v.z);
  write_str(p, end, ")");
}

void segv_handler(int, siginfo_t* info, void*) {
  Emulator* e = tls_emulator;
  if (e && e->running && e->cfg && current.thread) {
    const auto* addr = static_cast<const unsigned char*>(info->si_addr);
    const bool overflow = addr >= e->running->map && addr < e->running->guard_end;
    char buf[1024];
    char *p = buf, *end = buf + sizeof buf - 1;
    write_str(p, end, overflow ? "kernels/emu: fiber stack overflow in thread " : "kernels/emu: segmentation fault (address 0x");
    if (!overflow) {
      write_uint(p, end, reinterpret_cast<std::uintptr_t>(addr), 16);
      write_str(p, end, ") in thread ");
    }
    write_coords(p, end, current.thread->idx);
    write_str(p, end, " of block ");
    write_coords(p, end, current.block_idx);
    write_str(p, end, " of kernel ");
    write_str(p, end, e->cfg->kernel);
    write_str(p, end, " launched at ");
    write_str(p, end, e->cfg->file);
    write_str(p, end, ":");
    write_uint(p, end, static_cast<unsigned>(e->cfg->line));
    if (overflow) {
      write_str(p, end, " (fiber stacks are ");
      write_uint(p, end, e->fibers_stack_bytes / 1024);
      write_str(p, end, " KiB: raise DS_EMU_STACK_KIB or call ds::emu::set_fiber_stack_size)");
    }
    *p++ = '\n';
    if (write(STDERR_FILENO, buf, static_cast<std::size_t>(p - buf)) < 0) {
    }
    if (overflow) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGABRT, &dfl, nullptr);  // a test framework's SIGABRT handler must not run on this stack
      abort();
    }
  }
  // Not a stack overflow: hand the fault to whoever handled SIGSEGV before; returning re-executes it.
  sigaction(SIGSEGV, &g_previous_segv, nullptr);
}

// Test frameworks (doctest) install and later restore their own SIGSEGV handler and alternate stack
// around each test, so both are checked, and re-installed if needed, at every launch.
void ensure_signal_handling(Emulator& e) {
  stack_t ss;
  if (sigaltstack(nullptr, &ss) == 0 && (ss.ss_flags & SS_DISABLE)) {
    if (!e.alt_stack) {
      void* m = mmap(nullptr, Emulator::kAltStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) return;
      e.alt_stack = static_cast<unsigned char*>(m);
    }
    stack_t mine{};
    mine.ss_sp = e.alt_stack;
    mine.ss_size = Emulator::kAltStackBytes;
    sigaltstack(&mine, nullptr);
  }
  struct sigaction now {};
  sigaction(SIGSEGV, nullptr, &now);
  if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == &segv_handler) return;
  std::lock_guard<std::mutex> lock(g_signal_mutex);
  g_previous_segv = now;
  if (!(now.sa_flags & SA_SIGINFO) && now.sa_handler == SIG_IGN) g_previous_segv.sa_handler = SIG_DFL;
  struct sigaction mine {};
  mine.sa_sigaction = &segv_handler;
  mine.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&mine.sa_mask);
  sigaction(SIGSEGV, &mine, nullptr);
}

[[noreturn]] void throw_config_error(const LaunchConfig& cfg, const char* error, const std::string& why) {
  throw CudaError(std::string("launch of ") + cfg.kernel + " failed: " + error + " (" + why + ") at " + cfg.file + ":" +
                  std::to_string(cfg.line));
}

// The limits of every GPU from sm_75 on (cudaDeviceProp maxThreadsPerBlock, maxThreadsDim,
// maxGridSize, sharedMemPerBlock).
void validate(const LaunchConfig& cfg) {
  const dim3 b = cfg.block, g = cfg.grid;
  const std::string block = "block (" + std::to_string(b.x) + "," + std::to_string(b.y) + "," + std::to_string(b.z) + ")";
  const std::string grid = "grid (" + std::to_string(g.x) + "," + std::to_string(g.y) + "," + std::to_string(g.z) + ")";
  if (b.x == 0 || b.y == 0 || b.z == 0) throw_config_error(cfg, "cudaErrorInvalidConfiguration", block + " has a zero dimension");
  if (b.x > 1024 || b.y > 1024 || b.z > 64)
    throw_config_error(cfg, "cudaErrorInvalidConfiguration", block + " exceeds the per-dimension limits (1024,1024,64)");
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  if (threads > 1024)
    throw_config_error(cfg, "cudaErrorInvalidConfiguration",
                       block + " has " + std::to_string(threads) + " threads, more than 1024 per block");
  if (g.x == 0 || g.y == 0 || g.z == 0) throw_config_error(cfg, "cudaErrorInvalidConfiguration", grid + " has a zero dimension");
  if (g.x > 2147483647u || g.y > 65535 || g.z > 65535)
    throw_config_error(cfg, "cudaErrorInvalidConfiguration", grid + " exceeds the limits (2^31-1,65535,65535)");
  if (cfg.shared_bytes > kMaxSharedBytes)
    throw_config_error(cfg, "cudaErrorInvalidValue",
                       std::to_string(cfg.shared_bytes) + " bytes of dynamic shared memory, more than 49152 per block");
}

}  // namespace

void set_fiber_stack_size(std::size_t bytes) {
  g_stack_bytes = round_to_pages(std::max<std::size_t>(bytes, 16 * 1024));
}
std::size_t fiber_stack_size() { return g_stack_bytes; }

void run(const LaunchConfig& cfg, void (*invoke)(const void*), const void* args) {
  validate(cfg);
  Emulator& e = emulator();
  if (e.cfg) throw std::runtime_error(std::string("kernels/emu: launch of ") + cfg.kernel + " from inside a kernel");
  ensure_signal_handling(e);
  if (e.fibers_stack_bytes != g_stack_bytes) {  // between launches every fiber is idle
    e.idle.clear();
    e.fibers.clear();
    e.fibers_stack_bytes = g_stack_bytes;
  }
  e.cfg = &cfg;
  e.invoke = invoke;
  e.invoke_args = args;
  e.error = nullptr;
  ++e.launch_serial;
  e.dynamic_arena.resize((cfg.shared_bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
  current.dynamic_shared = cfg.shared_bytes ? reinterpret_cast<unsigned char*>(e.dynamic_arena.data()) : nullptr;
  current.block_dim = make_uint3(cfg.block.x, cfg.block.y, cfg.block.z);
  current.grid_dim = make_uint3(cfg.grid.x, cfg.grid.y, cfg.grid.z);
  e.prepare_block_threads(cfg.block);

  std::uint64_t linear = 0;
  for (unsigned z = 0; z < cfg.grid.z && !e.error; ++z)
    for (unsigned y = 0; y < cfg.grid.y && !e.error; ++y)
      for (unsigned x = 0; x < cfg.grid.x && !e.error; ++x, ++linear) {
        e.run_block(make_uint3(x, y, z), linear);
        if (e.error) break;
      }

  e.cfg = nullptr;
  current.thread = nullptr;
  current.dynamic_shared = nullptr;
  if (e.error) {
    // Threads stopped mid-kernel leave their fibers suspended: restart every fiber from scratch.
    e.idle.clear();
    for (auto& f : e.fibers) {
      f->started = false;
      f->thread = nullptr;
      e.idle.push_back(f.get());
    }
    std::exception_ptr error = e.error;
    e.error = nullptr;
    std::rethrow_exception(error);
  }
}

void syncthreads(const char* file, int line) {
  Emulator& e = *tls_emulator;
  ThreadRec* t = current.thread;
  if (e.block_arrived == 0) {
    e.block_site_file = file;
    e.block_site_line = line;
    e.block_site_thread = static_cast<int>(t - e.threads.data());
  } else if (line != e.block_site_line || (file != e.block_site_file && std::strcmp(file, e.block_site_file) != 0)) {
    fail("__syncthreads reached at different places by threads of one phase in " + e.where() + ": thread " +
         coords(e.threads[e.block_site_thread].idx) + " at " + e.block_site_file + ":" + std::to_string(e.block_site_line) +
         ", thread " + coords(t->idx) + " at " + file + ":" + std::to_string(line) + " (__syncthreads in divergent code)");
  }
  t->state = ThreadState::WaitBlock;
  t->wait_file = file;
  t->wait_line = line;
  ++e.block_arrived;
  if (e.block_arrived + e.n_done == e.n_threads) e.release_block();
  e.suspend(t);
}

void warp_barrier(unsigned mask) {
  Emulator& e = *tls_emulator;
  ThreadRec* t = current.thread;
  const unsigned me = 1u << t->lane;
  if (!(mask & me))
    fail("a warp operation in " + e.where() + " was called by thread " + coords(t->idx) + " (lane " +
         std::to_string(t->lane) + ") with a mask that does not contain its own lane");
  WarpRec& w = e.warps[t->warp];
  t->state = ThreadState::WaitWarp;
  w.arrived |= me;
  w.required |= mask;
  e.maybe_release_warp(t->warp);
  e.suspend(t);
}

const unsigned char* warp_exchange_begin(unsigned mask, const void* value, std::size_t bytes) {
  WarpRec& w = tls_emulator->warps[current.thread->warp];
  std::memcpy(w.slots[current.thread->lane], value, bytes);
  warp_barrier(mask);
  return &w.slots[0][0];
}

void warp_exchange_end(unsigned mask) {
  // The second barrier keeps a fast lane from overwriting its slot before every lane has read it.
  warp_barrier(mask);
  WarpRec& w = tls_emulator->warps[current.thread->warp];
  std::memset(w.slots[current.thread->lane], 0xFF, kSlotBytes);
}

unsigned ballot(unsigned mask, bool predicate) {
  const unsigned char vote = predicate ? 1 : 0;
  const unsigned char* slots = warp_exchange_begin(mask, &vote, 1);
  const unsigned voters = mask & tls_emulator->warps[current.thread->warp].released;
  unsigned result = 0;
  for (int lane = 0; lane < kWarpSize; ++lane)
    if ((voters & (1u << lane)) && slots[lane * kSlotBytes] == 1) result |= 1u << lane;
  warp_exchange_end(mask);
  return result;
}

unsigned live_lanes() {
  const WarpRec& w = tls_emulator->warps[current.thread->warp];
  return w.exists & ~w.done;
}

void claim_static_shared(void* storage, std::size_t bytes, const char* name) {
  Emulator& e = *tls_emulator;
  e.static_shared_bytes += bytes;
  if (e.static_shared_bytes + e.cfg->shared_bytes > kMaxSharedBytes)
    throw_config_error(*e.cfg, "cudaErrorInvalidValue",
                       "DS_SHARED " + std::string(name) + " brings the block's shared memory to " +
                           std::to_string(e.static_shared_bytes) + " static + " + std::to_string(e.cfg->shared_bytes) +
                           " dynamic bytes, more than 49152");
  std::memset(storage, 0xFF, bytes);
}

int shuffle_source_lane(ShuffleMode mode, int lane, unsigned b, int width) {
  if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0) {
    Emulator& e = *tls_emulator;
    fail("warp shuffle with width " + std::to_string(width) + " (not a power of two in [1,32]) in " + e.where());
  }
  const int segmask = (kWarpSize - width) & 0x1f;
  const int cval = mode == ShuffleMode::Up ? 0 : 0x1f;
  const int bval = static_cast<int>(b & 0x1f);
  const int max_lane = (lane & segmask) | (cval & ~segmask);
  const int min_lane = lane & segmask;
  int j = lane;
  bool in_range = true;
  switch (mode) {
    case ShuffleMode::Up: j = lane - bval; in_range = j >= max_lane; break;
    case ShuffleMode::Down: j = lane + bval; in_range = j <= max_lane; break;
    case ShuffleMode::Xor: j = lane ^ bval; in_range = j <= max_lane; break;
    case ShuffleMode::Idx: j = min_lane | (bval & ~segmask); in_range = j <= max_lane; break;
  }
  return in_range ? j : lane;
}

}  // namespace ds::emu
