// CudaStepGraph (see step_graph.h): warm-up, capture, instantiate, replay, and the eager fallback.
//
// Sources (argument roles and rules, checked against CUDA 13.0's cuda_runtime_api.h comments):
//  * cudaStreamBeginCapture(stream, mode): "all operations pushed into the stream will not be
//    executed, but will instead be captured into a graph"; not on cudaStreamLegacy (the context's
//    stream is created cudaStreamNonBlocking, so legacy-stream work elsewhere does not join it); with a
//    mode other than Relaxed, EndCapture must come from the same thread.
//  * Modes (cudaThreadExchangeStreamCaptureMode, CUDA runtime API; also
//    https://docs.pytorch.org/docs/stable/generated/torch.cuda.graphs.graph.html "capture_error_mode"):
//    Global prohibits potentially unsafe calls (cudaMalloc, which is "not enqueued asynchronously to a
//    stream, and is not observed by stream capture", synchronous copies, stream/device synchronisation,
//    event queries on captured work) in every thread while any global capture is under way;
//    ThreadLocal only in the capturing thread; Relaxed nowhere. ThreadLocal here: a prohibited call in
//    the step invalidates the capture (then this falls back to eager launches), while another thread of
//    the process (an embedding application, say) is left alone. darkstar's own threads do no CUDA work
//    during a step (the TensorBoard audio worker inverts on the CPU: audio/tensorboard_audio.cpp).
//  * cudaStreamEndCapture(stream, &graph): "If capture was invalidated, due to a violation of the rules
//    of stream capture, then a NULL graph will be returned"; the stream is usable again afterwards.
//  * cudaGraphInstantiate(&exec, graph, flags): CUDA 12 replaced the (errNode, logBuffer, size) form
//    with flags (0: none of AutoFreeOnLaunch / DeviceLaunch / UseNodePriority, which concern memory
//    nodes, device launch and priorities; the step has none of them).
//  * cudaGraphLaunch(exec, stream): "Each launch is ordered behind both any previous work in stream and
//    any previous launches of graphExec", so the between-step copies enqueued on the same stream (epoch
//    orders, streamed batches) stay ordered with the replays exactly as with eager launches.
//  * The errors a failed capture leaves (cudaErrorStreamCaptureUnsupported / Invalidated / Implicit)
//    are not sticky: cudaGetLastError clears them, and later calls report their own errors.
// cuDNN: the legacy convolution calls run their kernels on the handle's stream (cudnnSetStream,
// engine/core/cuda_context.cpp), the workspace is the caller's (a pointer argument, reserved when the
// model is built: CudaContext::workspace never grows inside a step), and the algorithms were chosen with
// the heuristics at construction. NVIDIA's cuDNN documentation found (docs.nvidia.com/deeplearning/cudnn,
// legacy API and "Native CUDA Graph API" pages) does not promise capturability of the legacy calls;
// PyTorch captures them routinely after warm-up iterations (torch.cuda.graphs docs). Hence the eager
// warm-up step (lazy module loading and any first-call initialisation happen outside the capture) and
// the eager fallback when capture fails. cuBLAS is not called by the training step (only by the bench's
// peak GEMM, memorization and the mel projection), so no cublasSetWorkspace is needed for it.
#include "engine/train/step_graph.h"

#include <cstdio>
#include <stdexcept>

#include <cuda_runtime_api.h>

#include "engine/core/cuda_context.h"
#include "kernels/check.h"
#include "kernels/launch_log.h"

