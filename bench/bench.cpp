// darkstar-bench: the DCGAN training step (D + G as trained) of named configurations on the CPU or on
// CUDA, with a per-layer table, the analytic FLOP count, peak memory and the machine's matrix rate
// measured in the same run, plus STFT + mel and Griffin-Lim throughput on real music.
// `--json FILE` writes it all (one object per configuration under "configs"); `--smoke` is CI's tiny
// run. On a shared CPU absolute times are noisy: compare ratios from one run.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/bench.h"
#include "engine/formats/atomic_file.h"
#include "engine/core/cuda_context.h"
#include "engine/core/precision.h"

using namespace ds;
using namespace ds::bench;

namespace {

const char* kDefaultSong = "/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg";

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// "HxW" → (H, W); throws naming the flag.
std::pair<int64_t, int64_t> parse_size(const std::string& s) {
  const size_t x = s.find('x');
  try {
    if (x != std::string::npos) return {std::stoll(s.substr(0, x)), std::stoll(s.substr(x + 1))};
  } catch (const std::exception&) {
  }
  throw std::invalid_argument("--size " + s + ": expected HxW, e.g. 64x64 or 128x512");
}

void print_config(const nlohmann::json& c) {
  std::printf("\n== %s on %s, %d thread(s): %lldx%lldx%lld, nz %lld, ngf %lld, ndf %lld, batch %lld\n",
              c["name"].get<std::string>().c_str(), c["device"].get<std::string>().c_str(), c["threads"].get<int>(),
              (long long)c["channels"], (long long)c["height"], (long long)c["width"], (long long)c["nz"],
              (long long)c["ngf"], (long long)c["ndf"], (long long)c["batch"]);
  const auto& st = c["step_ms"];
  std::printf("step: median %.2f ms (min %.2f, max %.2f over %d steps after %d warm-up): %.2f images/s\n",
              st["median"].get<double>(), st["min"].get<double>(), st["max"].get<double>(), c["timed_steps"].get<int>(),
              c["warmup_steps"].get<int>(), c["images_per_s"].get<double>());
  std::printf("FLOPs: %s\n", c["flop_count"]["formula"].get<std::string>().c_str());
  std::printf("  %-3s %-5s %-58s %16s %7s\n", "net", "stage", "layer", "MACs/image/pass", "passes");
  for (const auto& l : c["flop_count"]["layers"])
    std::printf("  %-3s %-5d %-58s %16lld %7d\n", l["net"].get<std::string>().c_str(), l["stage"].get<int>(),
                l["layer"].get<std::string>().c_str(), (long long)l["macs_per_image_per_pass"], l["passes_per_step"].get<int>());
  std::printf("  = %.4g FLOP per step (%.4g per image); achieved %.2f GFLOP/s = %.1f%% of the measured matrix peak %.2f GFLOP/s\n",
              c["flops_per_step"].get<double>(), c["flops_per_image"].get<double>(),
              c["achieved_flop_per_s"].get<double>() * 1e-9, 100 * c["fraction_of_matrix_peak"].get<double>(),
              c["matrix_peak_flop_per_s"].get<double>() * 1e-9);
  const auto& m = c["memory"];
  if (m.contains("peak_rss_bytes"))
    std::printf("peak RSS %.1f MiB\n", m["peak_rss_bytes"].get<double>() / (1 << 20));
  else
    std::printf("device memory %.1f MiB\n", m["peak_device_bytes"].get<double>() / (1 << 20));
  if (m.contains("engine_peak_bytes"))
    std::printf("engine buffers at most %.1f MiB at once (tensors, device buffers, workspace)\n",
                m["engine_peak_bytes"].get<double>() / (1 << 20));
  if (!c.value("layers_skipped", std::string()).empty())
    std::printf("per-layer table skipped: %s\n", c["layers_skipped"].get<std::string>().c_str());
  std::printf("per layer (ms per run; GFLOP/s):\n  %-3s %-2s %-58s %9s %9s %9s %7s %7s %7s %7s\n", "net", "#", "layer",
              "fwd", "bwd-data", "bwd-wgt", "BN fwd", "BN bwd", "act f", "act b");
  for (const auto& l : c["layers"]) {
    auto v = [&](const char* k) { return l.contains(k) ? l[k].get<double>() : 0.0; };
    std::printf("  %-3s %-2d %-58s %9.2f %9.2f %9.2f %7.2f %7.2f %7.2f %7.2f\n", l["net"].get<std::string>().c_str(),
                l["stage"].get<int>(), l["layer"].get<std::string>().c_str(), v("forward_ms"), v("backward_data_ms"),
                v("backward_filter_ms"), v("batchnorm_forward_ms"), v("batchnorm_backward_ms"),
                v("activation_forward_ms"), v("activation_backward_ms"));
    std::printf("  %-3s %-2s %-58s %9.1f %9.1f %9.1f\n", "", "", "  GFLOP/s", v("forward_flop_per_s") * 1e-9,
                v("backward_data_flop_per_s") * 1e-9, v("backward_filter_flop_per_s") * 1e-9);
  }
  const auto& b = c["step_breakdown_ms"];
  if (b.is_null()) return;
  std::printf("step breakdown (ms per step): conv fwd %.1f, bwd-data %.1f, bwd-weight %.1f, BN %.1f, act %.1f, loss %.2f, "
              "Adam %.2f, zero_grad %.2f; sum %.1f vs measured %.1f\n",
              b["conv_forward"].get<double>(), b["conv_backward_data"].get<double>(),
              b["conv_backward_filter"].get<double>(), b["batchnorm"].get<double>(), b["activations"].get<double>(),
              b["loss"].get<double>(), b["adam"].get<double>(), b["zero_grad"].get<double>(),
              b["sum_of_parts"].get<double>(), b["measured_step"].get<double>());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"darkstar-bench: the DCGAN training step, its layers, and audio throughput"};
  std::vector<std::string> configs;
  int64_t batch = 0, ngf = 0, ndf = 0;
  std::string size, device = "auto", json_path, song = kDefaultSong, precision = "tf32";
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int steps = 0, warmup = -1, layer_reps = -1, gemm_n = 0, gl_iters = 64;
  bool smoke = false, no_audio = false, no_gan = false, no_graph = false;
  app.add_option("--config", configs, "configuration (repeatable): dcgan64, mel128, mel128x512; all when absent");
  app.add_option("--batch", batch, "batch size (overrides the configuration's 64)");
  app.add_option("--ngf", ngf, "generator width (overrides 64)");
  app.add_option("--ndf", ndf, "discriminator width (overrides 64)");
  app.add_option("--size", size, "image size HxW (overrides the configuration's)");
  app.add_option("--device", device, "cpu, cuda or auto (cuda when a GPU is usable)");
  app.add_option("--precision", precision, "CUDA float32 math: tf32 (default) or fp32 (FMA only, no TF32); bf16 (CUDA only: bf16 activations and weight copies, float32 masters; the per-layer table times the float32 plans)");
  app.add_option("--threads", threads, "OpenBLAS and OpenMP threads (default: all cores)");
  app.add_option("--json", json_path, "write every figure to this JSON file");
  app.add_option("--steps", steps, "timed training steps per configuration (default 5 on the CPU, 20 on CUDA)");
  app.add_option("--warmup", warmup, "untimed steps first (default 2)");
  app.add_option("--layer-reps", layer_reps, "timed runs of each op in the per-layer table (default 3; 0 skips the table)");
  app.add_option("--gemm-n", gemm_n, "side of the square SGEMM that measures the matrix peak");
  app.add_option("--gl-iters", gl_iters, "Griffin-Lim iterations");
  app.add_option("--song", song, "real music for the audio figures");
  app.add_flag("--smoke", smoke, "tiny sizes and a few steps (CI: checks the output, not the times)");
  app.add_flag("--no-audio", no_audio, "skip the audio figures");
  app.add_flag("--no-gan", no_gan, "skip the training-step figures");
  app.add_flag("--no-graph", no_graph,
               "CUDA: launch every kernel of every timed step (default: the step captured once as a CUDA graph "
               "and replayed, as train does)");
  CLI11_PARSE(app, argc, argv);

