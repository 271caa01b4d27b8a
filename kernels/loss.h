// Launchers of loss.cu (mean BCE-with-logits against one target, the finite check), declared for both
// builds: ds::kcuda (GPU) and ds::kemu (emulated on the CPU). Same meaning as engine/nn/cpu/loss.h.
// Shapes: logits, dlogits n floats; loss, mean_probability one float each; flag one int; x n floats.
// Nothing here synchronises with the host: results stay in device memory, so a training step that
// calls them can be captured in a CUDA graph.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#define DS_LOSS_LAUNCHERS(NS)                                                                                 \
  namespace ds::NS {                                                                                          \
  /* *loss = mean over i of max(x,0) − x·target + log1p(exp(−|x|)); *mean_probability = mean σ(x);        */ \
  /* dlogits (WRITTEN; nullptr skips it) = (σ(x) − target)·dloss / n. One block, deterministic.            */ \
  /* Throws std::invalid_argument when n <= 0.                                                             */ \
  void bce_with_logits(float* loss, float* mean_probability, float* dlogits, const float* logits, float target, \
                       float dloss, int64_t n, cudaStream_t stream);                                         \
  /* *flag becomes 0 if any x[i] is NaN or ±Inf; otherwise it is left as it was (set it to 1 first).       */ \
  void check_finite(int* flag, const float* x, int64_t n, cudaStream_t stream);                              \
  }
DS_LOSS_LAUNCHERS(kcuda)
DS_LOSS_LAUNCHERS(kemu)
#undef DS_LOSS_LAUNCHERS
