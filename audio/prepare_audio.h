// `prepare-audio` as a library call: a folder (or file) of audio → a float16 N×1×H×W mel dataset
// (X.npy) plus its X.json sidecar, with the parameter checks that refuse bad flags before any work,
// and the sidecar's reading back (what `listen` needs to invert a slice).
//
// Sidecar keys (all written by prepare_audio, read by parse_mel_sidecar):
//   kind "mel", dtype "float16", layout "NCHW", count, channels (1), height, width,
//   sr, slice_seconds, slice_samples, slice_hop (seconds), slice_hop_samples, pad_tail, min_rms_db (null: off),
//   n_fft, hop, win, window "hann" (periodic), center, pad_mode, power 2, n_mels, fmin, fmax, mel_scale,
//   mel_norm, amin, top_db, ref ("max": each slice's own maximum, else the fixed power), frames (STFT
//   frames per slice), resize (null, or {height, width, domain "dB", filter}),
//   db "10*log10(max(S, amin)) - ref_db, clipped below at its max - top_db",
//   normalisation "x = db/top_db*2+1" (the inverse: db = (x-1)*top_db/2),
//   preset, source, audio_seconds, files [paths], slice_index (the file name, relative to the sidecar's
//   folder, of X.slices.jsonl: one JSON object per line and slice, in dataset order, {"file": index into
//   files, "start": seconds, "ref_db": 10*log10(max(ref, amin))}), median_ref_db (of those ref_db, so
//   that a checkpoint carrying only the sidecar can still set the level of generated audio),
//   skipped [{file, reason}], dropped_silent, files_read, partly_decoded [{file, kept_seconds,
//   missing_seconds (null: unknown), reason}].
// Sidecars written before the index moved out carry the same objects embedded as "slices" [...];
// read_mel_dataset_info reads both.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "audio/mel_params.h"
#include "engine/core/tensor.h"