namespace ds {

GanStepHostCounters GanStepHostCounters::read(Generator& G, Discriminator& D, const GanStepState& st) {
  GanStepHostCounters c;
  c.adam_g = st.stepG.step();
  c.adam_d = st.stepD.step();
  for (const Stage& s : G.stages()) c.tracked_g.push_back(s.num_batches_tracked);
  for (const Stage& s : D.stages()) c.tracked_d.push_back(s.num_batches_tracked);
  return c;
}

GanStepHostCounters GanStepHostCounters::minus(const GanStepHostCounters& o) const {
  GanStepHostCounters d = *this;
  d.adam_g -= o.adam_g;
  d.adam_d -= o.adam_d;
  for (size_t i = 0; i < d.tracked_g.size(); ++i) d.tracked_g[i] -= o.tracked_g.at(i);
  for (size_t i = 0; i < d.tracked_d.size(); ++i) d.tracked_d[i] -= o.tracked_d.at(i);
  return d;
}

void GanStepHostCounters::add(Generator& G, Discriminator& D, GanStepState& st, const GanStepHostCounters& by) {
  st.stepG.mirror_device_advance(by.adam_g);
  st.stepD.mirror_device_advance(by.adam_d);
  std::vector<Stage>& g = G.stages();
  std::vector<Stage>& d = D.stages();
  for (size_t i = 0; i < g.size(); ++i) g[i].num_batches_tracked += by.tracked_g.at(i);
  for (size_t i = 0; i < d.size(); ++i) d[i].num_batches_tracked += by.tracked_d.at(i);
}

// RAII for the two handles (destroyed exec first: it was made from the graph).
struct CudaStepGraph::Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  ~Graph() {  // never throws; a failure here can only leak
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

CudaStepGraph::CudaStepGraph(bool enabled, bool quiet) : enabled_(enabled), quiet_(quiet) {}
CudaStepGraph::~CudaStepGraph() = default;

void CudaStepGraph::give_up(const std::string& why) {
  failure_ = why;
  graph_.reset();
  cudaGetLastError();  // the capture's errors are not sticky; later calls must not report them as theirs
  if (!quiet_) std::fprintf(stderr, "darkstar: CUDA graph capture failed (%s): training with eager launches\n", why.c_str());
}

void CudaStepGraph::run(const std::function<void()>& enqueue, Generator& G, Discriminator& D, GanStepState& st,
                        const std::vector<const void*>& fingerprint) {
  if (!enabled_ || failed()) {
    launch_log::StepScope scope;
    enqueue();
    return;
  }
  const uint64_t generation = CudaContext::get().workspace_generation();
  if (graph_ && (fingerprint != fingerprint_ || generation != workspace_generation_)) {
    graph_.reset();  // a buffer the graph points into moved: warm up and capture again
    warmed_up_ = false;
  }
  if (graph_) {
    cudaStream_t stream = CudaContext::get().stream();
    if (launch_log::LaunchLog* log = launch_log::active()) log->call("cudaGraphLaunch", stream, graph_->exec);
    DS_CUDA_CHECK(cudaGraphLaunch(graph_->exec, stream));
    GanStepHostCounters::add(G, D, st, delta_);
    ++replays_;
    return;
  }
  if (!warmed_up_) {  // first calls into cuDNN (module loading, lazy initialisation) outside any capture
    {
      launch_log::StepScope scope;
      enqueue();
    }
    warmed_up_ = true;
    return;
  }
  capture(enqueue, G, D, st, fingerprint);
}

void CudaStepGraph::capture(const std::function<void()>& enqueue, Generator& G, Discriminator& D, GanStepState& st,
                            const std::vector<const void*>& fingerprint) {
  CudaContext& ctx = CudaContext::get();
  cudaStream_t stream = ctx.stream();
  const GanStepHostCounters before = GanStepHostCounters::read(G, D, st);
  auto eager_instead = [&](const std::string& why) {
    // Nothing captured ran on the device: undo the host bookkeeping the capture did, then run the step.
    GanStepHostCounters::add(G, D, st, before.minus(GanStepHostCounters::read(G, D, st)));
    give_up(why);
    launch_log::StepScope scope;
    enqueue();
  };

  cudaError_t err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) return eager_instead(std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(err));
  std::string thrown;
  try {
    launch_log::StepScope scope;
    enqueue();
  } catch (const std::exception& e) {  // a launch or library call refused under capture: CudaError, CudnnError
    thrown = e.what();
  }
  auto graph = std::make_unique<Graph>();
  err = cudaStreamEndCapture(stream, &graph->graph);  // always ended: the stream must leave capture mode
  if (!thrown.empty()) return eager_instead(thrown);
  if (err != cudaSuccess || !graph->graph)
    return eager_instead(std::string("cudaStreamEndCapture: ") +
                         (err != cudaSuccess ? cudaGetErrorString(err) : "the capture was invalidated"));
  err = cudaGraphInstantiate(&graph->exec, graph->graph, 0);
  if (err != cudaSuccess) return eager_instead(std::string("cudaGraphInstantiate: ") + cudaGetErrorString(err));
  // The captured step has not run yet: this first launch runs it.
  err = cudaGraphLaunch(graph->exec, stream);
  if (err != cudaSuccess) return eager_instead(std::string("cudaGraphLaunch: ") + cudaGetErrorString(err));
  delta_ = GanStepHostCounters::read(G, D, st).minus(before);
  graph_ = std::move(graph);
  fingerprint_ = fingerprint;
  workspace_generation_ = ctx.workspace_generation();
  ++captures_;
}

}  // namespace ds
