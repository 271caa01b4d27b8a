// Helpers of the run-folder, full-disk and kill -9 tests (test_e2e_run_folder.cpp, test_e2e_kill.cpp):
// a tiny dataset, the real darkstar binary run in the foreground or the background, and a shell script
// run in its own user + mount namespace (unshare -rm), where it may mount a small or read-only tmpfs.
#pragma once
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/formats/safetensors.h"

extern char** environ;

namespace ds::test {

// 40 random 16×16 grey images (uint8): 10 batches of 4 per epoch, so runs cross epochs.
inline std::string write_tiny_dataset(const std::filesystem::path& dir) {
  const int64_t count = 40, side = 16;
  std::vector<uint8_t> pixels(count * side * side);
  Philox rng(11, 0);
  for (uint8_t& p : pixels) p = static_cast<uint8_t>(rng.uniform() * 255.0);
  const std::string path = (dir / "tiny.npy").string();
  write_npy(path, DType::U8, {count, 1, side, side}, pixels.data());
  return path;
}

inline std::string read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs `command` through sh with stdout + stderr into a file; returns the exit status (-1 if it did
// not exit normally) and the output in *output.
inline int run_shell(const std::string& command, const std::filesystem::path& log, std::string* output) {
  const int status = std::system((command + " > '" + log.string() + "' 2>&1").c_str());
  *output = read_whole(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// darkstar with `args` (no argument contains a space); output into dir/<name>.txt.
inline int run_darkstar_in(const std::filesystem::path& dir, const std::string& name, const std::string& args,
                           std::string* output) {
  return run_shell(std::string(DS_DARKSTAR_EXE) + " " + args, dir / (name + ".txt"), output);
}

// `script` (sh, `set -u`) in a new user and mount namespace: `unshare -rm` maps the caller to root
// there, which may mount a tmpfs (read-only, or a few pages big) on a folder of its own; the mount
// vanishes with the namespace, so the script copies out what the test is to look at. $DS is the
// darkstar binary. Root's permission bits stop nothing, so a read-only or full file system is the
// honest way to refuse writes to root, here and in CI.
inline int run_in_mount_namespace(const std::filesystem::path& dir, const std::string& script, std::string* output) {
  const std::filesystem::path file = dir / "namespace_script.sh";
  {
    std::ofstream out(file);
    out << "set -u\nDS='" << DS_DARKSTAR_EXE << "'\n" << script << "\n";
  }
  return run_shell("unshare -rm sh '" + file.string() + "'", dir / "namespace_script.txt", output);
}

inline int64_t state_step(const std::filesystem::path& state) {
  const SafeTensorsFile f = read_safetensors(state.string());
  return *reinterpret_cast<const int64_t*>(f.tensors.at("step").data.data());
}

// Tensors of two safetensors files that differ in any byte (0: identical); *compared counts them.
inline int differing_tensor_count(const std::filesystem::path& a_path, const std::filesystem::path& b_path,
                                  int* compared) {
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

// Every file under dir whose name holds ".tmp." (an atomic write's temp file), relative to dir.
inline std::vector<std::string> temp_files_under(const std::filesystem::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
    if (it->path().filename().string().find(".tmp.") != std::string::npos)
      found.push_back(std::filesystem::relative(it->path(), dir).string());
  return found;
}

}  // namespace ds::test
