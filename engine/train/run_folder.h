// The run folder as a whole, before a `train` writes into it: which files an earlier train left there
// (so a second one is refused unless it continues that run or starts over), starting over, temp files
// left by a killed writer, a torn last log line, and whether the folder can be written at all.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ds {

// The files `train` writes, as found in a run folder.
struct RunFolderFiles {
  std::vector<std::string> files;  // relative to the folder, sorted: every file below
  bool has_state = false;          // last.safetensors is there (--resume continues from it)
  int64_t state_step = -1;         // its step, -1 when it is missing or unreadable
  int64_t state_steps = -1;        // the --steps it was trained towards, -1 when unknown
  std::string state_error;         // why last.safetensors could not be read ("" when it could)
};

// What `train` writes, looked for in dir (nothing when dir is missing): netG.safetensors,
// netD.safetensors, last.safetensors, log.jsonl, log.rolled-back.jsonl, events.out.tfevents.*,
// samples/step_*.png, and the temp files "<one of those>.tmp.<pid>" a killed write leaves. Every other
// file is not the run's.
RunFolderFiles find_run_files(const std::string& dir);

// The files grouped for a message: "last.safetensors, log.jsonl, events.out.tfevents.* (2 files), ...".
std::string summarize_run_files(const RunFolderFiles& found);

// Decides what `train --out dir` may do there, before anything is read or written. Throws
// std::runtime_error saying why and what each choice does when: dir holds a run and neither resume nor
// force is set; both are set; resume is set and there is no last.safetensors. Returns otherwise
// (an empty or missing folder, or one with only files that are not a run's, needs neither flag).
void check_run_folder_choice(const std::string& dir, const RunFolderFiles& found, bool resume, bool force);

// --force: deletes exactly found.files (and nothing else) from dir; throws naming a file it cannot delete.
void remove_run_files(const std::string& dir, const RunFolderFiles& found);

// Temp files "<train output>.tmp.<pid>" in dir whose writer process no longer exists (a kill -9 in
// the middle of a write): deleted, their names returned. A live pid's temp file is left alone.
std::vector<std::string> remove_stale_temp_files(const std::string& dir);

// Creates dir when it is missing, then creates, writes, fsyncs and deletes a probe file in it. Throws
// std::runtime_error naming dir and the system's reason (read-only file system, no space, permission)
// when any of that fails, so an unwritable run folder is reported before training starts.
void check_run_folder_writable(const std::string& dir);

// A log that ends in a torn line (a full disk or a power loss in the middle of an append) is cut back
// to its last complete line, so what a resume appends stays one JSON object per line. Returns the
// number of bytes cut (0 when the file is missing, empty or ends in '\n').
int64_t repair_log_tail(const std::string& log_path);

// `train --resume` from a checkpoint of `step`: the log lines of steps past it (logged after that
// checkpoint by the run that was killed or stopped on an error; the resume trains and logs those steps
// again) are appended to aside_path (log.rolled-back.jsonl) and removed from log_path, so log.jsonl
// holds each step once, in order, as an uninterrupted run's does, and nothing logged is lost.
// Lines that are not JSON objects with an integer "step" stay where they are. Returns how many moved.
int64_t set_aside_log_lines_after(const std::string& log_path, int64_t step, const std::string& aside_path);

}  // namespace ds
