// darkstar-check: what prove.sh needs on machines without Python: the versions of the CUDA libraries
// actually loaded, and two comparisons: two .npy datasets (max |a - b|) and the first logged steps of
// two training runs (log.jsonl, Loss_D and Loss_G). Comparisons print the figure and exit 0 within the
// tolerance, 2 beyond it, 1 on bad input.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <cufft.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/formats/npy.h"

namespace {

struct LoggedLosses {
  std::vector<double> loss_d, loss_g;
};

LoggedLosses read_losses(const std::string& path, int steps) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  LoggedLosses out;
  std::string line;
  for (int expected = 1; std::getline(in, line) && expected <= steps; ++expected) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.at("step").get<int>() != expected)
      throw std::runtime_error(path + ": step " + std::to_string(expected) + " expected on line " +
                               std::to_string(expected) + " (train with --log-every 1)");
    out.loss_d.push_back(j.at("Loss_D").get<double>());
    out.loss_g.push_back(j.at("Loss_G").get<double>());
  }
  if (static_cast<int>(out.loss_d.size()) < steps)
    throw std::runtime_error(path + ": " + std::to_string(out.loss_d.size()) + " logged steps, expected " +
                             std::to_string(steps));
  return out;
}

// Versions as encoded by each library (cudart/driver: 1000 * major + 10 * minor; cuFFT:
// 1000 * major + 100 * minor + patch; cuDNN 9: 10000 * major + 100 * minor + patch). None of these calls needs a GPU.
void print_versions() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
  std::printf("cudart   %d.%d (built against %d.%d)\n", runtime / 1000, runtime % 1000 / 10, CUDART_VERSION / 1000,
              CUDART_VERSION % 1000 / 10);
  if (driver > 0)
    std::printf("driver   supports CUDA up to %d.%d\n", driver / 1000, driver % 1000 / 10);
  else
    std::printf("driver   none (libcuda.so.1 not loadable)\n");
  int major = 0, minor = 0, patch = 0;
  cublasGetProperty(MAJOR_VERSION, &major);
  cublasGetProperty(MINOR_VERSION, &minor);
  cublasGetProperty(PATCH_LEVEL, &patch);
  std::printf("cuBLAS   %d.%d.%d\n", major, minor, patch);
  int fft = 0;
  cufftGetVersion(&fft);
  std::printf("cuFFT    %d.%d.%d\n", fft / 1000, fft % 1000 / 100, fft % 100);  // CUFFT_VERSION's encoding
  const size_t dnn = cudnnGetVersion();
  std::printf("cuDNN    %zu.%zu.%zu (built against %d.%d.%d)\n", dnn / 10000, dnn % 10000 / 100, dnn % 100, CUDNN_MAJOR,
              CUDNN_MINOR, CUDNN_PATCHLEVEL);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"darkstar-check: compare two datasets or two runs' first losses"};
  app.require_subcommand(1);
  std::string a, b;
  double tol = 0;
  int steps = 5;
  auto* versions = app.add_subcommand("versions", "versions of the CUDA runtime, driver, cuBLAS, cuFFT and cuDNN loaded");
  auto* npy = app.add_subcommand("npy", "max |a - b| of two .npy arrays of the same shape");
  npy->add_option("a", a)->required();
  npy->add_option("b", b)->required();
  npy->add_option("--tol", tol, "largest accepted max |a - b|")->required();
  auto* losses = app.add_subcommand("losses", "Loss_D and Loss_G of the first steps of two log.jsonl files");
  losses->add_option("a", a)->required();
  losses->add_option("b", b)->required();
  losses->add_option("--steps", steps, "how many first steps (default 5)");
  losses->add_option("--tol", tol, "largest accepted |a - b| / max(1, |a|) of any loss")->required();
  CLI11_PARSE(app, argc, argv);

  if (*versions) {
    print_versions();
    return 0;
  }
  try {
    double worst = 0;
    if (*npy) {
      const ds::NpyArray x = ds::read_npy(a), y = ds::read_npy(b);
      if (x.shape != y.shape) throw std::runtime_error(a + " and " + b + ": shapes differ");
      const std::vector<float> u = x.to_float(), v = y.to_float();
      int64_t where = 0;
      for (size_t i = 0; i < u.size(); ++i) {
        double d = std::fabs(double(u[i]) - double(v[i]));
        if (std::isnan(d)) d = INFINITY;  // a NaN on either side is the worst difference
        if (d > worst) worst = d, where = static_cast<int64_t>(i);
      }
      std::printf("max |a - b| = %.3g over %zu values (at flat index %lld); tolerance %.3g\n", worst, u.size(),
                  static_cast<long long>(where), tol);
    } else {
      const LoggedLosses x = read_losses(a, steps), y = read_losses(b, steps);
      std::printf("step  Loss_D(a)  Loss_D(b)  Loss_G(a)  Loss_G(b)\n");
      for (int s = 0; s < steps; ++s) {
        std::printf("%4d  %9.5f  %9.5f  %9.5f  %9.5f\n", s + 1, x.loss_d[s], y.loss_d[s], x.loss_g[s], y.loss_g[s]);
        for (auto [p, q] : {std::pair{x.loss_d[s], y.loss_d[s]}, std::pair{x.loss_g[s], y.loss_g[s]}}) {
          double d = std::fabs(p - q) / std::max(1.0, std::fabs(p));
          if (std::isnan(d)) d = INFINITY;
          worst = std::max(worst, d);
        }
      }
      std::printf("max relative loss difference over %d steps = %.3g; tolerance %.3g\n", steps, worst, tol);
    }
    return worst <= tol ? 0 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "darkstar-check: error: %s\n", e.what());
    return 1;
  }
}
