// The CUDA training step as one CUDA graph: run eagerly once (warm-up), captured on the next call,
// replayed with cudaGraphLaunch from then on; eager launches when disabled (train --no-graph,
// darkstar-bench --no-graph) or when capture fails (one line on stderr, then eager for good).
//
// What may be captured: the launches of one step, which must be the same kernels, library calls and
// argument bytes every step (every per-step value in device memory, advanced there: see trainer.cpp's
// file comment) and must neither read the device from the host nor synchronise nor allocate
// (kernels/launch_log.h checks both; StepScope is active around every call of `enqueue`).
// The host-side bookkeeping one step advances (each optimizer's AdamCounter::step(), every batch-norm
// stage's num_batches_tracked) is not replayed by the graph: its change over the captured step is
// measured and added after each replay, so checkpoints store the same numbers as an eager run.
// A replay is only valid while every pointer the graph holds is alive and unchanged: the caller passes
// a fingerprint of its buffers (and the context workspace's generation is added); a different one
// drops the graph, and the next two calls warm up and capture again.
//
// NVIDIA's documentation this follows (CUDA 13.0 runtime API, cuda_runtime_api.h, and the pages cited
// in step_graph.cpp): cudaStreamBeginCapture(stream, mode) records, not runs, what is enqueued on the
// stream; cudaStreamCaptureModeThreadLocal prohibits "potentially unsafe API calls" (cudaMalloc, sync
// calls, event queries on captured work) in this thread only; cudaStreamEndCapture returns a NULL
// graph when the capture was invalidated; cudaGraphInstantiate(&exec, graph, flags) (CUDA 12+: the
// three-argument form, flags 0); cudaGraphLaunch(exec, stream) is ordered after earlier work in the
// stream and earlier launches of exec.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/dcgan.h"
#include "engine/train/trainer.h"

namespace ds {

// Host bookkeeping of one gan_step (see the file comment).
struct GanStepHostCounters {
  int64_t adam_g = 0, adam_d = 0;
  std::vector<int64_t> tracked_g, tracked_d;  // num_batches_tracked of each stage, in stage order
  static GanStepHostCounters read(Generator& G, Discriminator& D, const GanStepState& st);
  // Adds `by` (a difference of two reads; may be negative) to the networks' and optimizers' counters.
  static void add(Generator& G, Discriminator& D, GanStepState& st, const GanStepHostCounters& by);
  GanStepHostCounters minus(const GanStepHostCounters& o) const;
};

class CudaStepGraph {
 public:
  // enabled = false: every step eager. quiet: no notice on stderr when capture fails.
  CudaStepGraph(bool enabled, bool quiet);
  ~CudaStepGraph();
  CudaStepGraph(const CudaStepGraph&) = delete;
  CudaStepGraph& operator=(const CudaStepGraph&) = delete;

  // One step on the CUDA context's stream. `enqueue` enqueues the step's launches (it is called on
  // eager and capturing steps, never on replays). `fingerprint`: the device pointers the step uses.
  void run(const std::function<void()>& enqueue, Generator& G, Discriminator& D, GanStepState& st,
           const std::vector<const void*>& fingerprint);

  bool replaying() const { return graph_ != nullptr; }  // the next matching run() is a cudaGraphLaunch
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }  // why capture failed ("" if it did not)
  int64_t captures() const { return captures_; }
  int64_t replays() const { return replays_; }

 private:
  struct Graph;
  void capture(const std::function<void()>& enqueue, Generator& G, Discriminator& D, GanStepState& st,
               const std::vector<const void*>& fingerprint);
  void give_up(const std::string& why);
  bool enabled_, quiet_;
  bool warmed_up_ = false;
  std::unique_ptr<Graph> graph_;  // the instantiated graph (null: none yet, or dropped)
  std::vector<const void*> fingerprint_;
  uint64_t workspace_generation_ = 0;
  GanStepHostCounters delta_;  // what one captured step advanced on the host
  std::string failure_;
  int64_t captures_ = 0, replays_ = 0;
};

}  // namespace ds
