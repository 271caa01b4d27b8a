// The run folder before a train writes into it (see run_folder.h).
#include "engine/train/run_folder.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/formats/atomic_file.h"

namespace fs = std::filesystem;

namespace ds {
namespace {

// One kind of file train writes; `pattern` matches a path relative to the run folder. Add a line here
// when train writes a new kind of file, so a second train there is refused and --force deletes it.
struct RunFileKind {
  const char* label;  // how messages name the kind
  std::regex pattern;
};

const std::vector<RunFileKind>& run_file_kinds() {
  static const std::vector<RunFileKind> kinds = {
      {"last.safetensors", std::regex("last\\.safetensors")},
      {"netG.safetensors", std::regex("netG\\.safetensors")},
      {"netD.safetensors", std::regex("netD\\.safetensors")},
      {"log.jsonl", std::regex("log\\.jsonl")},
      {"log.rolled-back.jsonl", std::regex("log\\.rolled-back\\.jsonl")},
      {"events.out.tfevents.*", std::regex("events\\.out\\.tfevents\\.[^/]*")},
      {"samples/step_*.png", std::regex("samples/step_[0-9]+\\.png")},
      // check_run_folder_writable's probe: only ever seen as the temp file of a killed probe
      {".darkstar-write-probe", std::regex("\\.darkstar-write-probe")},
  };
  return kinds;
}

// "<name>.tmp.<pid>" (engine/formats/atomic_file.h): the temp file of a write of <name>.
bool split_temp_name(const std::string& relative, std::string* target, long* pid) {
  static const std::regex temp("(.*)\\.tmp\\.([0-9]+)");
  std::smatch m;
  if (!std::regex_match(relative, m, temp)) return false;
  *target = m[1];
  *pid = std::stol(m[2]);
  return true;
}

bool is_run_output(const std::string& relative) {
  for (const RunFileKind& k : run_file_kinds())
    if (std::regex_match(relative, k.pattern)) return true;
  return false;
}

// A run file, or the temp file of one.
bool is_run_file(const std::string& relative) {
  std::string target;
  long pid = 0;
  if (split_temp_name(relative, &target, &pid)) return is_run_output(target);
  return is_run_output(relative);
}

std::string label_of(const std::string& relative) {
  std::string target;
  long pid = 0;
  if (split_temp_name(relative, &target, &pid)) return "*.tmp.<pid> (temp files of interrupted writes)";
  for (const RunFileKind& k : run_file_kinds())
    if (std::regex_match(relative, k.pattern)) return k.label;
  return relative;
}

// The checkpoint's step and target steps, from the safetensors header and the 8 bytes of "step"
// alone (a whole training state can be hundreds of MB; a message needs none of it).
void read_state_step(const fs::path& path, RunFolderFiles* found) {
  try {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(std::strerror(errno));
    uint64_t header_size = 0;
    in.read(reinterpret_cast<char*>(&header_size), 8);
    if (!in || header_size > (uint64_t(100) << 20)) throw std::runtime_error("not a safetensors file");
    std::string header(header_size, '\0');
    in.read(header.data(), static_cast<std::streamsize>(header_size));
    if (!in) throw std::runtime_error("truncated header");
    const nlohmann::json j = nlohmann::json::parse(header);
    const auto& offsets = j.at("step").at("data_offsets");
    const uint64_t begin = offsets.at(0).get<uint64_t>();
    in.seekg(static_cast<std::streamoff>(8 + header_size + begin));
    int64_t step = 0;
    in.read(reinterpret_cast<char*>(&step), 8);
    if (!in) throw std::runtime_error("truncated data");
    found->state_step = step;
    if (j.contains("__metadata__") && j["__metadata__"].contains("darkstar.train")) {
      const nlohmann::json train = nlohmann::json::parse(j["__metadata__"]["darkstar.train"].get<std::string>());
      found->state_steps = train.value("steps", int64_t(-1));
    }
  } catch (const std::exception& e) {
    found->state_error = e.what();
  }
}

std::string step_text(const RunFolderFiles& found) {
  if (!found.state_error.empty()) return "unreadable: " + found.state_error;
  if (found.state_step < 0) return "step unknown";
  std::string s = "step " + std::to_string(found.state_step);
  if (found.state_steps >= 0) s += " of " + std::to_string(found.state_steps);
  return s;
}

}  // namespace

RunFolderFiles find_run_files(const std::string& dir) {
  RunFolderFiles found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  auto consider = [&](const fs::directory_entry& entry, const std::string& relative) {
    std::error_code type_ec;
    if (entry.is_regular_file(type_ec) && is_run_file(relative)) found.files.push_back(relative);
  };
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec))
    consider(entry, entry.path().filename().string());
  const fs::path samples = fs::path(dir) / "samples";
  if (fs::is_directory(samples, ec))
    for (const fs::directory_entry& entry : fs::directory_iterator(samples, ec))
      consider(entry, "samples/" + entry.path().filename().string());
  std::sort(found.files.begin(), found.files.end());
  found.has_state = std::find(found.files.begin(), found.files.end(), "last.safetensors") != found.files.end();
  if (found.has_state) read_state_step(fs::path(dir) / "last.safetensors", &found);
  return found;
}

