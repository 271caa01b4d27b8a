// `darkstar report RUN`: one self-contained HTML page of a run folder (RUN/report.html) that opens
// offline in any browser: loss, D(x)/D(G(z)) and SWD curves as inline SVG, the sample grids over time,
// players for the WAV files found in the run (as opaque bytes in data URIs: nothing here knows sound),
// the configuration stored in the checkpoints, the memorisation figures, and what is missing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ds {

// What the page may inline. Grids are chosen evenly spaced with the first and last always among
// them; WAVs and images past a cap are listed on the page as skipped, with the reason.
struct ReportLimits {
  int max_sample_grids = 12;
  int max_audio_clips = 12;
  int64_t max_audio_bytes = 32ll << 20;  // all inlined WAVs together
  int64_t max_image_bytes = 32ll << 20;  // all inlined PNGs together (grids, neighbours, mel images)
};

// What went into the page (for the command's summary line and for tests).
struct ReportSummary {
  std::string html_path;
  int64_t log_steps = 0;            // distinct steps read from log.jsonl
  int64_t unreadable_log_lines = 0;  // lines that are not a JSON object with a numeric "step"
  std::vector<std::string> grids_shown, grids_left_out;   // file names under samples/
  std::vector<std::string> audio_shown;                   // paths relative to the run folder
  std::vector<std::string> audio_skipped;                 // "path: why"
  std::vector<std::string> missing;                       // one sentence each, also on the page
  bool has_config = false, has_memorization = false, has_swd = false;
};

// Builds the page of run_dir. Throws std::runtime_error naming run_dir if it is not a folder or holds
// none of log.jsonl, last.safetensors and samples/ (not a run). Anything else absent or unreadable
// is said on the page and in summary->missing, never an error.
std::string build_run_report(ReportSummary* summary, const std::string& run_dir, const ReportLimits& limits = {});

// build_run_report, written atomically to run_dir/report.html.
ReportSummary write_run_report(const std::string& run_dir, const ReportLimits& limits = {});

// The pieces the page is made of, for tests.
std::string html_escape(const std::string& text);  // & < > " ' as entities: safe in text and attributes
std::string base64_encode(const uint8_t* data, size_t size);
std::vector<uint8_t> base64_decode(const std::string& text);  // throws on characters outside the alphabet

// Indices of at most max_count of count items evenly spaced, first and last included, ascending.
std::vector<size_t> evenly_spaced_indices(size_t count, size_t max_count);

}  // namespace ds
