// The mel half of `darkstar inspect data` (see inspect_mel.h).
#include "audio/inspect_mel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "audio/listen.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/png.h"

namespace ds {

double mel_slice_level_db(double ref_db, float max_value, double top_db) {
  return ref_db + (static_cast<double>(max_value) - 1.0) * top_db / 2.0;
}

MelDatasetInfo read_mel_info_for(const std::string& npy_path) {
  return read_mel_dataset_info(sidecar_path_for(npy_path));
}

namespace {
double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 ? v[mid] : 0.5 * (v[mid - 1] + v[mid]);
}
std::string clock_of(double seconds) {
  char buf[32];
  const long s = static_cast<long>(std::floor(seconds));
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld.%d", s / 3600, (s / 60) % 60, s % 60,
                static_cast<int>((seconds - s) * 10));
  return buf;
}
}  // namespace

MelInspectResult inspect_mel_dataset(const ImageDataset& data, const MelDatasetInfo& info, const InspectOptions& options,
                                     const MelInspectOptions& mel) {
  const std::string sidecar = sidecar_path_for(data.file->path());
  if (info.count != data.count || static_cast<int64_t>(info.slices.size()) != data.count)
    throw std::runtime_error(sidecar + ": the mel sidecar indexes " + std::to_string(info.slices.size()) +
                             " slices but '" + data.file->path() + "' holds " + std::to_string(data.count));
  MelInspectResult r;
  r.rows = compute_row_figures(data);
  const nlohmann::json j = nlohmann::json::parse(data.sidecar_json, nullptr, false);
  auto number = [&](const char* key, double fallback) {
    return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
  };
  // Files are named relative to the folder prepare-audio read (the sidecar's "source"), when under it.
  const std::string source = j.is_object() && j.contains("source") && j["source"].is_string()
                                 ? j["source"].get<std::string>() : std::string();
  const int64_t n_files = static_cast<int64_t>(info.files.size());
  auto file_name = [&](int64_t f) {
    if (f < 0 || f >= n_files) return "file #" + std::to_string(f);
    const std::string& path = info.files[f];
    if (!source.empty() && path.size() > source.size() + 1 && path.compare(0, source.size(), source) == 0 &&
        path[source.size()] == '/')
      return path.substr(source.size() + 1);
    return path;
  };
  auto describe = [&](int64_t row) {
    const MelSliceInfo& s = info.slices[row];
    return "#" + std::to_string(row) + " (" + file_name(s.file) + " @ " + clock_of(s.start_seconds) + ")";
  };

  std::string& out = r.text;
  char line[512];
  out += "dataset: " + data.file->path() + " (mel spectrograms)\n";
  if (!source.empty()) out += "prepared from: " + source + "\n";
  std::snprintf(line, sizeof line,
                "layout: %d mel bands x %d frames a slice, %.3g s slices every %.3g s at %d Hz (n_fft %d, hop %d, "
                "top_db %g)\n",
                info.mel.n_mels, info.mel.frames, info.mel.slice_seconds,
                number("slice_hop", info.mel.slice_seconds), info.mel.sr, info.mel.n_fft, info.mel.hop,
                info.mel.top_db);
  out += line;

  // Sources: files, hours and slices per file.
  std::vector<int64_t> per_file(static_cast<size_t>(std::max<int64_t>(n_files, 0)), 0);
  for (const MelSliceInfo& s : info.slices)
    if (s.file >= 0 && s.file < n_files) ++per_file[s.file];
  const int64_t skipped = j.is_object() && j.contains("skipped") && j["skipped"].is_array()
                              ? static_cast<int64_t>(j["skipped"].size()) : 0;
  std::snprintf(line, sizeof line,
                "sources: %lld files, %.2f h of audio decoded, %.2f h in slices, %lld files skipped, %lld slices "
                "dropped as silent by prepare-audio\n",
                static_cast<long long>(n_files), number("audio_seconds", 0) / 3600,
                data.count * info.mel.slice_seconds / 3600, static_cast<long long>(skipped),
                static_cast<long long>(number("dropped_silent", 0)));
  out += line;
  if (n_files > 0) {
    std::vector<double> counts(per_file.begin(), per_file.end());
    std::snprintf(line, sizeof line, "slices per file: min %lld, median %g, max %lld\n",
                  static_cast<long long>(*std::min_element(per_file.begin(), per_file.end())), median_of(counts),
                  static_cast<long long>(*std::max_element(per_file.begin(), per_file.end())));
    out += line;
    std::vector<int64_t> order(static_cast<size_t>(n_files));
    for (int64_t f = 0; f < n_files; ++f) order[f] = f;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return per_file[a] > per_file[b]; });
    const int64_t shown = std::min<int64_t>(n_files, std::max(1, options.list_limit));
    for (int64_t i = 0; i < shown; ++i) {
      std::snprintf(line, sizeof line, "  %6lld slices  %s\n", static_cast<long long>(per_file[order[i]]),
                    file_name(order[i]).c_str());
      out += line;
    }
    if (shown < n_files) out += "  ... and " + std::to_string(n_files - shown) + " more files\n";
  }
  describe_rows(out, data, r.rows, options, describe);

  // Levels, near-silent slices.
  for (int64_t i = 0; i < data.count; ++i)
    r.level_values.push_back(mel_slice_level_db(info.slices[i].ref_db, r.rows.max[i], info.mel.top_db));
  r.level = make_histogram(r.level_values, options.histogram_bins);
  const double median = median_of(r.level_values);
  const double floor_db = 10.0 * std::log10(info.mel.amin);
  const double threshold = median - mel.silent_db;
  for (int64_t i = 0; i < data.count; ++i)
    if (r.level_values[i] < threshold || r.level_values[i] <= floor_db + 1e-9) r.near_silent.push_back(i);
  std::snprintf(line, sizeof line, "level per slice (peak mel power, dB; the sidecar's ref_db): min %.1f, median %.1f, max %.1f\n",
                *std::min_element(r.level_values.begin(), r.level_values.end()), median,
                *std::max_element(r.level_values.begin(), r.level_values.end()));
  out += line;
  out += format_histogram(r.level, "dB", 1);
  std::snprintf(line, sizeof line, "near-silent slices (level below median - %g dB = %.1f dB, or at the %.0f dB floor): %zu\n",
                mel.silent_db, threshold, floor_db, r.near_silent.size());
  out += line;
  const size_t limit = static_cast<size_t>(std::max(1, options.list_limit));
  for (size_t i = 0; i < r.near_silent.size() && i < limit; ++i) {
    std::snprintf(line, sizeof line, "  %s  %.1f dB\n", describe(r.near_silent[i]).c_str(), r.level_values[r.near_silent[i]]);
    out += line;
  }
  if (r.near_silent.size() > limit) out += "  ... and " + std::to_string(r.near_silent.size() - limit) + " more\n";

  // Mosaic: evenly spaced slices in the magma map, lowest band at the bottom (as listen draws them).
  r.mosaic_path = options.mosaic_path.empty() ? mosaic_path_for(data.file->path()) : options.mosaic_path;
  r.mosaic_rows = mosaic_rows(data.count, options.mosaic_count > 0 ? options.mosaic_count : 16);
  const int h = static_cast<int>(data.height), w = static_cast<int>(data.width);
  std::vector<std::vector<uint8_t>> rgb;
  std::vector<float> image(static_cast<size_t>(data.sample_size()));
  for (int64_t row : r.mosaic_rows) {
    data.sample_as_float(image.data(), row);  // channel 0: mel datasets have one
    rgb.push_back(mel_image_rgb(image.data(), h, w));
  }
  std::vector<const uint8_t*> tiles;
  for (const auto& t : rgb) tiles.push_back(t.data());
  const std::vector<uint8_t> grid = tile_mosaic(&r.mosaic_height, &r.mosaic_width, tiles, h, w, 3, 4);
  write_bytes_atomic(r.mosaic_path, encode_png(grid.data(), r.mosaic_height, r.mosaic_width, 3));
  out += "mosaic: " + r.mosaic_path + " (" + std::to_string(tiles.size()) + " slices, evenly spaced, 4 a row, magma, "
         "low frequencies at the bottom, " + std::to_string(r.mosaic_width) + "x" + std::to_string(r.mosaic_height) +
         " px)\n";
  return r;
}

}  // namespace ds
