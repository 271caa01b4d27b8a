// `darkstar inspect data` on a mel dataset (prepare-audio's float16 N×1×H×W + sidecar): the sources
// (files, hours, slices per file), the level of every slice as a text histogram, near-silent slices,
// exact duplicates, and a mosaic of evenly spaced slices in listen's magma colour map (lowest band at
// the bottom). The parts that know nothing of sound are engine/inspect/inspect_data.h's.
#pragma once
#include <string>

#include "audio/prepare_audio.h"
#include "engine/inspect/inspect_data.h"

namespace ds {

// A slice's level: its peak mel power in dB, ref_db + (max x − 1)·top_db/2 (x its stored values). With
// the default ref = each slice's maximum the image peak is x = 1, so the level is the sidecar's ref_db;
// with a fixed --ref, ref_db is one number and the image carries the level.
double mel_slice_level_db(double ref_db, float max_value, double top_db);

struct MelInspectOptions {
  double silent_db = 40;  // near-silent: this many dB below the median slice level
};
struct MelInspectResult : InspectResult {
  std::vector<int64_t> near_silent;  // rows below the silence threshold, ascending
};

// The inspection of a mel dataset (data.sidecar_json must be a mel sidecar; its per-slice index is
// read as MelDatasetInfo). Near-silent: level below (median level − mel.silent_db) or at the amin
// floor 10·log10(amin) (digital silence). The mosaic: options.mosaic_count (default 16) slices, 4 per
// row. Throws std::runtime_error naming the sidecar when it is not a usable mel sidecar.
MelInspectResult inspect_mel_dataset(const ImageDataset& data, const MelDatasetInfo& info, const InspectOptions& options,
                                     const MelInspectOptions& mel = {});

// The parameters and per-slice index of a mel dataset X.npy: its sidecar X.json and the X.slices.jsonl
// it names (or an old sidecar's embedded "slices"), through read_mel_dataset_info.
MelDatasetInfo read_mel_info_for(const std::string& npy_path);

}  // namespace ds
