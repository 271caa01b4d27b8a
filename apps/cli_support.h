// What the darkstar command line says and checks outside any one subcommand's work: --version, an
// unknown command with a did-you-mean, Ctrl-C/SIGTERM during train, the hint for a --data that is
// not a dataset.
#pragma once
#include <csignal>
#include <cstdint>
#include <string>
#include <vector>

namespace ds::cli {

// darkstar's version, the git commit it was configured from, the CUDA runtime and cuDNN it was
// built against and the ones loaded now (several lines, no trailing newline).
std::string version_text();

// Edit distance between a and b counting an adjacent transposition as one edit ("trian" → "train": 1).
int edit_distance(const std::string& a, const std::string& b);
// "unknown command 'trian'; did you mean 'train'?" plus the list of commands; the did-you-mean only
// when some command is within a few edits or starts with `given`.
std::string unknown_command_message(const std::string& given, const std::vector<std::string>& commands);

// SIGINT/SIGTERM: the first one sets stop_signal() (train then ends after the current step with a
// checkpoint) and says so on stderr; the handler is reset by it, so a second one ends the process at once.
void install_stop_handlers();
const volatile std::sig_atomic_t* stop_signal();  // 0, or the signal number received
const char* signal_name(int signal);                // "SIGINT", "SIGTERM"

// Throws std::runtime_error with a hint at prepare-images/prepare-audio when `path` is not a .npy
// file (missing, a folder, or without numpy's magic bytes), naming the flag and the path.
void check_dataset_file(const std::string& flag, const std::string& path);

}  // namespace ds::cli
