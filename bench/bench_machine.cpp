// Timing statistics, thread control and the machine's own figures (peak RSS, matrix rate) for
// darkstar-bench: the yardsticks the training-step numbers are read against, measured in the same run.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <numeric>
#include <random>
#include <string>

#include "bench/bench.h"
#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"

namespace ds::bench {

nlohmann::json Timing::to_json() const {
  return {{"median", median_ms}, {"min", min_ms}, {"max", max_ms}, {"mean", mean_ms}, {"samples", samples_ms}};
}

Timing summarise(std::vector<double> samples_ms) {
  Timing t;
  t.samples_ms = samples_ms;
  if (samples_ms.empty()) return t;
  std::sort(samples_ms.begin(), samples_ms.end());
  const size_t n = samples_ms.size();
  t.median_ms = n % 2 ? samples_ms[n / 2] : 0.5 * (samples_ms[n / 2 - 1] + samples_ms[n / 2]);
  t.min_ms = samples_ms.front();
  t.max_ms = samples_ms.back();
  t.mean_ms = std::accumulate(samples_ms.begin(), samples_ms.end(), 0.0) / double(n);
  return t;
}

Timing time_runs(int warmup, int reps, const std::function<void()>& fn, const std::function<void()>& sync) {
  for (int i = 0; i < warmup; ++i) fn();
  if (sync) sync();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    if (sync) sync();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return summarise(ms);
}

void set_threads(int threads) {
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
}

void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";  // Linux ≥ 4.0: resets VmHWM to the current RSS
}

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // reported in kB
  return -1;
}

nlohmann::json measure_gemm_peak(Device device, int n, int reps) {
  const double flops = 2.0 * double(n) * n * n;
  std::vector<float> a(size_t(n) * n), b(size_t(n) * n), c(size_t(n) * n);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& v : a) v = u(rng);
  for (float& v : b) v = u(rng);
  Timing t;
  std::string what;
  if (device == Device::CPU) {
    what = "OpenBLAS cblas_sgemm " + std::to_string(n) + "x" + std::to_string(n) + "x" + std::to_string(n);
    t = time_runs(1, reps, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    });
  } else {
    CudaContext& ctx = CudaContext::get();
    what = std::string("cuBLAS cublasSgemm ") + std::to_string(n) + "^3" +
           (ctx.exact_math() ? " (FP32, no TF32)" : " (TF32 allowed)");
    DeviceBuffer<float> da = DeviceBuffer<float>::from_host(a), db = DeviceBuffer<float>::from_host(b);
    DeviceBuffer<float> dc(size_t(n) * n);
    const float one = 1.f, zero = 0.f;
    // Column-major C = A·B with square operands: the operand roles do not matter for the rate.
    t = time_runs(2, reps, [&] {
      DS_CUBLAS_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, da.get(), n, db.get(), n,
                                  &zero, dc.get(), n));
    }, [&] { ctx.synchronize(); });
  }
  return {{"what", what}, {"n", n}, {"time_ms", t.to_json()}, {"flops", flops},
          {"flop_per_s", flops / (t.median_ms * 1e-3)}};
}

}  // namespace ds::bench
