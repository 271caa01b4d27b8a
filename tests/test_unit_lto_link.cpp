// The mel path's cuFFT LTO load and store callbacks (issue 9), JIT-linked here on the CPU with nvJitLink, the
// library cuFFT itself uses for it ("cuFFT LTO EA requires nvJitLink to do runtime linking of
// LTO-callbacks with cuFFT kernels", docs.nvidia.com/cuda/cufft/ltoea/usage/requirements.html).
// cuFFT's own kernels cannot be linked without a GPU, so tests/lto/lto_link_probe.cu stands in for
// them: it declares the callbacks with cufftJITCallbackLoadR's and cufftJITCallbackStoreC's types under
// the symbol names MelGpu passes to cufftXtSetJITCallback (ds_stft_framing_load, ds_stft_power_store),
// and calls both, so a link succeeds only if both resolve. Checked: the embedded fatbin (the very bytes MelGpu hands to
// cuFFT) is LTO-IR nvJitLink accepts; the name resolves with that signature; the IR, compiled for the
// build's lowest architecture, links for that one, for sm_90 (the bundle's) and for sm_100, newer than
// any the build targets ("compile their callback function to LTO-IR for target arch XX and it should
// work in GPUs with arch YY, with XX <= YY", docs.nvidia.com/cuda/cufft/ltoea/usage/api_usage.html);
// and, as a control, the probe alone fails to link, so the probe does reference the symbols.
// What is not checked here: cuFFT's side (its kernel's declaration of the callback, its plan with it).
#include <doctest/doctest.h>
#include <nvJitLink.h>

#include <string>
#include <vector>

#include "lto_link_probe_lto.h"  // generated: ds_lto_link_probe_lto[]
#include "stft_framing_lto.h"    // generated: ds_stft_framing_lto[], as embedded in MelGpu

namespace {

struct LinkResult {
  nvJitLinkResult result = NVJITLINK_SUCCESS;
  size_t cubin_bytes = 0;
  std::string log;
};

LinkResult jit_link(const std::string& arch, bool with_callback) {
  LinkResult out;
  const std::string arch_option = "-arch=" + arch;
  const char* options[] = {arch_option.c_str(), "-lto"};
  nvJitLinkHandle handle = nullptr;
  out.result = nvJitLinkCreate(&handle, 2, options);
  REQUIRE(out.result == NVJITLINK_SUCCESS);
  auto add = [&](const void* data, size_t bytes, const char* name) {
    if (out.result == NVJITLINK_SUCCESS) out.result = nvJitLinkAddData(handle, NVJITLINK_INPUT_FATBIN, data, bytes, name);
  };
  add(ds_lto_link_probe_lto, sizeof(ds_lto_link_probe_lto), "lto_link_probe");
  if (with_callback) add(ds_stft_framing_lto, sizeof(ds_stft_framing_lto), "stft_framing_callback");
  if (out.result == NVJITLINK_SUCCESS) out.result = nvJitLinkComplete(handle);
  if (out.result == NVJITLINK_SUCCESS) nvJitLinkGetLinkedCubinSize(handle, &out.cubin_bytes);
  size_t log_size = 0;
  if (nvJitLinkGetErrorLogSize(handle, &log_size) == NVJITLINK_SUCCESS && log_size > 1) {
    std::vector<char> log(log_size);
    nvJitLinkGetErrorLog(handle, log.data());
    out.log = log.data();
  }
  nvJitLinkDestroy(&handle);
  return out;
}

}  // namespace

TEST_CASE("unit lto: the mel path's cuFFT load and store callbacks JIT-link with nvJitLink (no GPU needed)") {
  for (const std::string arch : {"sm_" DS_LTO_ARCH_STRING, "sm_90", "sm_100"}) {
    CAPTURE(arch);
    const LinkResult linked = jit_link(arch, true);
    MESSAGE(arch << ": probe + callback link: result " << int(linked.result) << ", " << linked.cubin_bytes
                 << " bytes of cubin" << (linked.log.empty() ? "" : ", log: " + linked.log));
    CHECK(linked.result == NVJITLINK_SUCCESS);
    CHECK(linked.cubin_bytes > 0);
  }
  // The control: without the callbacks the probe's references are unresolved (nvJitLink may name only
  // the first it meets, so either name counts).
  const LinkResult alone = jit_link("sm_90", false);
  MESSAGE("probe alone: result " << int(alone.result) << (alone.log.empty() ? "" : ", log: " + alone.log));
  CHECK(alone.result != NVJITLINK_SUCCESS);
  CHECK((alone.log.find("ds_stft_framing_load") != std::string::npos ||
         alone.log.find("ds_stft_power_store") != std::string::npos));  // unresolved for that reason
}
