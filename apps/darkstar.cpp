// The darkstar command line: parse flags, call the engine, report. Subcommands: prepare-images,
// prepare-audio, train, sample, listen, inspect (data, quality, memorization, swd, latent), report, doctor.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "apps/cli_support.h"
#include "audio/inspect_mel.h"
#include "audio/listen.h"
#include "audio/prepare_audio.h"
#include "audio/quality.h"
#include "audio/tensorboard_audio.h"
#include "engine/train/checkpoint.h"
#include "engine/core/cuda_context.h"
#include "engine/core/precision.h"
#include "apps/doctor.h"
#include "engine/data/image_dataset.h"
#include "engine/inspect/inspect_data.h"
#include "engine/inspect/memorization.h"
#include "engine/inspect/swd.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/npy_map.h"
#include "engine/train/swd_monitor.h"
#include "engine/inspect/latent.h"
#include "engine/inspect/report.h"
#include "engine/formats/npy.h"
#include "engine/formats/png.h"
#include "engine/core/rng.h"
#include "engine/train/step_dump.h"
#include "engine/train/run_folder.h"
#include "engine/train/trainer.h"

namespace fs = std::filesystem;
using namespace ds;

namespace {

// --device auto|cpu|cuda → a device; auto falls back to the CPU. Prints nothing: announce_device
// says which, once, when the command's work begins (not before an error about its input).
Device pick_device(const std::string& flag) {
  if (flag == "cpu") return Device::CPU;
  const CudaProbe& probe = probe_cuda();
  if (flag == "cuda") {
    if (!probe.available) throw std::runtime_error("--device cuda: no usable GPU (" + probe.reason + ")");
    return Device::CUDA;
  }
  return probe.available ? Device::CUDA : Device::CPU;
}

// One line on stderr, at most once per command: the GPU used, or why the CPU (--device auto only).
void announce_device(const std::string& flag) {
  static bool said = false;
  if (said || flag == "cpu") return;
  said = true;
  const CudaProbe& probe = probe_cuda();
  if (probe.available)
    std::fprintf(stderr, "darkstar: using GPU %s\n", probe.device_name.c_str());
  else
    std::fprintf(stderr, "darkstar: no usable GPU (%s): running on the CPU\n", probe.reason.c_str());
}

std::string format_duration(double seconds) {
  char buf[32];
  const long s = static_cast<long>(seconds + 0.5);
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

// On --resume, settings the user did not give on the command line come from the checkpoint, so
// `train --data X --out RUN --resume` continues the same run (to its own --steps unless given).
// Returns the checkpoint's step.
int64_t inherit_from_checkpoint(const CLI::App& train, TrainConfig& tc) {
  const std::string path = (fs::path(tc.out_dir) / "last.safetensors").string();
  if (!fs::exists(path)) throw std::runtime_error("--resume: no checkpoint at " + path);
  const SafeTensorsFile file = read_safetensors(path);
  auto it = file.metadata.find(kMetaTrain);
  if (it == file.metadata.end()) throw std::runtime_error(path + ": no training state metadata (not a last.safetensors)");
  const nlohmann::json saved = nlohmann::json::parse(it->second);
  auto given = [&](const char* flag) { return train.count(flag) > 0; };
  if (!given("--nz")) tc.model.nz = saved.at("model").at("nz");
  if (!given("--ngf")) tc.model.ngf = saved.at("model").at("ngf");
  if (!given("--ndf")) tc.model.ndf = saved.at("model").at("ndf");
  if (!given("--batch")) tc.batch = saved.at("batch");
  if (!given("--lr")) tc.adam.lr = saved.at("lr");
  if (!given("--lr-d")) tc.lr_d = saved.value("lr_d", 0.0);
  if (!given("--beta1")) tc.adam.beta1 = saved.at("beta1");
  if (!given("--beta2")) tc.adam.beta2 = saved.at("beta2");
  if (!given("--seed")) tc.seed = saved.at("seed");
  if (!given("--steps")) tc.steps = saved.at("steps");
  // The intervals too (a resume with other ones would log other steps: the log stays one run's).
  if (!given("--log-every")) tc.log_every = saved.value("log_every", tc.log_every);
  if (!given("--checkpoint-every")) tc.checkpoint_every = saved.value("checkpoint_every", tc.checkpoint_every);
  if (!given("--sample-every")) tc.sample_every = saved.value("sample_every", tc.sample_every);
  return *reinterpret_cast<const int64_t*>(file.get("step", DType::I64, {}).data.data());
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool ends_with_wav(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ends_with(s, ".wav");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"darkstar: a hand-written CUDA engine that trains DCGANs on pictures and mel spectrograms"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::function<std::string()>(cli::version_text),
                       "version, git commit, CUDA and cuDNN versions");

  // ---- prepare-images ----
  auto* prep = app.add_subcommand("prepare-images", "decode, centre-crop, resize and pack images into X.npy + X.json");
  std::string prep_in, prep_out;
  int prep_size = 64, prep_h = 0, prep_w = 0, prep_channels = 0;
  int64_t prep_limit = 0;
  prep->add_option("input", prep_in, "folder of JPEG/PNG/BMP/GIF images, or an IDX file (.gz ok)")->required();
  prep->add_option("--out", prep_out, "output .npy (a .json sidecar is written beside it)")->required();
  prep->add_option("--size", prep_size, "square output size, 4*2^k (default 64)");
  prep->add_option("--height", prep_h, "output height (overrides --size)");
  prep->add_option("--width", prep_w, "output width (overrides --size)");
  prep->add_option("--channels", prep_channels, "1 or 3 (default: 1 for IDX, 3 for folders)");
  prep->add_option("--limit", prep_limit, "keep at most this many images");

  // ---- prepare-audio ----
  auto* prepa = app.add_subcommand("prepare-audio", "decode, resample, slice and turn music into a mel dataset X.npy + X.json");
  std::string pa_in, pa_out, pa_preset = "default", pa_device = "auto";
  MelOverrides mo;
  double pa_hop = 0, pa_min_rms = std::numeric_limits<double>::quiet_NaN();
  bool pa_pad_tail = false, pa_htk = false;
  prepa->add_option("input", pa_in, "folder of audio files (searched recursively) or one file")->required();
  prepa->add_option("--out", pa_out, "output .npy (float16 N×1×H×W; a .json sidecar is written beside it)")->required();
  prepa->add_option("--preset", pa_preset, "default (128 mels × 512 frames per 10 s) or seed (the blog's 128×128)");
  prepa->add_option("--sr", mo.sr, "sample rate to resample to (default 22050)");
  prepa->add_option("--slice-seconds", mo.slice_seconds, "slice length (default 10)");
  prepa->add_option("--slice-hop", pa_hop, "seconds between slice starts (default: the slice length)");
  prepa->add_flag("--pad-tail", pa_pad_tail, "keep each file's last partial slice, zero-padded");
  prepa->add_option("--min-rms-db", pa_min_rms, "drop slices quieter than this RMS level (dBFS)");
  prepa->add_option("--n-mels", mo.n_mels, "mel bands (image height)");
  prepa->add_option("--n-fft", mo.n_fft, "FFT size");
  prepa->add_option("--hop", mo.hop, "STFT hop in samples");
  prepa->add_option("--frames", mo.frames, "frames per slice (image width)");
  prepa->add_option("--fmin", mo.fmin, "lowest mel frequency (Hz, default 0)");
  prepa->add_option("--fmax", mo.fmax, "highest mel frequency (Hz, default sr/2)");
  prepa->add_flag("--htk", pa_htk, "HTK mel scale instead of Slaney's");
  prepa->add_option("--mel-norm", mo.mel_norm, "slaney (default) or none");
  prepa->add_option("--pad-mode", mo.pad_mode, "constant (default, zeros) or reflect");
  prepa->add_option("--top-db", mo.top_db, "dynamic range kept below each slice's peak (default 80)");
  prepa->add_option("--ref", mo.ref, "fixed dB reference power instead of each slice's maximum");
  prepa->add_option("--device", pa_device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));

  // ---- train ----
  auto* train = app.add_subcommand("train", "train a DCGAN on a prepared dataset");
  TrainConfig tc;
  std::string train_device = "auto", train_device_data = "auto", train_precision = "tf32";
  train->add_option("--data", tc.data_path, "dataset .npy from prepare-images")->required();
  train->add_option("--out", tc.out_dir, "run folder (checkpoints, samples, log)")->required();
  train->add_option("--steps", tc.steps, "training steps (default 2000)");
  train->add_option("--minutes", tc.minutes, "time budget: stop (with a checkpoint) at the end of the first step past it")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--batch", tc.batch, "batch size (default 64)");
  train->add_option("--nz", tc.model.nz, "latent size (default 100)");
  train->add_option("--ngf", tc.model.ngf, "generator width (default 64)");
  train->add_option("--ndf", tc.model.ndf, "discriminator width (default 64)");
  train->add_option("--lr", tc.adam.lr, "Adam learning rate (default 2e-4)");
  train->add_option("--lr-d", tc.lr_d, "the discriminator's learning rate, if it should differ from --lr (default: --lr)")
      ->check(CLI::PositiveNumber);
  train->add_option("--beta1", tc.adam.beta1, "Adam beta1 (default 0.5)");
  train->add_option("--beta2", tc.adam.beta2, "Adam beta2 (default 0.999)");
  train->add_option("--seed", tc.seed, "seed of every random number (default 1)");
  train->add_option("--checkpoint-every", tc.checkpoint_every, "steps between checkpoints (default 500)");
  train->add_option("--sample-every", tc.sample_every, "steps between sample grids (default 200)");
  train->add_option("--log-every", tc.log_every, "steps between log lines (default 10)");
  train->add_option("--histogram-every", tc.histogram_every,
                    "steps between TensorBoard weight/gradient histograms, also at the last step (default 100; 0: none)");
  train->add_option("--device", train_device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  int64_t train_swd_every = kDefaultSwdEvery;
  train->add_option("--swd-every", train_swd_every,
                    "steps between sliced Wasserstein distances to a fixed data subset, logged (default " +
                        std::to_string(kDefaultSwdEvery) + "; 0: off; images of 16 px and more)")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--swd-images", tc.swd_images, "rows in that subset and generated images (default 256)")
      ->check(CLI::PositiveNumber);
  train->add_option("--precision", train_precision,
                    "CUDA float32 math: tf32 (default: TF32 tensor cores in cuDNN/cuBLAS on Ampere+) or fp32 (FMA only); "
                    "bf16 (CUDA only: bf16 activations and weight copies, float32 master weights and Adam state)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  train->add_flag("--resume", tc.resume, "continue from OUT/last.safetensors (Ctrl-C saves one and stops)");
  bool train_force = false;
  train->add_flag("--force", train_force,
                  "start over in an OUT that holds a run: deletes its checkpoints, log.jsonl, event files and "
                  "sample grids first (nothing else)");
  train->add_option("--device-data", train_device_data,
                    "CUDA: auto (default: resident when it fits), resident (dataset on the GPU) or stream (pinned, "
                    "double-buffered batch uploads)")
      ->check(CLI::IsMember({"auto", "resident", "stream"}));
  train->add_option("--dump", tc.dump_step,
                    "write every activation and gradient of step STEP as .npy into OUT/dump/step_NNNNNNN (index.json)")
      ->check(CLI::PositiveNumber);
  bool train_no_graph = false;  // issue 9: the CUDA step captured once and replayed unless --no-graph
  train->add_flag("--no-graph", train_no_graph,
                  "CUDA: launch every kernel of every step (default: capture the step once as a CUDA graph and "
                  "replay it; eager launches are also the fallback when capture fails)");

  // ---- sample ----
  auto* sample = app.add_subcommand("sample", "generate images from a checkpoint");
  std::string ckpt, sample_out, sample_z, sample_device = "auto";
  int64_t sample_n = 64;
  uint64_t sample_seed = 1;
  bool sample_batch_stats = false;
  sample->add_option("--checkpoint", ckpt, "netG.safetensors or last.safetensors")->required();
  sample->add_option("--out", sample_out, ".png (a grid, 8 per row) or .npy (float32 N×C×H×W in [-1, 1])")->required();
  sample->add_option("--n", sample_n, "how many images (default 64)");
  sample->add_option("--z", sample_z, "noise .npy, float32 (N, nz) or (N, nz, 1, 1), instead of random noise");
  sample->add_option("--seed", sample_seed, "noise seed (default 1)");
  sample->add_flag("--batch-stats", sample_batch_stats, "batch norm with batch statistics (train mode)");
  sample->add_option("--device", sample_device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));

  // ---- listen ----
  auto* listen = app.add_subcommand("listen", "turn mels back into sound: a real slice, generated slices or a latent walk");
  std::string li_ckpt, li_data, li_out, li_device = "auto";
  int64_t li_index = 0, li_n = 8;
  double li_walk = 0;
  ListenOptions lo;
  listen->add_option("--checkpoint", li_ckpt, "a checkpoint trained on a mel dataset (generated audio)");
  listen->add_option("--data", li_data, "a mel dataset .npy (round trip of a real slice)");
  listen->add_option("--index", li_index, "with --data: which slice (default 0)");
  listen->add_option("--n", li_n, "with --checkpoint: how many slices (default 8)");
  listen->add_option("--walk", li_walk, "with --checkpoint: seconds of continuous audio along a latent path");
  listen->add_option("--out", li_out, "a .wav (--data, --walk); a folder, or X.wav for X_000.wav ... (--n)")->required();
  listen->add_option("--gl-iters", lo.gl_iters, "Griffin-Lim iterations (default 64)");
  listen->add_option("--seed", lo.seed, "seed of the noise and the initial phases");
  listen->add_flag("--normalize", lo.normalize, "peak-normalise to -1 dBFS (default: the original level)");
  std::string li_wav_format = "pcm16";
  listen->add_option("--wav-format", li_wav_format, "pcm16 (default), pcm24 or float")
      ->check(CLI::IsMember({"pcm16", "pcm24", "float"}));
  listen->add_option("--device", li_device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  listen->add_option("--batch", lo.inversion_batch,
                     "on CUDA: slices inverted at once (NNLS + Griffin-Lim); default: what half the free GPU memory holds, at most 64")
      ->check(CLI::PositiveNumber);

  // ---- inspect (a group: `inspect data`, and other inspection tools beside it) ----
  auto* inspect = app.add_subcommand("inspect", "look at a dataset (or a run) before spending hours on it");
  inspect->require_subcommand(1);
  auto* inspect_data = inspect->add_subcommand("data", "count, shape, sources, levels, duplicates and a mosaic PNG of a dataset");
  std::string id_path;
  InspectOptions io;
  MelInspectOptions mio;
  inspect_data->add_option("dataset", id_path, "a dataset .npy from prepare-images or prepare-audio")->required();
  inspect_data->add_option("--out", io.mosaic_path, "mosaic PNG (default: X.mosaic.png beside X.npy)");
  inspect_data->add_option("--n", io.mosaic_count, "rows in the mosaic (default 64 images, 16 mel slices)")
      ->check(CLI::PositiveNumber);
  inspect_data->add_option("--bins", io.histogram_bins, "histogram bins (default 12)")->check(CLI::PositiveNumber);
  inspect_data->add_option("--blank-range", io.blank_range,
                           "images: near-blank when the pixel range is at most this (default 8 of 255)");
  inspect_data->add_option("--silent-db", mio.silent_db,
                           "mel: near-silent = this many dB below the median slice level (default 40)");
  auto* quality = inspect->add_subcommand("quality", "is a mel GAN's output music-like? five figures against its dataset");
  std::string q_ckpt, q_data, q_log;
  QualityOptions qo;
  quality->add_option("--checkpoint", q_ckpt, "a checkpoint trained on a mel dataset (netG or last.safetensors)")->required();
  quality->add_option("--data", q_data, "the mel dataset .npy it was trained on")->required();
  quality->add_option("--log", q_log, "the run's log.jsonl (default: beside the checkpoint)");
  quality->add_option("--n", qo.n_generated, "generated slices (default 64)");
  quality->add_option("--real", qo.n_real, "real slices in each of the two evenly spread sets (default 32)");
  quality->add_option("--seed", qo.listen.seed, "seed of the generated noise and the inversion's phases (default 0)");

  auto* memo = inspect->add_subcommand("memorization", "is the generator copying training items? nearest rows of its samples");
  std::string me_ckpt, me_data, me_out, me_device = "auto";
  MemorizationOptions meo;
  memo->add_option("--checkpoint", me_ckpt, "netG.safetensors or last.safetensors")->required();
  memo->add_option("--data", me_data, "the dataset .npy it was trained on")->required();
  memo->add_option("--out", me_out, "folder for samples.npy, neighbours.json, neighbours.png, summary.json")->required();
  memo->add_option("--samples", meo.samples, "generated samples K (default 64)")->check(CLI::PositiveNumber);
  memo->add_option("--neighbours", meo.neighbours, "nearest rows kept per sample k (default 5)")->check(CLI::PositiveNumber);
  memo->add_option("--heldout", meo.heldout, "held-out rows (default min(500, rows / 10))")->check(CLI::PositiveNumber);
  memo->add_option("--seed", meo.seed, "noise seed, as sample --seed (default 1)");
  memo->add_option("--device", me_device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  auto* swd_cmd = inspect->add_subcommand("swd", "sliced Wasserstein distance between two image sets (Karras et al. 2017)");
  std::string swd_a, swd_b, swd_json;
  int64_t swd_max = 1024;
  SwdOptions swo;
  swd_cmd->add_option("A", swd_a, "images .npy: a dataset (uint8 / float16) or float32 samples in [-1, 1]")->required();
  swd_cmd->add_option("B", swd_b, "images .npy of the same C×H×W")->required();
  swd_cmd->add_option("--max-images", swd_max, "images per set: min(this, |A|, |B|), a fixed-seed subset of a larger set (default 1024)")
      ->check(CLI::PositiveNumber);
  swd_cmd->add_option("--seed", swo.seed, "seed of the subsets, patch positions and directions (default 0)");
  swd_cmd->add_option("--json", swd_json, "also write the figures to this JSON file");
  auto* latent = inspect->add_subcommand("latent", "slerp interpolation grids and per-dimension sweeps of a generator");
  std::string lat_ckpt, lat_out, lat_dims, lat_device = "auto";
  LatentOptions lat;
  latent->add_option("--checkpoint", lat_ckpt, "netG.safetensors or last.safetensors")->required();
  latent->add_option("--out", lat_out, "output folder (PNG grids, images and z as .npy, latent.json)")->required();
  latent->add_option("--pairs", lat.pairs, "interpolation rows, one pair of fixed-seed z each (default 4; 0: none)");
  latent->add_option("--steps", lat.steps, "images per row, endpoints included (default 8)");
  latent->add_option("--dims", lat_dims, "sweep dimensions d1,d2,... (default 0..7; 'none': no sweep)");
  latent->add_option("--range", lat.range, "sweep each dimension from -a to a (default 3)");
  latent->add_option("--seed", lat.seed, "seed of the fixed z (default 1)");
  latent->add_option("--device", lat_device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  // ---- report ----
  auto* report = app.add_subcommand("report", "write RUN/report.html: curves, sample grids, audio players, config, in one offline page");
  std::string report_run;
  report->add_option("run", report_run, "a run folder (the --out of train)")->required();

  // ---- doctor ----
  auto* doctor = app.add_subcommand("doctor", "check this machine: every CUDA op against the CPU reference");
  bool doctor_probe = false;
  doctor->add_flag("--probe", doctor_probe, "only say whether a usable GPU exists (exit 0 if so, 1 if not)");

  // An unknown command names itself and the real ones (CLI11 alone would only say "not expected").
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> commands;
    for (const CLI::App* sub : app.get_subcommands({})) commands.push_back(sub->get_name());
    if (std::find(commands.begin(), commands.end(), argv[1]) == commands.end()) {
      std::fprintf(stderr, "darkstar: %s\n", cli::unknown_command_message(argv[1], commands).c_str());
      return 1;
    }
  }
  CLI11_PARSE(app, argc, argv);

  try {
    if (*prep) {
      const int h = prep_h ? prep_h : prep_size, w = prep_w ? prep_w : prep_size;
      check_dcgan_size(h, prep_h ? "--height" : "--size");
      check_dcgan_size(w, prep_w ? "--width" : "--size");
      const bool idx = fs::is_regular_file(prep_in);
      const int channels = prep_channels ? prep_channels : (idx ? 1 : 3);
      if (channels != 1 && channels != 3)
        throw std::invalid_argument("--channels " + std::to_string(channels) + ": expected 1 or 3");
      PrepareImagesOptions opt;
      opt.limit = prep_limit;
      const PrepareImagesResult r = prepare_images(prep_in, prep_out, h, w, channels, opt);
      std::printf("wrote %s: %lld images %dx%dx%d (%lld skipped), sidecar %s\n", prep_out.c_str(),
                  static_cast<long long>(r.count), channels, h, w, static_cast<long long>(r.skipped),
                  r.sidecar_path.c_str());
    } else if (*prepa) {
      if (pa_htk) mo.htk = true;
      PrepareAudioOptions opt;
      opt.mel = build_mel_params(pa_preset, mo);
      opt.preset = pa_preset;
      opt.slice_hop_seconds = pa_hop;
      opt.pad_tail = pa_pad_tail;
      opt.min_rms_db = pa_min_rms;
      opt.device = pick_device(pa_device);
      if (std::error_code ec; !fs::exists(pa_in, ec)) throw std::runtime_error(pa_in + ": no such file or folder");
      announce_device(pa_device);
      const PrepareAudioResult r = prepare_audio(pa_in, pa_out, opt);
      std::printf("wrote %s: %lld slices %dx%d written, %lld silent slices dropped; files: %lld read (%lld partly "
                  "decoded), %lld skipped, of %lld; %.2f h of audio decoded; in %.1f s; sidecar %s\n",
                  r.npy_path.c_str(), static_cast<long long>(r.count), r.height, r.width,
                  static_cast<long long>(r.dropped_silent), static_cast<long long>(r.files_read),
                  static_cast<long long>(r.partly_decoded.size()), static_cast<long long>(r.skipped.size()),
                  static_cast<long long>(r.files_total), r.audio_seconds / 3600, r.wall_seconds, r.sidecar_path.c_str());
    } else if (*listen) {
      if (li_ckpt.empty() == li_data.empty())
        throw std::invalid_argument("listen: give exactly one of --checkpoint and --data");
      if ((!li_data.empty() || li_walk > 0) && !ends_with_wav(li_out))
        throw std::invalid_argument("--out " + li_out + ": listen " + (li_data.empty() ? "--walk" : "--data") +
                                    " writes one WAV file; give a name ending in .wav");
      lo.wav_format = parse_wav_format(li_wav_format);
      lo.device = pick_device(li_device);
      auto report = [&](const ListenResult& r) {
        announce_device(li_device);  // with the first file written: the checkpoint or data has loaded
        const bool clipped = r.peak > 1.0 && lo.wav_format != WavFormat::Float;
        std::printf("wrote %s (%.2f s at %d Hz, peak %.3f%s)%s%s; spectral convergence %.4f\n", r.wav_path.c_str(),
                    double(r.samples) / r.sample_rate, r.sample_rate, r.peak,
                    clipped ? ", clipped at full scale: --normalize or --wav-format float keep it" : "",
                    r.png_path.empty() ? "" : " and ", r.png_path.c_str(), r.spectral_convergence);
      };
      if (!li_data.empty()) {
        report(listen_slice(li_data, li_index, li_out, lo));
      } else if (li_walk > 0) {
        report(listen_walk(li_ckpt, li_walk, li_out, lo));
      } else {
        for (const ListenResult& r : listen_generated(li_ckpt, li_n, li_out, lo)) report(r);
      }
    } else if (*train) {
      // Before anything else: a run already in --out is continued (--resume) or replaced (--force), never
      // mixed with a new one (engine/train/run_folder.h).
      const RunFolderFiles previous_run = find_run_files(tc.out_dir);
      check_run_folder_choice(tc.out_dir, previous_run, tc.resume, train_force);
      cli::check_dataset_file("--data", tc.data_path);
      int64_t resumed_at = 0;
      if (tc.resume) {
        const int64_t at = inherit_from_checkpoint(*train, tc);
        resumed_at = at;
        const std::string ckpt_path = (fs::path(tc.out_dir) / "last.safetensors").string();
        if (tc.steps < at)
          throw std::invalid_argument("--steps " + std::to_string(tc.steps) + " is below the checkpoint's step " +
                                      std::to_string(at) + " (" + ckpt_path + "); give --steps " + std::to_string(at) +
                                      " or more to continue, or a new --out to start over");
        if (tc.steps == at) {
          std::printf("already done: %s is at step %lld of %lld; nothing to train (a larger --steps trains on)\n",
                      ckpt_path.c_str(), static_cast<long long>(at), static_cast<long long>(tc.steps));
          return 0;
        }
      }
      if (tc.dump_step > 0) check_dump_request(tc.out_dir, tc.dump_step, tc.steps, resumed_at);
      tc.device = pick_device(train_device);
      // Before the folder check (which creates --out): a refused precision leaves nothing behind.
      apply_precision(parse_precision(train_precision), tc.device);  // before the models' cuDNN plans
      check_run_folder_writable(tc.out_dir);  // names the folder now, not at the first checkpoint
      if (train->count("--swd-every") || train_swd_every == 0) {
        tc.swd_every = train_swd_every;  // asked for: images too small for the SWD are an error
      } else if (tc.device == Device::CUDA) {
        // The SWD runs on the CPU: at 128×512 one measurement costs minutes of CPU against milliseconds
        // per GPU step, so on CUDA it is logged only when asked for.
        tc.swd_every = 0;
        std::printf("SWD not logged on CUDA unless asked for (it runs on the CPU): --swd-every N logs it\n");
      } else {  // the CPU default: on where the images allow it
        const ImageDataset shape = load_image_dataset(tc.data_path);
        tc.swd_every = swd_level_count(shape.height, shape.width, SwdOptions{}.min_resolution) > 0 ? train_swd_every : 0;
      }
      cli::install_stop_handlers();
      tc.device_data = parse_device_data(train_device_data);
      tc.cuda_graph = !train_no_graph;
      Trainer trainer(tc);
      // Mel datasets: generated clips as TensorBoard audio, inverted on a worker thread (outlives run()).
      const std::unique_ptr<MelAudioPreview> audio_preview = mel_audio_preview_for(tc.data_path);
      if (audio_preview) trainer.set_sample_hook(audio_preview->hook());
      announce_device(train_device);
      // Only now, with the dataset and model checked: the earlier run's files go, or its killed writes' temps.
      if (train_force && !previous_run.files.empty()) {
        remove_run_files(tc.out_dir, previous_run);
        std::printf("--force: deleted the earlier run's files in %s: %s\n", tc.out_dir.c_str(),
                    summarize_run_files(previous_run).c_str());
      }
      if (tc.resume)
        if (const std::vector<std::string> stale = remove_stale_temp_files(tc.out_dir); !stale.empty())
          std::printf("deleted %zu temp file(s) left by an interrupted write (%s ...)\n", stale.size(),
                      stale[0].c_str());
      if (tc.resume)
        std::printf("resuming from step %lld of %lld (%s)\n", static_cast<long long>(trainer.current_step()),
                    static_cast<long long>(tc.steps), trainer.last_checkpoint_path().c_str());
      std::printf("training on %s: %s, batch %lld, %lld steps, run folder %s\n", device_name(tc.device),
                  tc.data_path.c_str(), static_cast<long long>(tc.batch), static_cast<long long>(tc.steps),
                  tc.out_dir.c_str());
      std::fflush(stdout);
      const StepStats last = trainer.run([&](const StepStats& s) {
        std::printf("[%lld/%lld] Loss_D: %.4f Loss_G: %.4f D(x): %.4f D(G(z)): %.4f / %.4f  %.1f img/s  ETA %s\n",
                    static_cast<long long>(s.step), static_cast<long long>(tc.steps), s.loss_d, s.loss_g, s.d_x,
                    s.d_g_z1, s.d_g_z2, s.images_per_second, format_duration(s.eta_seconds).c_str());
        std::fflush(stdout);
      }, cli::stop_signal());
      if (trainer.stopped_on_time_budget())
        std::printf("stopped: the --minutes %g budget ran out at step %lld of %lld\n", tc.minutes,
                    static_cast<long long>(last.step), static_cast<long long>(tc.steps));
      if (last.stopped) {
        const int signal = *cli::stop_signal();
        std::printf("stopped by %s at step %lld of %lld: checkpoint %s (continue with the same command and --resume)\n",
                    cli::signal_name(signal), static_cast<long long>(last.step), static_cast<long long>(tc.steps),
                    trainer.last_checkpoint_path().c_str());
        return 128 + signal;
      }
      std::printf("done: step %lld; checkpoints %s/{netG,netD,last}.safetensors; samples in %s/samples/\n",
                  static_cast<long long>(last.step), tc.out_dir.c_str(), tc.out_dir.c_str());
    } else if (*sample) {
      const Device dev = pick_device(sample_device);
      std::vector<float> z;
      if (!sample_z.empty()) {
        const NpyArray arr = read_npy(sample_z);
        if (arr.dtype != DType::F32 || (arr.shape.size() != 2 && arr.shape.size() != 4) ||
            (arr.shape.size() == 4 && (arr.shape[2] != 1 || arr.shape[3] != 1)))
          throw std::runtime_error(sample_z + ": expected float32 noise of shape (N, nz) or (N, nz, 1, 1)");
        sample_n = arr.shape[0];
        z.assign(arr.as<float>(), arr.as<float>() + arr.numel());
      }
      if (sample_n < 1) throw std::invalid_argument("--n must be >= 1");
      LoadedGenerator lg = load_generator(ckpt, sample_n, dev);
      announce_device(sample_device);
      const ModelConfig& mc = lg.model;
      if (z.empty()) {
        z.resize(sample_n * mc.nz);
        Philox(sample_seed, 5).fill_normal(z.data(), 0.f, 1.f, static_cast<int64_t>(z.size()));
      } else if (static_cast<int64_t>(z.size()) != sample_n * mc.nz) {
        throw std::runtime_error(sample_z + ": noise has " + std::to_string(z.size() / sample_n) +
                                 " values per row; this checkpoint's nz is " + std::to_string(mc.nz));
      }
      Tensor zt = Tensor::from_host(z, {sample_n, mc.nz, 1, 1}, dev);
      lg.generator->forward(zt, sample_batch_stats);
      const std::vector<float> images = lg.generator->output().to_host();
      if (ends_with(sample_out, ".npy")) {
        write_npy(sample_out, DType::F32, {sample_n, mc.channels, mc.height, mc.width}, images.data());
      } else {
        write_png_grid(sample_out, images.data(), static_cast<int>(sample_n), static_cast<int>(mc.channels),
                       static_cast<int>(mc.height), static_cast<int>(mc.width), 8);
      }
      std::printf("wrote %s: %lld images %lldx%lldx%lld\n", sample_out.c_str(), static_cast<long long>(sample_n),
                  static_cast<long long>(mc.channels), static_cast<long long>(mc.height),
                  static_cast<long long>(mc.width));
    } else if (*inspect_data) {
      const ImageDataset data = load_image_dataset(id_path);
      const std::string text = is_mel_sidecar(data.sidecar_json)
                                   ? inspect_mel_dataset(data, read_mel_info_for(id_path), io, mio).text
                                   : inspect_image_dataset(data, io).text;
      std::fputs(text.c_str(), stdout);
    } else if (*memo) {
      meo.device = pick_device(me_device);
      announce_device(me_device);
      const MemorizationReport r = run_memorization(me_ckpt, me_data, me_out, meo);
      std::printf("%lld samples of %s in eval mode (batch norm running statistics, as the sample grids), seed %llu\n"
                  "%s\nwrote %s/{samples.npy,neighbours.json,neighbours.png,summary.json}\n",
                  static_cast<long long>(meo.samples), me_ckpt.c_str(), static_cast<unsigned long long>(meo.seed),
                  r.verdict.c_str(), me_out.c_str());
    } else if (*swd_cmd) {
      int64_t na = 0, nb = 0, c = 0, h = 0, w = 0, c2 = 0, h2 = 0, w2 = 0;
      read_image_set(swd_a, &na, &c, &h, &w, {0});  // shapes first (one row each)
      read_image_set(swd_b, &nb, &c2, &h2, &w2, {0});
      {
        const MappedNpy fa(swd_a), fb(swd_b);
        na = fa.shape()[0];
        nb = fb.shape()[0];
      }
      if (c != c2 || h != h2 || w != w2)
        throw std::invalid_argument(swd_a + " holds " + std::to_string(c) + "×" + std::to_string(h) + "×" +
                                    std::to_string(w) + " images, " + swd_b + " " + std::to_string(c2) + "×" +
                                    std::to_string(h2) + "×" + std::to_string(w2) + ": expected the same shape");
      const int64_t n = std::min({na, nb, swd_max});
      int64_t got = 0;
      const std::vector<float> a = read_image_set(swd_a, &got, &c, &h, &w, fixed_subset(na, n, swo.seed, 10));
      const std::vector<float> b = read_image_set(swd_b, &got, &c, &h, &w, fixed_subset(nb, n, swo.seed, 11));
      const SwdResult r = sliced_wasserstein_distance({a.data(), n, c, h, w}, {b.data(), n, c, h, w}, swo);
      std::string levels;
      nlohmann::json jl = nlohmann::json::array();
      for (size_t l = 0; l < r.levels.size(); ++l) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s%lldx%lld %.3f", l ? ", " : "", static_cast<long long>(r.heights[l]),
                      static_cast<long long>(r.widths[l]), r.levels[l]);
        levels += buf;
        jl.push_back({{"height", r.heights[l]}, {"width", r.widths[l]}, {"swd", r.levels[l]}});
      }
      std::printf("SWD x1e3 (Karras et al. 2017; 7x7 patches, %lld per image per level, 512 directions), %lld images "
                  "per set (of %lld and %lld), %lld descriptors per level, finest first: %s; mean %.3f\n",
                  static_cast<long long>(swo.patches_per_image), static_cast<long long>(n), static_cast<long long>(na), static_cast<long long>(nb),
                  static_cast<long long>(r.descriptors), levels.c_str(), r.mean);
      if (!swd_json.empty())
        write_text_atomic(swd_json, nlohmann::json{{"a", swd_a}, {"b", swd_b}, {"images", n}, {"levels", jl},
                                                   {"swd_levels", r.levels}, {"swd_mean", r.mean}}.dump(2) + "\n");
    } else if (*quality) {
      if (qo.n_generated < 2) throw std::invalid_argument("--n " + std::to_string(qo.n_generated) + ": expected at least 2");
      if (qo.n_real < 2) throw std::invalid_argument("--real " + std::to_string(qo.n_real) + ": expected at least 2");
      const QualityReport r = assess_quality(q_ckpt, q_data, q_log, qo);
      std::printf("%s", r.text().c_str());
      return r.all_pass() ? 0 : 3;
    } else if (*latent) {
      lat.no_sweep = lat_dims == "none";
      if (!lat.no_sweep && !lat_dims.empty()) lat.dims = parse_latent_dims(lat_dims);
      lat.device = pick_device(lat_device);
      announce_device(lat_device);
      const LatentResult r = inspect_latent(lat_ckpt, lat_out, lat);
      for (const std::string& f : r.written) std::printf("wrote %s\n", f.c_str());
    } else if (*report) {
      const ReportSummary r = write_run_report(report_run);
      std::printf("wrote %s: %lld logged steps, %zu sample grids (%zu left out), %zu audio clips (%zu skipped)%s\n",
                  r.html_path.c_str(), static_cast<long long>(r.log_steps), r.grids_shown.size(),
                  r.grids_left_out.size(), r.audio_shown.size(), r.audio_skipped.size(),
                  r.missing.empty() ? "" : "; the page lists what is missing");
    } else if (*doctor) {
      if (doctor_probe) {
        const CudaProbe& p = probe_cuda();
        std::printf("%s\n", p.available ? ("GPU: " + p.device_name).c_str() : ("no usable GPU: " + p.reason).c_str());
        return p.available ? 0 : 1;
      }
      return run_doctor(stdout) ? 0 : 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "darkstar: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
