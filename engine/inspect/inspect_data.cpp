// The generic half of `darkstar inspect data` (see inspect_data.h).
#include "engine/inspect/inspect_data.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_map>

#include "engine/formats/atomic_file.h"
#include "engine/nn/cpu/image.h"
#include "engine/formats/png.h"

namespace fs = std::filesystem;

namespace ds {

int64_t RowFigures::duplicate_rows() const {
  int64_t n = 0;
  for (const auto& g : duplicate_groups) n += static_cast<int64_t>(g.size()) - 1;
  return n;
}

uint64_t hash_row_bytes(const uint8_t* bytes, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull ^ size;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    h = (h ^ word) * 0x100000001b3ull;
    h ^= h >> 29;  // FNV's multiply only moves bits up; fold the high half back so words mix fully
  }
  for (; i < size; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
  // splitmix64's finaliser: every input bit affects every output bit.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

RowFigures compute_row_figures(const ImageDataset& data) {
  const int64_t n = data.count, size = data.sample_size();
  RowFigures f;
  f.min.assign(n, 0.f);
  f.max.assign(n, 0.f);
  f.stored_mean.assign(n, 0.0);
  std::vector<uint64_t> hashes(n);
  data.file->advise_sequential();
  const bool u8 = data.dtype == DType::U8;
#pragma omp parallel
  {
    std::vector<float> row(u8 ? 0 : static_cast<size_t>(size));
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < n; ++r) {
      if (u8) {  // on the bytes: an exact integer sum, min and max
        const uint8_t* bytes = data.row(r);
        uint8_t lo = 255, hi = 0;
        uint64_t sum = 0;
        for (int64_t j = 0; j < size; ++j) {
          lo = std::min(lo, bytes[j]);
          hi = std::max(hi, bytes[j]);
          sum += bytes[j];
        }
        f.min[r] = cpu::u8_to_unit_range<float>(lo);
        f.max[r] = cpu::u8_to_unit_range<float>(hi);
        f.stored_mean[r] = static_cast<double>(sum) / static_cast<double>(size);
      } else {
        data.sample_as_float(row.data(), r);
        float lo = INFINITY, hi = -INFINITY;
        double sum = 0;
        for (int64_t j = 0; j < size; ++j) {
          const float v = row[j];
          if (v < lo) lo = v;
          if (v > hi) hi = v;
          sum += v;
        }
        f.min[r] = lo;
        f.max[r] = hi;
        f.stored_mean[r] = sum / static_cast<double>(size);
      }
      hashes[r] = hash_row_bytes(data.row(r), data.row_bytes());
    }
  }
  // Rows by hash; within a hash, classes of identical bytes (memcmp against each class's first row).
  std::unordered_map<uint64_t, std::vector<std::vector<int64_t>>> classes;
  classes.reserve(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    auto& list = classes[hashes[r]];
    bool placed = false;
    for (auto& c : list) {
      if (std::memcmp(data.row(c.front()), data.row(r), data.row_bytes()) == 0) {
        c.push_back(r);
        placed = true;
        break;
      }
    }
    if (!placed) list.push_back({r});
  }
  for (auto& [hash, list] : classes)
    for (auto& c : list)
      if (c.size() > 1) f.duplicate_groups.push_back(std::move(c));
  std::sort(f.duplicate_groups.begin(), f.duplicate_groups.end(),
            [](const auto& a, const auto& b) { return a.front() < b.front(); });
  for (int64_t r = 0; r < n; ++r)
    if (f.min[r] == f.max[r]) f.constant_rows.push_back(r);
  return f;
}

double Histogram::edge(int k) const {
  const int bins = static_cast<int>(counts.size());
  if (k >= bins) return hi;
  return lo + (hi - lo) * k / bins;
}

Histogram make_histogram(const std::vector<double>& values, int bins) {
  if (bins < 1) throw std::invalid_argument("histogram: expected at least one bin, got " + std::to_string(bins));
  Histogram h;
  h.counts.assign(bins, 0);
  std::vector<double> finite;
  for (double v : values)
    if (std::isfinite(v)) finite.push_back(v);
  if (finite.empty()) return h;
  h.lo = *std::min_element(finite.begin(), finite.end());
  h.hi = *std::max_element(finite.begin(), finite.end());
  if (h.lo == h.hi) {
    h.lo -= 0.5;
    h.hi += 0.5;
  }
  for (double v : finite) {
    // The bin by arithmetic, then moved by at most one so that edge(k) <= v < edge(k + 1) holds for
    // the edges as edge() computes them (numpy does the same correction).
    int k = static_cast<int>((v - h.lo) / (h.hi - h.lo) * bins);
    k = std::min(std::max(k, 0), bins - 1);
    if (k > 0 && v < h.edge(k)) --k;
    if (k < bins - 1 && v >= h.edge(k + 1)) ++k;
    ++h.counts[k];
  }
  return h;
}

std::string format_histogram(const Histogram& h, const std::string& unit, int decimals, int bar_width) {
  const int64_t top = h.counts.empty() ? 0 : *std::max_element(h.counts.begin(), h.counts.end());
  std::string out;
  const int bins = static_cast<int>(h.counts.size());
  for (int k = 0; k < bins; ++k) {
    const int bar = top > 0 ? static_cast<int>(std::lround(double(h.counts[k]) * bar_width / double(top))) : 0;
    char line[256];
    std::snprintf(line, sizeof line, "  [%9.*f, %9.*f%c %-4s %-*s %lld\n", decimals, h.edge(k), decimals, h.edge(k + 1),
                  k + 1 == bins ? ']' : ')', unit.c_str(), bar_width,
                  std::string(static_cast<size_t>(bar), '#').c_str(), static_cast<long long>(h.counts[k]));
    out += line;
  }
  return out;
}

std::vector<int64_t> mosaic_rows(int64_t count, int64_t n) {
  std::vector<int64_t> rows;
  if (count <= 0 || n <= 0) return rows;
  if (count <= n) {
    for (int64_t r = 0; r < count; ++r) rows.push_back(r);
    return rows;
  }
  for (int64_t i = 0; i < n; ++i) rows.push_back(i * count / n);
  return rows;
}

std::vector<uint8_t> tile_mosaic(int* grid_height, int* grid_width, const std::vector<const uint8_t*>& tiles, int h,
                                 int w, int channels, int per_row) {
  constexpr int kPadding = 2;  // make_image_grid's (torchvision's) padding
  const int n = static_cast<int>(tiles.size());
  if (n <= 0 || h <= 0 || w <= 0 || per_row <= 0 || channels <= 0)
    throw std::invalid_argument("mosaic: expected tiles, H, W, per_row > 0");
  const int columns = std::min(per_row, n);
  const int rows = (n + columns - 1) / columns;
  const int gh = rows * (h + kPadding) + kPadding, gw = columns * (w + kPadding) + kPadding;
  std::vector<uint8_t> grid(static_cast<size_t>(gh) * gw * channels, 0);
  const size_t line = static_cast<size_t>(w) * channels;
  for (int i = 0; i < n; ++i) {
    const int top = kPadding + (i / columns) * (h + kPadding), left = kPadding + (i % columns) * (w + kPadding);
    for (int y = 0; y < h; ++y)
      std::memcpy(&grid[(static_cast<size_t>(top + y) * gw + left) * channels], tiles[i] + y * line, line);
  }
  *grid_height = gh;
  *grid_width = gw;
  return grid;
}

std::string mosaic_path_for(const std::string& npy_path) {
  const std::string suffix = ".npy";
  if (npy_path.size() > suffix.size() && npy_path.compare(npy_path.size() - suffix.size(), suffix.size(), suffix) == 0)
    return npy_path.substr(0, npy_path.size() - suffix.size()) + ".mosaic.png";
  return npy_path + ".mosaic.png";
}

namespace {
std::string join_rows(const std::vector<int64_t>& rows, size_t limit, const std::function<std::string(int64_t)>& name) {
  std::string s;
  for (size_t i = 0; i < rows.size() && i < limit; ++i) s += (i ? ", " : "") + name(rows[i]);
  if (rows.size() > limit) s += ", ... and " + std::to_string(rows.size() - limit) + " more";
  return s;
}
}  // namespace

void describe_rows(std::string& out, const ImageDataset& data, const RowFigures& rows, const InspectOptions& options,
                   const std::function<std::string(int64_t)>& describe_row) {
  char line[512];
  std::snprintf(line, sizeof line, "count: %lld\nshape: %lld x %lld x %lld x %lld (N x C x H x W)\ndtype: %s (%zu bytes a row, %.1f MiB)\n",
                static_cast<long long>(data.count), static_cast<long long>(data.count),
                static_cast<long long>(data.channels), static_cast<long long>(data.height),
                static_cast<long long>(data.width), dtype_name(data.dtype), data.row_bytes(),
                double(data.file->data_bytes()) / (1 << 20));
  out += line;
  const size_t limit = static_cast<size_t>(std::max(1, options.list_limit));
  std::snprintf(line, sizeof line, "exact duplicates: %lld rows repeat an earlier one (%zu groups)\n",
                static_cast<long long>(rows.duplicate_rows()), rows.duplicate_groups.size());
  out += line;
  for (size_t g = 0; g < rows.duplicate_groups.size() && g < limit; ++g)
    out += "  same bytes: " + join_rows(rows.duplicate_groups[g], limit, describe_row) + "\n";
  if (rows.duplicate_groups.size() > limit)
    out += "  ... and " + std::to_string(rows.duplicate_groups.size() - limit) + " more groups\n";
  std::snprintf(line, sizeof line, "constant rows (every value equal): %zu\n", rows.constant_rows.size());
  out += line;
  if (!rows.constant_rows.empty()) out += "  " + join_rows(rows.constant_rows, limit, describe_row) + "\n";
}

InspectResult inspect_image_dataset(const ImageDataset& data, const InspectOptions& options) {
  InspectResult r;
  r.rows = compute_row_figures(data);
  auto describe = [](int64_t row) { return "#" + std::to_string(row); };
  std::string& out = r.text;
  out += "dataset: " + data.file->path() + (data.dtype == DType::U8 ? " (images)\n" : " (float16, no mel sidecar)\n");
  // Sources, as prepare-images recorded them.
  if (!data.sidecar_json.empty()) {
    const nlohmann::json j = nlohmann::json::parse(data.sidecar_json, nullptr, false);
    if (j.is_object()) {
      std::string src = "sources: ";
      if (j.contains("source") && j["source"].is_string()) src += j["source"].get<std::string>();
      if (j.contains("source_format") && j["source_format"].is_string())
        src += " (" + j["source_format"].get<std::string>() + ")";
      if (j.contains("files") && j["files"].is_array()) src += ", " + std::to_string(j["files"].size()) + " files";
      if (j.contains("skipped") && j["skipped"].is_array())
        src += ", " + std::to_string(j["skipped"].size()) + " skipped";
      out += src + "\n";
    }
  } else {
    out += "sources: no sidecar beside the .npy\n";
  }
  describe_rows(out, data, r.rows, options, describe);

  // Brightness per image, in the stored 0..255 scale for uint8 (the [-1, 1] scale otherwise).
  const bool u8 = data.dtype == DType::U8;
  // Near-blank: a few grey levels over the whole image (range in 0..255 units; [-1, 1] spans 255).
  // min/max went through x/127.5 − 1 in float (error ~1e-5 levels); uint8 ranges are whole levels, so
  // a 1e-3 margin decides exactly.
  for (int64_t i = 0; i < data.count; ++i)
    if ((double(r.rows.max[i]) - double(r.rows.min[i])) * 127.5 <= options.blank_range + 1e-3) r.near_blank.push_back(i);
  {
    char line[160];
    std::snprintf(line, sizeof line, "near-blank images (pixel range at most %g of 255): %zu\n", options.blank_range,
                  r.near_blank.size());
    out += line;
    if (!r.near_blank.empty())
      out += "  " + join_rows(r.near_blank, static_cast<size_t>(std::max(1, options.list_limit)), describe) + "\n";
  }
  r.level_values = r.rows.stored_mean;
  r.level = make_histogram(r.level_values, options.histogram_bins);
  out += std::string("mean brightness per image (") + (u8 ? "0..255" : "[-1, 1]") + "):\n";
  out += format_histogram(r.level, "", 1);

  r.mosaic_path = options.mosaic_path.empty() ? mosaic_path_for(data.file->path()) : options.mosaic_path;
  r.mosaic_rows = mosaic_rows(data.count, options.mosaic_count > 0 ? options.mosaic_count : 64);
  if (data.channels == 1 || data.channels == 3) {
    std::vector<float> images(r.mosaic_rows.size() * static_cast<size_t>(data.sample_size()));
    std::vector<int32_t> idx(r.mosaic_rows.begin(), r.mosaic_rows.end());
    data.gather_as_float(images.data(), idx.data(), static_cast<int64_t>(idx.size()));
    const std::vector<uint8_t> grid =
        make_image_grid(&r.mosaic_height, &r.mosaic_width, images.data(), static_cast<int>(idx.size()),
                        static_cast<int>(data.channels), static_cast<int>(data.height), static_cast<int>(data.width), 8);
    write_bytes_atomic(r.mosaic_path, encode_png(grid.data(), r.mosaic_height, r.mosaic_width, static_cast<int>(data.channels)));
    out += "mosaic: " + r.mosaic_path + " (" + std::to_string(idx.size()) + " images, evenly spaced, " +
           std::to_string(r.mosaic_width) + "x" + std::to_string(r.mosaic_height) + " px)\n";
  } else {
    out += "mosaic: not written (" + std::to_string(data.channels) + " channels; PNG takes 1 or 3)\n";
    r.mosaic_path.clear();
  }
  return r;
}

}  // namespace ds