std::string summarize_run_files(const RunFolderFiles& found) {
  std::vector<std::pair<std::string, int>> groups;  // in the order of run_file_kinds, temp files last
  std::map<std::string, int> counts;
  for (const std::string& f : found.files) ++counts[label_of(f)];
  for (const RunFileKind& k : run_file_kinds())
    if (counts.count(k.label)) groups.emplace_back(k.label, counts[k.label]);
  for (const auto& [label, n] : counts)
    if (std::none_of(groups.begin(), groups.end(), [&](const auto& g) { return g.first == label; }))
      groups.emplace_back(label, n);
  std::string text;
  for (const auto& [label, n] : groups) {
    if (!text.empty()) text += ", ";
    text += label;
    if (label.find('*') != std::string::npos) text += " (" + std::to_string(n) + (n == 1 ? " file)" : " files)");
  }
  return text;
}

void check_run_folder_choice(const std::string& dir, const RunFolderFiles& found, bool resume, bool force) {
  const std::string state = (fs::path(dir) / "last.safetensors").string();
  const std::string force_does = "--force starts a new run in " + dir + ": it first deletes " +
                                 summarize_run_files(found) + "; every other file there is left alone";
  if (resume && force)
    throw std::runtime_error("--resume and --force contradict each other: --resume continues the run in " + dir +
                             ", --force deletes its files and starts over; give one of them");
  if (resume) {
    if (found.has_state) return;
    if (found.files.empty())
      throw std::runtime_error("--resume: no checkpoint at " + state + " (" + dir +
                               " holds no run; train without --resume starts one there)");
    throw std::runtime_error("--resume: no checkpoint at " + state + ": the run in " + dir +
                             " stopped before its first checkpoint, so there is nothing to continue; " + force_does);
  }
  if (force || found.files.empty()) return;
  std::string message = "run folder " + dir + " already holds a run (" + summarize_run_files(found) + ")";
  if (found.has_state) message += "; its checkpoint last.safetensors is at " + step_text(found);
  message += ". Nothing was changed. Give one of:\n";
  if (found.has_state) {
    message += "  --resume  continue that run from " + state +
               ": settings not given again come from the checkpoint (--steps included; a larger --steps "
               "trains on), log.jsonl is appended to, a new event file is added and the checkpoints and "
               "sample grids are replaced as it trains\n";
  } else {
    message += "  (--resume cannot continue it: there is no last.safetensors, it stopped before its first checkpoint)\n";
  }
  message += "  --force   start a new run there: deletes " + summarize_run_files(found) +
             " first; every other file in " + dir + " is left alone\n";
  message += "or give another --out for a new run beside it";
  throw std::runtime_error(message);
}

void remove_run_files(const std::string& dir, const RunFolderFiles& found) {
  for (const std::string& f : found.files) {
    std::error_code ec;
    const fs::path path = fs::path(dir) / f;
    if (!fs::remove(path, ec) && ec)
      throw std::runtime_error("--force: cannot delete " + path.string() + ": " + ec.message());
  }
}

