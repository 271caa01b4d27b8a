// darkstar-bench's parts: timing statistics, machine figures (matrix peak, memory), the GAN training
// step with its per-layer table and analytic FLOP count, and the audio throughput. Every figure lands
// in one JSON document (bench.cpp writes it); nothing here asserts on times.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/tensor.h"

namespace ds::bench {

// Median and spread of repeated timings, in milliseconds.
struct Timing {
  std::vector<double> samples_ms;
  double median_ms = 0, min_ms = 0, max_ms = 0, mean_ms = 0;
  nlohmann::json to_json() const;
};
Timing summarise(std::vector<double> samples_ms);
// `warmup` untimed runs, then `reps` timed ones; `sync` (if given) runs inside each timed interval
// after `fn` (the device synchronisation on CUDA).
Timing time_runs(int warmup, int reps, const std::function<void()>& fn, const std::function<void()>& sync = nullptr);

// Threads for OpenBLAS and OpenMP (one number for both, as torch.set_num_threads sets both).
void set_threads(int threads);

// Peak resident set (VmHWM) since the last reset_peak_rss(); reset writes 5 to /proc/self/clear_refs.
void reset_peak_rss();
int64_t peak_rss_bytes();

// The machine's matrix rate measured now: a square n×n SGEMM (OpenBLAS, the current thread count) or
// cuBLAS SGEMM (the context's math mode: TF32 allowed unless exact math is set).
nlohmann::json measure_gemm_peak(Device device, int n, int reps);

// One configuration of the training-step benchmark.
struct GanConfig {
  std::string name;
  int64_t height = 64, width = 64, channels = 3, nz = 100, ngf = 64, ndf = 64, batch = 64;
};
// The named configurations (dcgan64, mel128, mel128x512); throws std::invalid_argument naming the
// known ones for another name.
GanConfig named_config(const std::string& name);
std::vector<std::string> config_names();

struct GanRunOptions {
  Device device = Device::CPU;
  int threads = 1;
  int warmup_steps = 2, timed_steps = 5;
  int layer_reps = 3;       // timed repetitions of each op in the per-layer table
  bool cuda_graph = true;   // CUDA: the step captured once and replayed (engine/train/step_graph.h); --no-graph
  double matrix_peak_flops = 0;  // from measure_gemm_peak in the same run (0: unknown)
};
// Builds G and D, runs the steps, fills the per-layer table; returns the configuration's JSON object.
nlohmann::json bench_gan(const GanConfig& cfg, const GanRunOptions& opt);

// STFT + mel and Griffin-Lim throughput (× realtime) on the real music at `song`, on `device`.
struct AudioOptions {
  Device device = Device::CPU;
  int mel_reps = 3;
  int griffin_lim_iters = 64;
  int griffin_lim_reps = 1;
  double griffin_lim_seconds = 10.0;  // audio length inverted per run
  int max_slices = 0;                 // 0: every 10 s slice of the song
};
nlohmann::json bench_audio(const std::string& song, const AudioOptions& opt);

}  // namespace ds::bench
