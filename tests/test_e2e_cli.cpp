// The darkstar command line as a user meets it, through the real binary: Ctrl-C/SIGTERM during train
// (checkpoint of the current step, exit 130/143, an exact resume), what --resume says and refuses,
// --version, unknown commands, listen's --out names and WAV headers, and the --data hint.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "audio/listen.h"
#include "audio/mel_params.h"
#include "audio/prepare_audio.h"
#include "engine/formats/npy.h"
#include "engine/core/rng.h"
#include "engine/formats/safetensors.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace ds;
using ds::test::contains;
using ds::test::fresh_dir;

namespace {

// 40 random 16×16 grey images (uint8): 10 batches of 4 per epoch, so runs cross epochs.
std::string write_noise_dataset(const fs::path& dir) {
  const int64_t count = 40, side = 16;
  std::vector<uint8_t> pixels(count * side * side);
  Philox rng(11, 0);
  for (uint8_t& p : pixels) p = static_cast<uint8_t>(rng.uniform() * 255.0);
  const std::string path = (dir / "noise.npy").string();
  write_npy(path, DType::U8, {count, 1, side, side}, pixels.data());
  return path;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs darkstar with `args` (split on spaces; no argument here contains one), waits, returns its exit
// status (-1 if it did not exit normally) and its stdout + stderr in *output.
int run_darkstar(const std::string& args, std::string* output) {
  static int calls = 0;
  const fs::path log = fs::path(DS_TEST_TMP) / ("cli_e2e_" + std::to_string(getpid()) + "_" + std::to_string(calls++) + ".txt");
  const std::string cmd = std::string(DS_DARKSTAR_EXE) + " " + args + " > " + log.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  *output = read_text(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A darkstar process started in the background with posix_spawn (stdout + stderr into `log`), so the
// test can signal it; killed and reaped if the test ends before waiting for it.
struct BackgroundDarkstar {
  pid_t pid = -1;
  BackgroundDarkstar(const std::vector<std::string>& args, const fs::path& log) {
    std::vector<std::string> argv_text{DS_DARKSTAR_EXE};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&files, STDOUT_FILENO, STDERR_FILENO);
    const int rc = posix_spawn(&pid, argv[0], &files, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&files);
    REQUIRE_MESSAGE(rc == 0, "posix_spawn " << DS_DARKSTAR_EXE << ": " << std::strerror(rc));
  }
  // Exit status, or 128 + signal if a signal ended it.
  int wait() {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  ~BackgroundDarkstar() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

size_t count_lines(const fs::path& path) {
  const std::string text = read_text(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// Waits until `path` has at least `lines` lines, i.e. the trainer has logged that many steps. The
// bound only keeps a broken run from hanging the suite; it asserts nothing about speed.
bool wait_for_lines(const fs::path& path, size_t lines, BackgroundDarkstar& process) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (std::chrono::steady_clock::now() < give_up) {
    if (fs::exists(path) && count_lines(path) >= lines) return true;
    int status = 0;
    if (waitpid(process.pid, &status, WNOHANG) == process.pid) {  // ended on its own: nothing to signal
      process.pid = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

int64_t checkpoint_step(const fs::path& state) {
  const SafeTensorsFile f = read_safetensors(state.string());
  return *reinterpret_cast<const int64_t*>(f.tensors.at("step").data.data());
}

// Every tensor of two training states, byte for byte (0 when the two states are identical).
int differing_tensors(const fs::path& a_path, const fs::path& b_path, int* compared) {
  const SafeTensorsFile a = read_safetensors(a_path.string());
  const SafeTensorsFile b = read_safetensors(b_path.string());
  REQUIRE(a.tensors.size() == b.tensors.size());
  int differing = 0;
  *compared = 0;
  for (const auto& [name, t] : a.tensors) {
    REQUIRE(b.tensors.count(name) == 1);
    INFO(name);
    CHECK(t.data == b.tensors.at(name).data);
    differing += t.data != b.tensors.at(name).data;
    ++*compared;
  }
  return differing;
}

const char* const kTinyModel = " --batch 4 --nz 8 --ngf 4 --ndf 4 --device cpu --sample-every 0";

}  // namespace

TEST_CASE("e2e cli signal: SIGINT during train saves the current step, exits 130 and resumes exactly") {
  const fs::path dir = fresh_dir("e2e_cli_sigint");
  const std::string data = write_noise_dataset(dir);
  const fs::path run = dir / "run", log = dir / "interrupted.txt";
  // Regular checkpoints off (not even step 0's): a last.safetensors can only come from the signal.
  BackgroundDarkstar train({"train", "--data", data, "--out", run.string(), "--steps", "1000000", "--batch", "4",
                            "--nz", "8", "--ngf", "4", "--ndf", "4", "--device", "cpu", "--sample-every", "0",
                            "--log-every", "1", "--checkpoint-every", "0"},
                           log);
  REQUIRE_MESSAGE(wait_for_lines(run / "log.jsonl", 3, train), read_text(log));
  REQUIRE(kill(train.pid, SIGINT) == 0);
  const int status = train.wait();
  const std::string out = read_text(log);
  INFO(out);
  CHECK(status == 130);
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex("stopped by SIGINT at step ([0-9]+) of 1000000: checkpoint (\\S+)")));
  const int64_t stopped_at = std::stoll(m[1]);
  CHECK(fs::equivalent(fs::path(m[2].str()), run / "last.safetensors"));
  CHECK(stopped_at >= 3);
  CHECK(checkpoint_step(run / "last.safetensors") == stopped_at);  // the step it says, and no other

  // Resume to 5 steps past the stop; a straight run of as many steps must be identical bit for bit.
  const std::string target = std::to_string(stopped_at + 5);
  std::string resumed;
  REQUIRE(run_darkstar("train --data " + data + " --out " + run.string() + " --steps " + target +
                           " --checkpoint-every 1000000 --log-every 1000000 --device cpu --sample-every 0 --resume",
                       &resumed) == 0);
  CHECK(contains(resumed, "resuming from step " + std::to_string(stopped_at) + " of " + target));
  std::string straight;
  REQUIRE(run_darkstar("train --data " + data + " --out " + (dir / "straight").string() + " --steps " + target +
                           kTinyModel + " --checkpoint-every 1000000 --log-every 1000000",
                       &straight) == 0);
  int compared = 0;
  CHECK(differing_tensors(run / "last.safetensors", dir / "straight" / "last.safetensors", &compared) == 0);
  CHECK(compared > 20);
  CHECK(checkpoint_step(run / "last.safetensors") == stopped_at + 5);
}

TEST_CASE("e2e cli signal: SIGTERM saves the current step between regular checkpoints and exits 143") {
  const fs::path dir = fresh_dir("e2e_cli_sigterm");
  const std::string data = write_noise_dataset(dir);
  const fs::path run = dir / "run", log = dir / "terminated.txt";
  BackgroundDarkstar train({"train", "--data", data, "--out", run.string(), "--steps", "1000000", "--batch", "4",
                            "--nz", "8", "--ngf", "4", "--ndf", "4", "--device", "cpu", "--sample-every", "0",
                            "--log-every", "1", "--checkpoint-every", "1000"},
                           log);
  REQUIRE_MESSAGE(wait_for_lines(run / "log.jsonl", 2, train), read_text(log));
  REQUIRE(kill(train.pid, SIGTERM) == 0);
  const int status = train.wait();
  const std::string out = read_text(log);
  INFO(out);
  CHECK(status == 143);
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex("stopped by SIGTERM at step ([0-9]+) of 1000000")));
  // The regular checkpoints are at 0 and 1000; the stop wrote its own step.
  CHECK(checkpoint_step(run / "last.safetensors") == std::stoll(m[1]));
  CHECK(fs::exists(run / "netG.safetensors"));
}

TEST_CASE("e2e cli resume: says where it resumes and when the run is done, refuses --steps below the checkpoint") {
  const fs::path dir = fresh_dir("e2e_cli_resume");
  const std::string data = write_noise_dataset(dir);
  const std::string run = (dir / "run").string();
  std::string out;
  REQUIRE(run_darkstar("train --data " + data + " --out " + run + " --steps 3 --checkpoint-every 3" + kTinyModel, &out) == 0);
  CHECK(contains(out, "done: step 3"));

  // Done already: with its own --steps, or none (then the checkpoint's own, 3).
  CHECK(run_darkstar("train --data " + data + " --out " + run + " --steps 3 --resume --device cpu", &out) == 0);
  CHECK(contains(out, "already done"));
  CHECK(contains(out, "at step 3 of 3"));
  CHECK(run_darkstar("train --data " + data + " --out " + run + " --resume --device cpu", &out) == 0);
  CHECK(contains(out, "at step 3 of 3"));
  CHECK_FALSE(contains(out, "step 0"));

  // Below the checkpoint: refused, naming both numbers; nothing trained, the checkpoint untouched.
  CHECK(run_darkstar("train --data " + data + " --out " + run + " --steps 2 --resume --device cpu", &out) != 0);
  CHECK(contains(out, "--steps 2"));
  CHECK(contains(out, "step 3"));
  CHECK(checkpoint_step(dir / "run" / "last.safetensors") == 3);

  REQUIRE(run_darkstar("train --data " + data + " --out " + run + " --steps 5 --resume --device cpu --sample-every 0",
                       &out) == 0);
  CHECK(contains(out, "resuming from step 3 of 5"));
  CHECK(contains(out, "done: step 5"));
  CHECK(checkpoint_step(dir / "run" / "last.safetensors") == 5);
}

TEST_CASE("e2e cli resume: the log, checkpoint and sample intervals come from the checkpoint unless given") {
  const fs::path dir = fresh_dir("e2e_cli_resume_intervals");
  const std::string data = write_noise_dataset(dir);
  const std::string run = (dir / "run").string();
  std::string out;
  // The first run samples every 3 steps (kTinyModel's model, without its --sample-every 0).
  REQUIRE(run_darkstar("train --data " + data + " --out " + run +
                           " --steps 4 --log-every 2 --checkpoint-every 4 --sample-every 3"
                           " --batch 4 --nz 8 --ngf 4 --ndf 4 --device cpu",
                       &out) == 0);
  REQUIRE(run_darkstar("train --data " + data + " --out " + run + " --steps 8 --resume --device cpu", &out) == 0);
  INFO(out);
  std::vector<int> steps;
  std::istringstream lines(read_text(dir / "run" / "log.jsonl"));
  std::string line;
  while (std::getline(lines, line)) steps.push_back(nlohmann::json::parse(line).at("step").get<int>());
  CHECK(steps == std::vector<int>{2, 4, 6, 8});  // the default --log-every 10 would have logged only 8
  CHECK(checkpoint_step(dir / "run" / "last.safetensors") == 8);
  CHECK(fs::exists(dir / "run" / "samples" / "step_0000006.png"));  // sampled at 6, as the first run would have
  // Given again, a flag wins: --log-every 1 logs 9 and 10.
  REQUIRE(run_darkstar("train --data " + data + " --out " + run + " --steps 10 --resume --device cpu --log-every 1",
                       &out) == 0);
  steps.clear();
  std::istringstream more(read_text(dir / "run" / "log.jsonl"));
  while (std::getline(more, line)) steps.push_back(nlohmann::json::parse(line).at("step").get<int>());
  CHECK(steps == std::vector<int>{2, 4, 6, 8, 9, 10});
}

TEST_CASE("e2e cli version and unknown commands: --version names the build, a typo names the real commands") {
  std::string out;
  REQUIRE(run_darkstar("--version", &out) == 0);
  INFO(out);
  CHECK(contains(out, "darkstar 0.1.0"));
  CHECK(contains(out, "built against CUDA "));
  CHECK(contains(out, "cuDNN "));
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex("git commit ([^)]+)\\)")));
  // A git checkout (as this test's source tree is, in CI and here) gives the 12-digit short hash.
  if (fs::exists(fs::path(DS_SOURCE_DIR) / ".git"))
    CHECK(std::regex_match(m[1].str(), std::regex("[0-9a-f]{12}")));
  else
    CHECK(m[1].str() == "unknown (not a git checkout)");

  CHECK(run_darkstar("trian --data x.npy", &out) != 0);
  CHECK(contains(out, "unknown command 'trian'; did you mean 'train'?"));
  for (const char* command : {"prepare-images", "prepare-audio", "train", "sample", "listen", "doctor"})
    CHECK(contains(out, command));
  CHECK(run_darkstar("lisen", &out) != 0);
  CHECK(contains(out, "did you mean 'listen'?"));
  CHECK(run_darkstar("prepare", &out) != 0);
  CHECK(contains(out, "did you mean 'prepare-images' or 'prepare-audio'?"));
  CHECK(run_darkstar("xyzzy", &out) != 0);
  CHECK(contains(out, "unknown command 'xyzzy'"));
  CHECK_FALSE(contains(out, "did you mean"));
}

TEST_CASE("e2e cli data hint: train --data on something that is not a .npy dataset points at prepare-*") {
  const fs::path dir = fresh_dir("e2e_cli_hint");
  std::ofstream(dir / "song.ogg") << "not a numpy file";
  std::string out;
  for (const fs::path& bad : {dir / "song.ogg", dir, dir / "missing.npy"}) {
    CHECK(run_darkstar("train --data " + bad.string() + " --out " + (dir / "run").string() + " --device cpu", &out) != 0);
    INFO(out);
    CHECK(contains(out, "--data " + bad.string()));
    CHECK(contains(out, "prepare-images"));
    CHECK(contains(out, "prepare-audio"));
  }
  CHECK_FALSE(fs::exists(dir / "run"));
}

TEST_CASE("e2e cli precision: train --precision bf16 on the CPU is refused naming the flag, writing nothing") {
  const fs::path dir = fresh_dir("e2e_cli_bf16");
  const std::string data = std::string(DS_SOURCE_DIR) + "/tests/fixtures/prealign/data.npy";
  std::string out;
  CHECK(run_darkstar("train --data " + data + " --out " + (dir / "run").string() + " --device cpu --precision bf16", &out) != 0);
  INFO(out);
  CHECK(contains(out, "--precision bf16"));
  CHECK(contains(out, "--device cuda"));
  CHECK_FALSE(fs::exists(dir / "run"));  // the refusal comes before the run folder is made
}

namespace {
// A tone with a vibrato, 6 s at 8 kHz → three 2 s slices, 32 mels × 64 frames (the layout of
// test_e2e_audio.cpp), and a generator trained 2 steps on them: enough for listen to run.
fs::path tiny_mel_checkpoint(const fs::path& dir) {
  const int sr = 8000;
  std::vector<float> tone(6 * sr);
  for (size_t i = 0; i < tone.size(); ++i) {
    const double t = double(i) / sr;
    tone[i] = static_cast<float>(0.4 * std::sin(2 * M_PI * (440 * t + 20 * std::sin(2 * M_PI * 3 * t))));
  }
  fs::create_directories(dir / "in");
  write_wav_float((dir / "in" / "tone.wav").string(), tone.data(), static_cast<int64_t>(tone.size()), sr);
  MelOverrides o;
  o.sr = sr;
  o.slice_seconds = 2.0;
  o.n_mels = 32;
  o.n_fft = 1024;
  o.frames = 64;
  PrepareAudioOptions po;
  po.mel = build_mel_params("default", o);
  po.progress = false;
  const fs::path npy = dir / "tone.npy";
  REQUIRE(prepare_audio((dir / "in").string(), npy.string(), po).count == 3);
  TrainConfig c;
  c.data_path = npy.string();
  c.out_dir = (dir / "run").string();
  c.model.nz = 8;
  c.model.ngf = 4;
  c.model.ndf = 4;
  c.batch = 2;
  c.n_samples = 2;
  c.steps = 2;
  c.sample_every = 0;
  c.checkpoint_every = 2;
  Trainer(c).run();
  return dir / "run" / "last.safetensors";
}

uint32_t u32_at(const std::vector<uint8_t>& b, size_t at) {
  return b[at] | b[at + 1] << 8 | b[at + 2] << 16 | uint32_t(b[at + 3]) << 24;
}
uint16_t u16_at(const std::vector<uint8_t>& b, size_t at) { return static_cast<uint16_t>(b[at] | b[at + 1] << 8); }

// The RIFF/WAVE header fields players and sox/ffmpeg check, read by hand (no library's leniency).
struct WavHeader {
  uint16_t format = 0, channels = 0, bits = 0, block_align = 0, subformat = 0;  // subformat: extensible only
  uint32_t fmt_size = 0, rate = 0, byte_rate = 0, data_size = 0, channel_mask = 0;
  bool riff_size_ok = false, data_fits = false, has_fact = false;
};
WavHeader read_wav_header(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(b.size() >= 44);
  REQUIRE(std::memcmp(b.data(), "RIFF", 4) == 0);
  REQUIRE(std::memcmp(b.data() + 8, "WAVE", 4) == 0);
  WavHeader h;
  h.riff_size_ok = u32_at(b, 4) == b.size() - 8;
  for (size_t at = 12; at + 8 <= b.size();) {
    const std::string id(reinterpret_cast<const char*>(b.data() + at), 4);
    const uint32_t size = u32_at(b, at + 4);
    if (id == "fmt ") {
      h.fmt_size = size;
      h.format = u16_at(b, at + 8);
      h.channels = u16_at(b, at + 10);
      h.rate = u32_at(b, at + 12);
      h.byte_rate = u32_at(b, at + 16);
      h.block_align = u16_at(b, at + 20);
      h.bits = u16_at(b, at + 22);
      if (h.format == 0xFFFE && size >= 40) {  // WAVEFORMATEXTENSIBLE: cbSize 22, valid bits, mask, GUID
        h.channel_mask = u32_at(b, at + 28);
        h.subformat = u16_at(b, at + 32);
      }
    } else if (id == "fact") {
      h.has_fact = true;
    } else if (id == "data") {
      h.data_size = size;
      h.data_fits = at + 8 + size <= b.size();
    }
    at += 8 + size + (size & 1);  // chunks are padded to even sizes
  }
  return h;
}
}  // namespace

TEST_CASE("e2e cli listen: --n with a .wav --out writes X_000.wav ..., the WAV headers are complete") {
  const fs::path dir = fresh_dir("e2e_cli_listen");
  const std::string ckpt = tiny_mel_checkpoint(dir).string();
  const std::string fast = " --gl-iters 2 --device cpu";
  std::string out;
  REQUIRE(run_darkstar("listen --checkpoint " + ckpt + " --n 2 --out " + (dir / "x.wav").string() + fast, &out) == 0);
  INFO(out);
  CHECK_FALSE(fs::exists(dir / "x.wav"));  // neither a folder nor a file of that name
  CHECK(fs::is_regular_file(dir / "x_000.wav"));
  CHECK(fs::is_regular_file(dir / "x_001.wav"));
  CHECK(fs::is_regular_file(dir / "x_000.png"));
  REQUIRE(run_darkstar("listen --checkpoint " + ckpt + " --n 1 --out " + (dir / "one.wav").string() + fast, &out) == 0);
  CHECK(fs::is_regular_file(dir / "one.wav"));
  REQUIRE(run_darkstar("listen --checkpoint " + ckpt + " --n 2 --out " + (dir / "gen").string() + fast, &out) == 0);
  CHECK(fs::is_regular_file(dir / "gen" / "000.wav"));
  CHECK(fs::is_regular_file(dir / "gen" / "001.wav"));

  // Refused with the flag named: one WAV expected, or a file where a folder is needed.
  CHECK(run_darkstar("listen --data " + (dir / "tone.npy").string() + " --out " + (dir / "real").string() + fast, &out) != 0);
  CHECK(contains(out, ".wav"));
  std::ofstream(dir / "taken.txt") << "a file";
  CHECK(run_darkstar("listen --checkpoint " + ckpt + " --n 2 --out " + (dir / "taken.txt").string() + fast, &out) != 0);
  CHECK(contains(out, "--out"));

  // Default: 16-bit PCM, every size field consistent (2 bytes per sample, 2 s at 8 kHz), extensible
  // with the mono channel mask (ffmpeg warns that it guesses the layout of a plain WAV).
  const WavHeader pcm = read_wav_header(dir / "one.wav");
  CHECK(pcm.format == 0xFFFE);  // WAVE_FORMAT_EXTENSIBLE
  CHECK(pcm.fmt_size == 40);
  CHECK(pcm.subformat == 1);     // KSDATAFORMAT_SUBTYPE_PCM
  CHECK(pcm.channel_mask == 4);  // SPEAKER_FRONT_CENTER
  CHECK(pcm.channels == 1);
  CHECK(pcm.rate == 8000);
  CHECK(pcm.bits == 16);
  CHECK(pcm.block_align == 2);
  CHECK(pcm.byte_rate == 16000);
  CHECK(pcm.data_size == 2 * 16000);
  CHECK(pcm.riff_size_ok);
  CHECK(pcm.data_fits);

  REQUIRE(run_darkstar("listen --data " + (dir / "tone.npy").string() + " --out " + (dir / "f.wav").string() +
                           " --wav-format float" + fast,
                       &out) == 0);
  const WavHeader f = read_wav_header(dir / "f.wav");
  CHECK(f.format == 3);  // WAVE_FORMAT_IEEE_FLOAT
  CHECK(f.fmt_size == 18);  // WAVEFORMATEX with cbSize: sox warns about a 16-byte one
  CHECK(f.has_fact);        // required for every non-PCM format by the RIFF spec
  CHECK(f.bits == 32);
  CHECK(f.block_align == 4);
  CHECK(f.byte_rate == 32000);
  CHECK(f.data_size == 4 * 16000);
  CHECK(f.riff_size_ok);
  REQUIRE(run_darkstar("listen --data " + (dir / "tone.npy").string() + " --out " + (dir / "p24.wav").string() +
                           " --wav-format pcm24" + fast,
                       &out) == 0);
  const WavHeader p24 = read_wav_header(dir / "p24.wav");
  CHECK(p24.subformat == 1);
  CHECK(p24.bits == 24);
  CHECK(p24.block_align == 3);
  CHECK(p24.data_size == 3 * 16000);
  CHECK(run_darkstar("listen --data " + (dir / "tone.npy").string() + " --out " + (dir / "b.wav").string() +
                         " --wav-format mp3" + fast,
                     &out) != 0);
  CHECK(contains(out, "--wav-format"));
}
