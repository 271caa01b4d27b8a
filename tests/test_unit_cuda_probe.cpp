// The CUDA probe's fallback reasons: one line naming what is missing (no GPU here, so the kernel-image
// branch is checked through the function that words it; the branch itself runs only on a GPU).
#include <doctest/doctest.h>

#include <string>

#include "engine/core/cuda_context.h"

TEST_CASE("unit cuda probe: the missing-kernel-image reason is one line naming device, capability, build and error") {
  const std::string old_gpu = ds::missing_kernel_image_reason("Tesla V100-SXM2-16GB", 7, 0, "750,800,860,890,900",
                                                              "cudaErrorNoKernelImageForDevice: no kernel image");
  CHECK(old_gpu.find('\n') == std::string::npos);
  CHECK(old_gpu.find("Tesla V100-SXM2-16GB") != std::string::npos);
  CHECK(old_gpu.find("compute capability 7.0") != std::string::npos);
  CHECK(old_gpu.find("architectures 750,800,860,890,900") != std::string::npos);
  CHECK(old_gpu.find("cudaErrorNoKernelImageForDevice") != std::string::npos);
  CHECK(old_gpu.find("needs compute capability 7.5 or newer") != std::string::npos);  // no rebuild helps
  CHECK(old_gpu.find("rebuild") == std::string::npos);
  // A supported GPU the build left out: rebuilding for it is the fix.
  const std::string left_out =
      ds::missing_kernel_image_reason("NVIDIA A100", 8, 0, "750", "cudaErrorInvalidDeviceFunction: invalid device function");
  CHECK(left_out.find("-DCMAKE_CUDA_ARCHITECTURES=80-real") != std::string::npos);
  CHECK(left_out.find('\n') == std::string::npos);
}

TEST_CASE("unit cuda probe: without a usable GPU the probe says why in one line and never throws") {
  const ds::CudaProbe& probe = ds::probe_cuda();
  if (probe.available) {
    MESSAGE("a usable GPU is present (", probe.device_name, "): nothing to check here");
    return;
  }
  CHECK(!probe.reason.empty());
  CHECK(probe.reason.find('\n') == std::string::npos);
  CHECK_THROWS_AS(ds::CudaContext::get(), ds::CudaError);
}