std::vector<std::string> remove_stale_temp_files(const std::string& dir) {
  std::vector<std::string> removed;
  for (const std::string& f : find_run_files(dir).files) {
    std::string target;
    long pid = 0;
    if (!split_temp_name(f, &target, &pid)) continue;
    // ESRCH: no such process. EPERM means it exists (another user's): keep its file.
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code ec;
      if (fs::remove(fs::path(dir) / f, ec)) removed.push_back(f);
    }
  }
  return removed;
}

void check_run_folder_writable(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("run folder " + dir + " cannot be created: " + ec.message());
  if (!fs::is_directory(dir, ec)) throw std::runtime_error("run folder " + dir + " is not a folder");
  const std::string probe = (fs::path(dir) / (".darkstar-write-probe.tmp." + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error("run folder " + dir + " is not writable: cannot create a file in it (" + probe +
                             "): " + std::strerror(errno));
  const char byte = '\n';
  std::string failure;
  if (::write(fd, &byte, 1) != 1) failure = std::string("cannot write to it: ") + std::strerror(errno);
  else if (::fsync(fd) != 0) failure = std::string("cannot sync it: ") + std::strerror(errno);
  ::close(fd);
  ::unlink(probe.c_str());
  if (!failure.empty()) throw std::runtime_error("run folder " + dir + " is not writable: " + probe + ": " + failure);
}

int64_t repair_log_tail(const std::string& log_path) {
  std::error_code ec;
  const auto size = fs::file_size(log_path, ec);
  if (ec || size == 0) return 0;
  std::ifstream in(log_path, std::ios::binary);
  // Read back from the end in blocks until a '\n' is found (or the start: then no line is complete).
  const uint64_t block = 1 << 16;
  uint64_t end = size, keep = 0;
  std::string buffer;
  bool found = false;
  while (end > 0 && !found) {
    const uint64_t begin = end > block ? end - block : 0;
    buffer.resize(end - begin);
    in.seekg(static_cast<std::streamoff>(begin));
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (!in) throw std::runtime_error("cannot read " + log_path);
    const size_t nl = buffer.rfind('\n');
    if (nl != std::string::npos) {
      keep = begin + nl + 1;
      found = true;
    }
    end = begin;
  }
  if (keep == size) return 0;
  fs::resize_file(log_path, keep, ec);
  if (ec) throw std::runtime_error("cannot cut the torn last line of " + log_path + ": " + ec.message());
  return static_cast<int64_t>(size - keep);
}

int64_t set_aside_log_lines_after(const std::string& log_path, int64_t step, const std::string& aside_path) {
  std::ifstream in(log_path, std::ios::binary);
  if (!in) return 0;  // no log yet: nothing logged past the checkpoint
  std::string kept, moved, line;
  int64_t moved_count = 0;
  while (std::getline(in, line)) {
    // Only a JSON object whose "step" is an integer past `step` moves; anything else is kept as it was.
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool past = j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
                      j["step"].get<int64_t>() > step;
    (past ? moved : kept) += line + "\n";
    if (past) ++moved_count;
  }
  if (in.bad()) throw std::runtime_error("cannot read " + log_path);
  in.close();
  if (moved_count == 0) return 0;
  // The lines land in aside_path (appended, synced) before log.jsonl is replaced: a crash between the
  // two leaves them in both files, never in neither.
  repair_log_tail(aside_path);  // an append a kill tore would glue its half line to these
  FILE* aside = std::fopen(aside_path.c_str(), "ab");
  if (!aside) throw std::runtime_error("cannot write " + aside_path + ": " + std::strerror(errno));
  const bool written = std::fwrite(moved.data(), 1, moved.size(), aside) == moved.size() && std::fflush(aside) == 0 &&
                       fsync(fileno(aside)) == 0;
  const int write_errno = errno;
  std::fclose(aside);
  if (!written) throw std::runtime_error("cannot write " + aside_path + ": " + std::strerror(write_errno));
  write_text_atomic(log_path, kept);
  return moved_count;
}

}  // namespace ds