  try {
    const CudaProbe& probe = probe_cuda();
    Device dev;
    if (device == "cpu") {
      dev = Device::CPU;
    } else if (device == "cuda") {
      if (!probe.available) throw std::runtime_error("--device cuda: no usable GPU (" + probe.reason + ")");
      dev = Device::CUDA;
    } else if (device == "auto") {
      dev = probe.available ? Device::CUDA : Device::CPU;
    } else {
      throw std::invalid_argument("--device " + device + ": expected cpu, cuda or auto");
    }
    if (threads < 1) throw std::invalid_argument("--threads must be >= 1");
    const Precision math = parse_precision(precision);
    apply_precision(math, dev);  // before the GEMM peak and the models: both follow it
    set_threads(threads);
    if (configs.empty()) configs = config_names();
    const bool cpu = dev == Device::CPU;
    if (!gemm_n) gemm_n = smoke ? 128 : (cpu ? 1536 : 8192);

    std::printf("darkstar-bench: %s, %d thread(s); CPU %s; GPU %s\n", device_name(dev), threads, cpu_model().c_str(),
                probe.available ? probe.device_name.c_str() : ("none (" + probe.reason + ")").c_str());
    nlohmann::json doc = {{"darkstar_bench", 1},
                          {"device", device_name(dev)},
                          {"threads", threads},
                          {"precision", precision_name(math)},
                          {"smoke", smoke},
                          {"machine", {{"cpu", cpu_model()},
                                       {"cores", std::thread::hardware_concurrency()},
                                       {"gpu", probe.available ? probe.device_name : ""},
                                       {"gpu_unavailable_reason", probe.available ? "" : probe.reason}}}};
    const nlohmann::json peak = measure_gemm_peak(dev, gemm_n, smoke ? 2 : (cpu ? 3 : 10));
    doc["matrix_peak"] = peak;
    std::printf("matrix peak: %s: %.1f GFLOP/s (median of %zu)\n", peak["what"].get<std::string>().c_str(),
                peak["flop_per_s"].get<double>() * 1e-9, peak["time_ms"]["samples"].size());

    GanRunOptions opt;
    opt.device = dev;
    opt.threads = threads;
    opt.warmup_steps = warmup >= 0 ? warmup : (smoke ? 1 : 2);
    opt.timed_steps = steps > 0 ? steps : (smoke ? 2 : (cpu ? 5 : 20));
    opt.layer_reps = layer_reps >= 0 ? layer_reps : (smoke ? 1 : 3);  // 0: no table (side_by_side.py)
    opt.cuda_graph = !no_graph;
    opt.matrix_peak_flops = peak["flop_per_s"].get<double>();
    doc["configs"] = nlohmann::json::array();
    if (!no_gan) {
      for (const std::string& name : configs) {
        GanConfig c = named_config(name);
        if (smoke) {  // a small network of the same shape family: 16 pixels on the short side (BN in both nets)
          const int64_t shrink = std::min(c.height, c.width) / 16;
          c.height /= shrink;
          c.width /= shrink;
          c.batch = 4;
          c.ngf = c.ndf = 4;
          c.nz = 8;
        }
        if (!size.empty()) std::tie(c.height, c.width) = parse_size(size);
        if (batch) c.batch = batch;
        if (ngf) c.ngf = ngf;
        if (ndf) c.ndf = ndf;
        if (c.batch < 2) throw std::invalid_argument("--batch must be >= 2 (batch norm needs two values per channel)");
        nlohmann::json r = bench_gan(c, opt);
        print_config(r);
        doc["configs"].push_back(r);
      }
    }

    if (!no_audio) {
      if (!std::filesystem::exists(song)) {
        std::printf("\naudio: skipped, %s not found (Debian's fretsonfire-songs-sectoid, apps/setup.sh installs it)\n",
                    song.c_str());
        doc["audio"] = {{"skipped", song + " not found"}};
      } else {
        AudioOptions ao;
        ao.device = dev;
        ao.griffin_lim_iters = smoke ? 2 : gl_iters;
        ao.griffin_lim_seconds = smoke ? 1.0 : 10.0;
        ao.mel_reps = smoke ? 1 : 3;
        ao.max_slices = smoke ? 1 : 0;
        const nlohmann::json a = bench_audio(song, ao);
        std::printf("\naudio on %s (%s, %lld slices of 10 s):\n  STFT + mel: %.2f ms per slice, %.0fx realtime\n"
                    "  Griffin-Lim (%d iterations, %.0f s): %.1f ms, %.1fx realtime\n",
                    device_name(dev), song.c_str(), (long long)a["slices"], a["mel"]["ms_per_slice"].get<double>(),
                    a["mel"]["x_realtime"].get<double>(), a["griffin_lim"]["iterations"].get<int>(),
                    a["griffin_lim"]["audio_seconds"].get<double>(), a["griffin_lim"]["time_ms"]["median"].get<double>(),
                    a["griffin_lim"]["x_realtime"].get<double>());
        if (a.contains("listen_batch")) {
          const nlohmann::json& b = a["listen_batch"];
          std::printf("  listen, %lld slices at once: Griffin-Lim %.0fx realtime; NNLS + Griffin-Lim %.0fx realtime\n",
                      (long long)b["slices"], b["griffin_lim_x_realtime"].get<double>(), b["x_realtime"].get<double>());
        }
        doc["audio"] = a;
      }
    }
    if (!json_path.empty()) {
      write_text_atomic(json_path, doc.dump(1) + "\n");
      std::printf("\nwrote %s\n", json_path.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "darkstar-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
