// kill -9 at seeded-random moments of a real `darkstar train` (checkpoint every step, so many kills land
// inside a checkpoint's write): after each kill the files a resume reads load and `--resume` continues;
// at the end the run's final checkpoint is bit-identical to an uninterrupted run's (CPU, one thread).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/train/checkpoint.h"
#include "engine/train/run_folder.h"
#include "tests/e2e_run_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using namespace ds::test;

namespace {

// darkstar started with posix_spawn, one thread for OpenBLAS and OpenMP (both runs round alike, and the
// test costs one core), stdout + stderr into `log`; SIGKILLed and reaped if the test ends first.
struct Spawned {
  pid_t pid = -1;
  Spawned(const std::vector<std::string>& args, const fs::path& log) {
    std::vector<std::string> argv_text{DS_DARKSTAR_EXE};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_text{"OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1"};
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "OPENBLAS_NUM_THREADS=", 21) != 0 && std::strncmp(*e, "OMP_NUM_THREADS=", 16) != 0)
        env_text.emplace_back(*e);
    std::vector<char*> envp;
    for (std::string& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&files, STDOUT_FILENO, STDERR_FILENO);
    const int rc = posix_spawn(&pid, argv[0], &files, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&files);
    REQUIRE_MESSAGE(rc == 0, "posix_spawn " << DS_DARKSTAR_EXE << ": " << std::strerror(rc));
  }
  bool exited() {  // without blocking; reaps it
    int status = 0;
    if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) pid = -1;
    return pid < 0;
  }
  // Exit status, or 128 + signal.
  int wait() {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  ~Spawned() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

size_t line_count(const fs::path& path) {
  const std::string text = read_whole(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST_CASE("e2e kill -9: a train killed at random moments, checkpoint writes included, resumes to a bit-identical end") {
  const fs::path dir = fresh_dir("e2e_kill");
  const std::string data = write_tiny_dataset(dir);
  const fs::path run = dir / "run", straight = dir / "straight";
  // Enough steps that 14 kills (each costs ~1–3 steps) never reach the end on a fast idle machine (~8 steps in 80 ms there): at 40
  // an idle 2-core machine finished after 5 kills.
  const int64_t target = 400;
  // A checkpoint every step (three atomic writes, each with two fsyncs): a good part of a step's time
  // is spent inside a write. Sample grids every 5 steps add PNG writes.
  const std::vector<std::string> flags{"--data", data, "--steps", std::to_string(target), "--batch", "4", "--nz", "8",
                                       "--ngf", "4", "--ndf", "4", "--device", "cpu", "--sample-every", "5",
                                       "--log-every", "1", "--checkpoint-every", "1"};
  {
    std::vector<std::string> args{"train", "--out", straight.string()};
    args.insert(args.end(), flags.begin(), flags.end());
    Spawned s(args, dir / "straight.txt");
    REQUIRE_MESSAGE(s.wait() == 0, read_whole(dir / "straight.txt"));
  }

  std::mt19937 rng(20261201);  // the seed fixes every delay
  // A step here is ~35 ms, most of it the checkpoint's fsyncs; a kill up to ~2 steps after a new log line.
  std::uniform_int_distribution<int> startup_delay_us(0, 400000), write_delay_us(0, 80000);
  const int kills = 14;
  int killed = 0, during_startup = 0, left_temp_files = 0, finished_early = 0;
  int64_t last_step = -1;
  for (int k = 0; k < kills; ++k) {
    // What the folder needs: nothing at first; --resume once it holds a checkpoint; --force when a
    // kill came before the very first checkpoint (a run with no state, which --resume refuses).
    const RunFolderFiles before = find_run_files(run.string());
    std::vector<std::string> args{"train", "--out", run.string()};
    args.insert(args.end(), flags.begin(), flags.end());
    if (before.has_state) args.push_back("--resume");
    else if (!before.files.empty()) args.push_back("--force");
    const size_t lines_before = fs::exists(run / "log.jsonl") ? line_count(run / "log.jsonl") : 0;
    const fs::path log = dir / ("kill_" + std::to_string(k) + ".txt");
    Spawned train(args, log);
    // Every third kill at any moment of the start (loading, the folder checks, the first writes);
    // the others once the process has logged a new step, after a random delay of up to ~2 steps:
    // inside that step's checkpoint writes, the next step's compute, or its writes.
    if (k % 3 == 0) {
      ++during_startup;
      std::this_thread::sleep_for(std::chrono::microseconds(startup_delay_us(rng)));
    } else {
      // The bound only keeps a broken run from hanging the suite; it asserts nothing about speed.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(2);
      while (!train.exited() && std::chrono::steady_clock::now() < give_up &&
             (!fs::exists(run / "log.jsonl") || line_count(run / "log.jsonl") <= lines_before))
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      std::this_thread::sleep_for(std::chrono::microseconds(write_delay_us(rng)));
    }
    if (train.exited()) {  // it reached the end before the kill: nothing left to interrupt
      ++finished_early;
      break;
    }
    REQUIRE(kill(train.pid, SIGKILL) == 0);
    CHECK(train.wait() == 128 + SIGKILL);
    ++killed;
    const std::string out = read_whole(log);
    INFO("kill " << k << ": " << out);
    left_temp_files += !temp_files_under(run).empty();
    // The files a resume and `sample` read load, and the state never goes back.
    if (fs::exists(run / "last.safetensors")) {
      const int64_t step = state_step(run / "last.safetensors");
      CHECK(step >= last_step);
      CHECK(step <= target);
      last_step = step;
      CHECK_NOTHROW(load_generator((run / "last.safetensors").string(), 1, Device::CPU));
      CHECK_NOTHROW(load_generator((run / "netG.safetensors").string(), 1, Device::CPU));
    }
    // A resume that got as far as saying where it starts names the checkpoint's step.
    std::smatch m;
    if (before.has_state && std::regex_search(out, m, std::regex("resuming from step ([0-9]+) of")))
      CHECK(std::stoll(m[1]) == before.state_step);
  }
  MESSAGE(killed << " kills (" << during_startup << " timed from the start), " << left_temp_files
                 << " of them left a temp file (killed inside a write), checkpoint at step " << last_step
                 << " after the last kill"
                 << std::string(finished_early ? ", the run finished before the last kill" : ""));
  CHECK(killed >= 10);

  // To the end without a kill: --resume (or --force if no checkpoint ever landed).
  const RunFolderFiles before = find_run_files(run.string());
  std::vector<std::string> args{"train", "--out", run.string()};
  args.insert(args.end(), flags.begin(), flags.end());
  if (before.has_state) args.push_back("--resume");
  else if (!before.files.empty()) args.push_back("--force");
  if (before.state_step != target) {
    Spawned finish(args, dir / "finish.txt");
    REQUIRE_MESSAGE(finish.wait() == 0, read_whole(dir / "finish.txt"));
  }
  CHECK(state_step(run / "last.safetensors") == target);
  int compared = 0;
  CHECK(differing_tensor_count(run / "last.safetensors", straight / "last.safetensors", &compared) == 0);
  CHECK(compared > 20);
  CHECK(differing_tensor_count(run / "netG.safetensors", straight / "netG.safetensors", &compared) == 0);
  CHECK(temp_files_under(run).empty());  // the resumes deleted what the kills left
  // Each log line is whole JSON (a kill never tears one; a torn one would be cut at the resume), and the
  // log holds steps 1..target once each, in order, as the uninterrupted run's: what a killed run logged
  // past its checkpoint was moved to log.rolled-back.jsonl by the resume (whole lines too).
  std::istringstream lines(read_whole(run / "log.jsonl"));
  std::string line;
  std::vector<int64_t> steps, straight_steps;
  while (std::getline(lines, line)) CHECK_NOTHROW(steps.push_back(nlohmann::json::parse(line).at("step").get<int64_t>()));
  std::istringstream straight_lines(read_whole(straight / "log.jsonl"));
  while (std::getline(straight_lines, line)) straight_steps.push_back(nlohmann::json::parse(line).at("step").get<int64_t>());
  CHECK(straight_steps.size() == static_cast<size_t>(target));
  CHECK(steps == straight_steps);
  int rolled_back = 0;
  if (fs::exists(run / "log.rolled-back.jsonl")) {
    std::istringstream aside(read_whole(run / "log.rolled-back.jsonl"));
    while (std::getline(aside, line)) {
      CHECK_NOTHROW(nlohmann::json::parse(line).at("step").get<int64_t>());
      ++rolled_back;
    }
  }
  MESSAGE(rolled_back << " log line(s) of steps past a checkpoint were set aside by the resumes");
}
