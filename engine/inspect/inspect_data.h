// `darkstar inspect data`, the parts that know nothing of sound: one pass over a memory-mapped
// dataset for per-row figures, exact duplicates (a 64-bit hash per row, equal hashes confirmed byte
// for byte), constant rows, numpy-style histograms as text, the mosaic layout, and the whole report
// of an image dataset (audio/inspect_mel.h builds the mel report on the same parts).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/data/image_dataset.h"

namespace ds {

// Per-row figures of a dataset in its float units ([-1, 1]: x/127.5 - 1 for uint8, the stored value
// for float16), and the rows that repeat or are flat.
struct RowFigures {
  std::vector<float> min, max;  // per row
  std::vector<double> stored_mean;  // per row, in the stored units (0..255 for uint8, exact)
  // Rows whose stored bytes are identical: every group has >= 2 rows, ascending; groups ordered by
  // their first row.
  std::vector<std::vector<int64_t>> duplicate_groups;
  std::vector<int64_t> constant_rows;  // max == min (a blank image; a mel slice of digital silence)
  int64_t duplicate_rows() const;      // rows that repeat an earlier row: sum of (group size - 1)
};
// Reads every row once (OpenMP over rows). NaN values make min/max NaN-free (ignored) and mean NaN.
RowFigures compute_row_figures(const ImageDataset& data);

// The 64-bit hash used to find duplicate rows (FNV-1a over 8-byte words, then a final mix); equal
// bytes give equal hashes, and groups are confirmed with memcmp, so a collision never merges rows.
uint64_t hash_row_bytes(const uint8_t* bytes, size_t size);

// numpy.histogram(values, bins): `bins` equal-width bins from min to max (edges lo + k·(hi − lo)/bins),
// each [edge_k, edge_k+1) except the last, which also holds max; when min == max the range is
// [min − 0.5, max + 0.5] as numpy makes it. No values: counts all 0 on [0, 1].
struct Histogram {
  double lo = 0, hi = 1;
  std::vector<int64_t> counts;
  double edge(int k) const;  // lo + k·(hi − lo)/bins, with edge(bins) == hi exactly
};
Histogram make_histogram(const std::vector<double>& values, int bins);
// One line per bin: "  [  -12.0,   -8.0)  ####...  123" (bar lengths proportional to the largest
// count), values printed with `decimals` decimals and `unit` after the range.
std::string format_histogram(const Histogram& h, const std::string& unit, int decimals = 1, int bar_width = 40);

// The rows shown in a mosaic: all of them when count <= n, else n rows spread evenly, floor(i·count/n)
// for i < n (the first row and rows from every part of the dataset, in order).
std::vector<int64_t> mosaic_rows(int64_t count, int64_t n);

// Tiles of h×w pixels (interleaved, `channels` bytes each) in a grid with make_image_grid's layout:
// min(per_row, n) columns, 2-pixel black padding around and between. Returns the grid pixels.
std::vector<uint8_t> tile_mosaic(int* grid_height, int* grid_width, const std::vector<const uint8_t*>& tiles, int h,
                                 int w, int channels, int per_row);

struct InspectOptions {
  std::string mosaic_path;  // "" : X.mosaic.png beside X.npy (mosaic_path_for)
  int mosaic_count = 0;     // rows in the mosaic; 0: the kind's default (64 images, 16 mel slices)
  int histogram_bins = 12;
  double blank_range = 8;   // images: near-blank when max − min of its pixels is at most this (of 0..255)
  int list_limit = 10;      // duplicate groups / files / rows listed by name before "... and N more"
};

// The figures of an inspection, for the report and for tests.
struct InspectResult {
  std::string text;  // the report, ready to print
  RowFigures rows;
  Histogram level;                   // of a per-row level (images: mean brightness, 0..255)
  std::vector<double> level_values;  // the values histogrammed, one per row
  std::vector<int64_t> near_blank;   // images: rows whose pixel range is at most blank_range
  std::vector<int64_t> mosaic_rows;
  std::string mosaic_path;
  int mosaic_height = 0, mosaic_width = 0;
};

// "X.npy" -> "X.mosaic.png" beside it (any other name gets ".mosaic.png" appended).
std::string mosaic_path_for(const std::string& npy_path);

// The lines every kind shares: "count", "shape", "dtype", the duplicate and constant rows (naming
// rows with describe_row, e.g. a file and start time), in `out` (appended).
void describe_rows(std::string& out, const ImageDataset& data, const RowFigures& rows, const InspectOptions& options,
                   const std::function<std::string(int64_t)>& describe_row);

// The whole inspection of an image dataset (uint8, or any dataset without a mel sidecar): count,
// shape, dtype, sources from the sidecar (folder or IDX, files, skipped), mean-brightness histogram,
// duplicate, constant and near-blank images, and the mosaic (the images as they are, 8 per row) written atomically.
InspectResult inspect_image_dataset(const ImageDataset& data, const InspectOptions& options);

}  // namespace ds