namespace ds {

// Refuses parameters that cannot make a 4·2^k × 4·2^k image or make no sense, naming the flag the user
// typed (--sr --slice-seconds --n-mels --n-fft --hop --frames --fmin --fmax --htk --mel-norm --pad-mode
// --top-db --ref --preset). Throws std::invalid_argument with one line: "<flag> <value>: <what was
// expected>".
void validate_mel_params(const MelParams& p);

// What a user may override on the command line; unset fields keep the preset's value.
struct MelOverrides {
  std::optional<int> sr, n_mels, n_fft, hop, frames;
  std::optional<double> slice_seconds, fmin, fmax, top_db, ref;
  std::optional<bool> htk;
  std::optional<std::string> mel_norm, pad_mode;
};

// The preset ("default" or "seed") with the overrides applied, then validate_mel_params. Rules that
// keep the layout consistent: --n-fft sets win too; in the default layout --frames without --hop sets
// hop = floor(L / (frames − 1)) (and a changed --sr/--slice-seconds recomputes it), --hop without
// --frames sets frames to the STFT frame count; the seed layout takes --hop but not --frames (its width
// is the resize). Throws std::invalid_argument naming the flag.
MelParams build_mel_params(const std::string& preset, const MelOverrides& overrides);

struct PrepareAudioOptions {
  MelParams mel;                     // after build_mel_params (or any validated set)
  std::string preset = "default";    // recorded in the sidecar only
  double slice_hop_seconds = 0.0;    // <= 0: the slice length (no overlap)
  bool pad_tail = false;             // keep the last partial slice of each file, zero-padded
  double min_rms_db = std::numeric_limits<double>::quiet_NaN();  // NaN: keep silent slices too
  Device device = Device::CPU;       // CUDA: MelGpu (cuFFT); CPU: the reference of audio/mel_cpu.h
  bool progress = true;              // a \r-updated progress line on stderr
  int decode_threads = 0;            // 0: std::thread::hardware_concurrency()
  int64_t slices_per_batch = 0;      // mel batch; 0: ~64 MB of audio (at least 1)
};

struct SkippedAudioFile {
  std::string file, reason;
};

// A file that decoded only in part (cut short, damaged, garbage after the audio): what was kept.
struct PartlyDecodedFile {
  std::string file, reason;
  double kept_seconds = 0;
  double missing_seconds = 0;  // announced but not decoded; −1: unknown (an Ogg stream without its end)
};

struct PrepareAudioResult {
  int64_t count = 0;            // slices written
  int64_t files_used = 0;       // files that gave at least one slice
  int64_t files_total = 0;      // files (and refused folder entries, such as link loops) found
  int64_t files_read = 0;       // files decoded whole or in part (files_total − skipped)
  std::vector<SkippedAudioFile> skipped;
  std::vector<PartlyDecodedFile> partly_decoded;  // kept, with one warning each
  int64_t dropped_silent = 0;   // slices below min_rms_db
  double audio_seconds = 0;     // decoded audio of the used and the too-short files, at --sr
  double wall_seconds = 0;
  int height = 0, width = 0;
  std::string npy_path, sidecar_path;
};

// Streams every file under input (audio/decode.h's scan_audio_folder; the output files themselves are
// left out) on worker threads, block by block (decode, resample, cut slices), while the calling
// thread turns batches of slices into mel images and appends them to out_npy (float16 N×1×H×W, values
// in [−1, 1]) and their index lines to X.slices.jsonl as it goes; both are published atomically at
// the end (temp file, fsync, rename), then the sidecar. Memory does not grow with the input.
// Unreadable files, refused folder entries and files shorter than one slice are skipped with one
// "prepare-audio: warning:" line each (file + reason); a file decoded only in part keeps its head,
// with one warning line (seconds kept and missing). Both are listed in the result and the sidecar. Throws std::invalid_argument (bad options, before
// any work, naming the flag: also --slice-hop and --min-rms-db) or std::runtime_error (missing input,
// nothing usable: the message says how many files were skipped and why).
PrepareAudioResult prepare_audio(const std::string& input_dir_or_file, const std::string& out_npy,
                                 const PrepareAudioOptions& options);

// The sidecar read back.
struct MelSliceInfo {
  int64_t file = -1;       // index into files
  double start_seconds = 0;
  double ref_db = 0;       // 10·log10(max(ref, amin)): add to the image's dB to get absolute dB
};
struct MelDatasetInfo {
  MelParams mel;
  int64_t count = 0, height = 0, width = 0;
  std::vector<std::string> files;
  std::vector<MelSliceInfo> slices;  // empty when parse_mel_sidecar had only the sidecar of a slice_index
  // The sidecar's "median_ref_db" (NaN when it has none: older sidecars embed their slices instead).
  double recorded_median_ref_db = std::numeric_limits<double>::quiet_NaN();
  // The median slice ref_db: of `slices` when present, else the recorded one, else 0 dB. The level of
  // generated audio.
  double median_ref_db() const;
};

// "X.slices.jsonl" for "X.npy" (the slice index beside the dataset; "X.npy.slices.jsonl" otherwise).
std::string slice_index_path_for(const std::string& npy_path);

// Parses a sidecar's text alone; `where` names its origin in errors. Fills `slices` only from an
// embedded "slices" list (old sidecars; then their number must equal count); a sidecar naming a
// "slice_index" file leaves `slices` empty (a checkpoint carries the sidecar text, not the index).
// Throws std::runtime_error when the text is not JSON, is not a mel sidecar (kind != "mel"), or lacks
// a key needed to invert (named).
MelDatasetInfo parse_mel_sidecar(const std::string& json_text, const std::string& where);

// Reads the sidecar at sidecar_path and its slice index (the file its "slice_index" names, relative to
// the sidecar's folder; or the embedded "slices" of an old sidecar), so that `slices` has `count`
// entries. Throws std::runtime_error naming the file and line when the sidecar or the index is
// missing, malformed, or the index does not hold `count` slices with valid file indices.
MelDatasetInfo read_mel_dataset_info(const std::string& sidecar_path);
// True when the text is a JSON object with kind "mel".
bool is_mel_sidecar(const std::string& json_text);

}  // namespace ds
