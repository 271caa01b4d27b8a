// Main of the `gpu` suite: every CUDA op against the CPU reference. Without a usable GPU it prints
// one visible line and exits 77, which ctest reports as "skipped". With one, it switches to exact
// (FMA-only, no TF32) math so library shortcuts cannot hide errors.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/core/cuda_context.h"

int main(int argc, char** argv) {
  const ds::CudaProbe& probe = ds::probe_cuda();
  if (!probe.available) {
    std::printf("gpu suite SKIPPED: no usable CUDA device (%s)\n", probe.reason.c_str());
    return 77;
  }
  std::printf("gpu suite on %s (exact math: FMA only, no TF32)\n", probe.device_name.c_str());
  ds::CudaContext::get().set_exact_math(true);
  doctest::Context context(argc, argv);
  return context.run();
}
