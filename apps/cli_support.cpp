// The command line's own texts and checks (see cli_support.h).
#include "apps/cli_support.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <cuda_runtime_api.h>
#include <cudnn.h>

#ifndef DS_VERSION
#define DS_VERSION "unknown"
#endif
#ifndef DS_GIT_COMMIT
#define DS_GIT_COMMIT "unknown (not configured by CMake)"
#endif

namespace fs = std::filesystem;

namespace ds::cli {

namespace {
// CUDA packs versions as 1000·major + 10·minor (12040: 12.4); cuDNN 9 as 10000·major + 100·minor + patch.
std::string cuda_version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
std::string cudnn_version(size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
}
}  // namespace

std::string version_text() {
  std::string s = "darkstar " DS_VERSION " (git commit " DS_GIT_COMMIT ")\n";
  int runtime = 0, driver = 0;
  // Neither call needs a GPU: the runtime reports its own version; the driver's is 0 when none is installed.
  const bool have_runtime = cudaRuntimeGetVersion(&runtime) == cudaSuccess;
  const bool have_driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0;
  cudaGetLastError();
  s += "built against CUDA " + cuda_version(CUDART_VERSION) + " and cuDNN " +
       cudnn_version(static_cast<size_t>(CUDNN_VERSION)) + "\n";
  s += "loaded: CUDA runtime " + (have_runtime ? cuda_version(runtime) : std::string("unknown")) + ", cuDNN " +
       cudnn_version(cudnnGetVersion()) + "; NVIDIA driver: " +
       (have_driver ? "for CUDA up to " + cuda_version(driver) : std::string("none found"));
  return s;
}

int edit_distance(const std::string& a, const std::string& b) {
  // Optimal string alignment: Levenshtein plus adjacent transpositions, the commonest typing slip.
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::string unknown_command_message(const std::string& given, const std::vector<std::string>& commands) {
  std::vector<std::string> close;
  // Within a third of the word's length (at least 1, at most 3 edits), or a prefix ("prepare").
  const int allowed = std::clamp(static_cast<int>(given.size()) / 3, 1, 3);
  int best = allowed + 1;
  for (const std::string& c : commands) {
    const int d = edit_distance(given, c);
    if (d < best) {
      best = d;
      close = {c};
    } else if (d == best) {
      close.push_back(c);
    }
  }
  if (best > allowed) {
    close.clear();
    if (given.size() >= 2)
      for (const std::string& c : commands)
        if (c.compare(0, given.size(), given) == 0) close.push_back(c);
  }
  std::string s = "unknown command '" + given + "'";
  for (size_t i = 0; i < close.size(); ++i)
    s += (i == 0 ? "; did you mean '" : i + 1 == close.size() ? " or '" : ", '") + close[i] + "'";
  if (!close.empty()) s += "?";
  s += "\ncommands:";
  for (size_t i = 0; i < commands.size(); ++i) s += (i ? ", " : " ") + commands[i];
  s += " (darkstar COMMAND --help for each one's flags)";
  return s;
}

namespace {
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int signal) {
  g_stop_signal = signal;
  // Only async-signal-safe calls here: write(2) of a fixed text.
  static const char note[] =
      "\ndarkstar: stopping after the current step to save a checkpoint (send it again to quit at once)\n";
  const ssize_t ignored = write(STDERR_FILENO, note, sizeof note - 1);
  (void)ignored;
}
}  // namespace

void install_stop_handlers() {
  for (int signal : {SIGINT, SIGTERM}) {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND | SA_RESTART;  // the second signal gets the default action: exit at once
    struct sigaction previous {};
    sigaction(signal, &action, &previous);
    // A signal ignored when we started (a background job of a non-interactive shell, nohup) stays ignored.
    if (previous.sa_handler == SIG_IGN) sigaction(signal, &previous, nullptr);
  }
}

const volatile std::sig_atomic_t* stop_signal() { return &g_stop_signal; }

const char* signal_name(int signal) {
  return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal";
}

void check_dataset_file(const std::string& flag, const std::string& path) {
  std::error_code ec;
  std::string problem;
  if (fs::is_directory(path, ec)) {
    problem = "is a folder, not a dataset";
  } else if (!fs::exists(path, ec)) {
    problem = "no such file";
  } else {
    char magic[6] = {};
    std::ifstream in(path, std::ios::binary);
    in.read(magic, sizeof magic);
    if (in.gcount() != 6 || std::memcmp(magic, "\x93NUMPY", 6) != 0) problem = "not a .npy file (no numpy header)";
  }
  if (problem.empty()) return;
  throw std::runtime_error(flag + " " + path + ": " + problem +
                           "; train reads a dataset made by `darkstar prepare-images IMAGES_DIR --out data/NAME.npy`"
                           " (pictures) or `darkstar prepare-audio MUSIC_DIR --out data/NAME.npy` (music)");
}

}  // namespace ds::cli
