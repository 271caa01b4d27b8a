// inspect quality (see quality.h): the five figures of a mel GAN against the real slices of its dataset.
#include "audio/quality.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "audio/griffin_lim.h"
#include "engine/data/image_dataset.h"

namespace fs = std::filesystem;

namespace ds {

// ---- measures -----------------------------------------------------------------------------------

double mel_image_distance_db(const float* a, const float* b, int64_t n, double top_db) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    sum += d * d;
  }
  return n > 0 ? std::sqrt(sum / double(n)) * top_db * 0.5 : 0.0;
}

double mean_pairwise_distance_db(const float* images, int64_t n, int64_t size, double top_db) {
  if (n < 2) return 0.0;
  double total = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : total)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) total += mel_image_distance_db(images + i * size, images + j * size, size, top_db);
  return total / (double(n) * double(n - 1) / 2.0);
}

double spectral_flatness(const float* audio, int64_t n, const MelParams& p) {
  const std::vector<complexf> spectrum = stft(audio, n, p);
  const int n_freqs = p.n_freqs();
  const int64_t frames = static_cast<int64_t>(spectrum.size()) / n_freqs;
  constexpr double amin = 1e-10;  // librosa.feature.spectral_flatness's default
  double sum = 0;
  for (int64_t t = 0; t < frames; ++t) {
    double log_sum = 0, lin_sum = 0;
    for (int f = 0; f < n_freqs; ++f) {
      const double s = std::max(amin, double(std::norm(spectrum[t * n_freqs + f])));
      log_sum += std::log(s);
      lin_sum += s;
    }
    sum += std::exp(log_sum / n_freqs) / (lin_sum / n_freqs);
  }
  return frames > 0 ? sum / double(frames) : 1.0;
}

std::vector<double> mean_band_db(const float* images, int64_t n, int64_t height, int64_t width, double top_db) {
  std::vector<double> band(static_cast<size_t>(height), 0.0);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t y = 0; y < height; ++y) {
      const float* row = images + (s * height + y) * width;
      double sum = 0;
      for (int64_t x = 0; x < width; ++x) sum += unit_to_db(std::clamp(double(row[x]), -1.0, 1.0), top_db);
      band[y] += sum;
    }
  for (double& b : band) b /= double(std::max<int64_t>(1, n * width));
  return band;
}

bool mean_dgz_last_quarter(const std::string& log_jsonl, double* d_g_z1, double* d_g_z2, int64_t* lines_used) {
  std::map<int64_t, std::pair<double, double>> by_step;  // the last line of each step
  std::istringstream in(log_jsonl);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j.contains("D_G_z1") || !j.contains("D_G_z2")) continue;
    if (!j["step"].is_number() || !j["D_G_z1"].is_number() || !j["D_G_z2"].is_number()) continue;
    by_step[j["step"].get<int64_t>()] = {j["D_G_z1"].get<double>(), j["D_G_z2"].get<double>()};
  }
  if (by_step.empty()) return false;
  const int64_t last = by_step.rbegin()->first;
  double s1 = 0, s2 = 0;
  int64_t count = 0;
  for (const auto& [step, v] : by_step)
    if (4 * step > 3 * last) {  // step > ¾ of the last: the last step itself always counts
      s1 += v.first;
      s2 += v.second;
      ++count;
    }
  *d_g_z1 = s1 / double(count);
  *d_g_z2 = s2 / double(count);
  if (lines_used) *lines_used = count;
  return true;
}

// ---- the report ---------------------------------------------------------------------------------

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double rms_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
  return a.empty() ? 0.0 : std::sqrt(sum / double(a.size()));
}

// Images rows[k] of `all` gathered (n × size).
std::vector<float> gather(const float* all, const std::vector<int64_t>& rows, int64_t size) {
  std::vector<float> out(rows.size() * static_cast<size_t>(size));
  for (size_t k = 0; k < rows.size(); ++k) std::copy(all + rows[k] * size, all + (rows[k] + 1) * size, out.begin() + k * size);
  return out;
}

// Training slices that share audio with slice i (itself included): same file, starts less than one
// slice apart. Without per-slice bookkeeping only i itself.
bool shares_audio(const MelDatasetInfo& info, int64_t i, int64_t j) {
  if (i == j) return true;
  if (static_cast<int64_t>(info.slices.size()) != info.count || i >= info.count || j >= info.count) return false;
  const MelSliceInfo& a = info.slices[i];
  const MelSliceInfo& b = info.slices[j];
  return a.file == b.file && std::fabs(a.start_seconds - b.start_seconds) < info.mel.slice_seconds - 1e-9;
}

// For each query, the distance (dB) to its nearest training image; exclude_rows[k] >= 0 names the
// training slice query k is (its own audio is then left out, see shares_audio).
std::vector<double> nearest_training_db(const MelDatasetInfo& info, const float* queries, int64_t n_queries,
                                        const std::vector<int64_t>& exclude_rows, const float* train, int64_t n_train,
                                        int64_t size) {
  std::vector<double> nearest(static_cast<size_t>(n_queries), std::numeric_limits<double>::infinity());
#pragma omp parallel for schedule(dynamic)
  for (int64_t q = 0; q < n_queries; ++q) {
    const int64_t self = exclude_rows.empty() ? -1 : exclude_rows[q];
    double best = std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n_train; ++j) {
      if (self >= 0 && shares_audio(info, self, j)) continue;
      best = std::min(best, mel_image_distance_db(queries + q * size, train + j * size, size, info.mel.top_db));
    }
    nearest[q] = best;
  }
  return nearest;
}

// Spectral flatness of each image after listen's inversion at ref_db[k].
std::vector<double> flatness_after_inversion(const float* images, int64_t n, int64_t size, const MelParams& p,
                                             const std::vector<double>& ref_db, const ListenOptions& listen) {
  std::vector<double> flatness(static_cast<size_t>(n));
  ListenOptions o = listen;
  o.device = Device::CPU;  // slices in parallel on the CPU threads (listen batches them on CUDA instead)
#pragma omp parallel for schedule(dynamic)
  for (int64_t k = 0; k < n; ++k) {
    const std::vector<float> audio = invert_mel_image(images + k * size, p, ref_db[k], o, nullptr);
    flatness[k] = spectral_flatness(audio.data(), static_cast<int64_t>(audio.size()), p);
  }
  return flatness;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

void progress_line(const QualityOptions& o, const std::string& what) {
  if (o.progress) std::fprintf(stderr, "inspect quality: %s\n", what.c_str());
}

}  // namespace

bool QualityReport::all_pass() const {
  for (const QualityFigure& f : figures)
    if (!f.pass) return false;
  return !figures.empty();
}

std::string QualityReport::text() const {
  std::ostringstream out;
  out << "quality: " << n_generated << " generated slices against 2 sets of " << n_real
      << " real slices evenly spread over the " << n_train << " training slices\n";
  int k = 1;
  for (const QualityFigure& f : figures) {
    out << "  " << k++ << " [" << (f.pass ? "PASS" : "FAIL") << "] " << f.name << ": " << f.measure << " — bar "
        << f.bar;
    if (!std::isnan(f.real_value))
      out << "; real against real " << fmt("%.4g", f.real_value) << (f.real_pass ? " (inside)" : " (OUTSIDE)");
    out << "\n";
  }
  out << "quality: " << (all_pass() ? "all five bars passed" : "some bars FAILED") << "\n";
  return out.str();
}

QualityReport assess_quality(const MelDatasetInfo& info, const float* train, int64_t n_train, const float* generated,
                             int64_t n_gen, const std::string& log_jsonl, const QualityOptions& options) {
  if (n_train < 4) throw std::invalid_argument("inspect quality: the dataset needs at least 4 slices, it has " + std::to_string(n_train));
  if (n_gen < 2) throw std::invalid_argument("--n " + std::to_string(n_gen) + ": expected at least 2 generated slices");
  const MelParams& p = info.mel;
  const int64_t H = info.height, W = info.width, size = H * W;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double top_db = p.top_db;

  // Two interleaved evenly spread real sets: A the reference, B in the generated set's place.
  const int64_t R = std::max<int64_t>(2, std::min<int64_t>(options.n_real, n_train / 2));
  std::vector<int64_t> rows_a, rows_b;
  for (int64_t i = 0; i < R; ++i) {
    rows_a.push_back(std::min(n_train - 1, static_cast<int64_t>(std::floor((i + 0.25) * double(n_train) / double(R)))));
    rows_b.push_back(std::min(n_train - 1, static_cast<int64_t>(std::floor((i + 0.75) * double(n_train) / double(R)))));
  }
  const std::vector<float> real_a = gather(train, rows_a, size), real_b = gather(train, rows_b, size);

  QualityReport report;
  report.n_generated = n_gen;
  report.n_real = R;
  report.n_train = n_train;

  // 1 not collapsed.
  progress_line(options, "1/5 pairwise distances");
  {
    QualityFigure f;
    f.name = "not collapsed";
    f.value = mean_pairwise_distance_db(generated, n_gen, size, top_db);
    f.reference = mean_pairwise_distance_db(real_a.data(), R, size, top_db);
    f.real_value = mean_pairwise_distance_db(real_b.data(), R, size, top_db);
    const double bar = 0.5 * f.reference;
    f.measure = "mean pairwise distance of generated mel images " + fmt("%.2f", f.value) + " dB (real " +
                fmt("%.2f", f.reference) + " dB)";
    f.bar = ">= " + fmt("%.2f", bar) + " dB (half the real)";
    f.pass = f.value >= bar;
    f.real_pass = f.real_value >= bar;
    report.figures.push_back(f);
  }

  // 2 not copied.
  progress_line(options, "2/5 nearest training slices");
  {
    QualityFigure f;
    f.name = "not copied";
    f.value = median(nearest_training_db(info, generated, n_gen, {}, train, n_train, size));
    f.reference = median(nearest_training_db(info, real_a.data(), R, rows_a, train, n_train, size));
    f.real_value = median(nearest_training_db(info, real_b.data(), R, rows_b, train, n_train, size));
    const double bar = 0.5 * f.reference;
    f.measure = "median distance to the nearest training image " + fmt("%.2f", f.value) +
                " dB (among training images " + fmt("%.2f", f.reference) + " dB)";
    f.bar = ">= " + fmt("%.2f", bar) + " dB (half the training images')";
    f.pass = f.value >= bar;
    f.real_pass = f.real_value >= bar;
    report.figures.push_back(f);
  }

  // 3 tonal.
  progress_line(options, "3/5 spectral flatness after inversion (" + std::to_string(n_gen + 2 * R) + " slices)");
  {
    std::vector<double> ref_gen(static_cast<size_t>(n_gen), info.median_ref_db());
    auto refs_of = [&](const std::vector<int64_t>& rows) {
      std::vector<double> r;
      for (int64_t row : rows)
        r.push_back(static_cast<int64_t>(info.slices.size()) == n_train ? info.slices[row].ref_db : info.median_ref_db());
      return r;
    };
    QualityFigure f;
    f.name = "tonal";
    f.value = median(flatness_after_inversion(generated, n_gen, size, p, ref_gen, options.listen));
    f.reference = median(flatness_after_inversion(real_a.data(), R, size, p, refs_of(rows_a), options.listen));
    f.real_value = median(flatness_after_inversion(real_b.data(), R, size, p, refs_of(rows_b), options.listen));
    auto within = [&](double v) { return v <= 10.0 * f.reference && v >= f.reference / 10.0; };
    f.measure = "median spectral flatness " + fmt("%.4f", f.value) + " (real through the same inversion " +
                fmt("%.4f", f.reference) + ", ratio " + fmt("%.2f", f.value / f.reference) + "x)";
    f.bar = "within 10x: " + fmt("%.4f", f.reference / 10.0) + " .. " + fmt("%.4f", f.reference * 10.0);
    f.pass = within(f.value);
    f.real_pass = within(f.real_value);
    report.figures.push_back(f);
  }

  // 4 average mel spectrum.
  progress_line(options, "4/5 average mel spectrum");
  {
    const std::vector<double> train_mean = mean_band_db(train, n_train, H, W, top_db);
    // Two random halves (Fisher-Yates driven by splitmix64: the same split on every platform).
    std::vector<int64_t> order(static_cast<size_t>(n_train));
    for (int64_t i = 0; i < n_train; ++i) order[i] = i;
    uint64_t state = options.split_seed;
    auto next = [&]() {
      uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return z ^ (z >> 31);
    };
    for (int64_t i = n_train - 1; i > 0; --i) std::swap(order[i], order[next() % static_cast<uint64_t>(i + 1)]);
    const int64_t half = n_train / 2;
    const std::vector<int64_t> first(order.begin(), order.begin() + half), second(order.begin() + half, order.end());
    const std::vector<float> h1 = gather(train, first, size), h2 = gather(train, second, size);
    const double halves = rms_difference(mean_band_db(h1.data(), half, H, W, top_db),
                                         mean_band_db(h2.data(), n_train - half, H, W, top_db));
    QualityFigure f;
    f.name = "mel spectrum";
    f.value = rms_difference(mean_band_db(generated, n_gen, H, W, top_db), train_mean);
    f.reference = halves;
    f.real_value = rms_difference(mean_band_db(real_b.data(), R, H, W, top_db), train_mean);
    const double bar = std::max(3.0, 1.5 * halves);
    f.measure = "average mel spectrum " + fmt("%.2f", f.value) + " dB RMS from the training set's (two random "
                "halves of it: " + fmt("%.2f", halves) + " dB)";
    f.bar = "<= " + fmt("%.2f", bar) + " dB (3 dB, or 1.5x the halves where larger)";
    f.pass = f.value <= bar;
    f.real_pass = f.real_value <= bar;
    report.figures.push_back(f);
  }

  // 5 D not winning.
  progress_line(options, "5/5 D(G(z)) over the last quarter of the log");
  {
    QualityFigure f;
    f.name = "D not winning";
    f.reference = nan;
    f.real_value = nan;
    f.bar = "> 0.05";
    double z1 = 0, z2 = 0;
    int64_t used = 0;
    if (mean_dgz_last_quarter(log_jsonl, &z1, &z2, &used)) {
      f.value = std::min(z1, z2);
      f.measure = "mean D(G(z)) over the last quarter of the run " + fmt("%.4f", z1) + " before / " + fmt("%.4f", z2) +
                  " after the D update (" + std::to_string(used) + " logged steps)";
      f.pass = f.value > 0.05;
    } else {
      f.value = nan;
      f.measure = "no log lines with D_G_z1 and D_G_z2 (log.jsonl missing or empty)";
      f.pass = false;
    }
    report.figures.push_back(f);
  }
  return report;
}

QualityReport assess_quality(const std::string& checkpoint, const std::string& data_npy, const std::string& log_path,
                             const QualityOptions& options) {
  const ImageDataset data = load_image_dataset(data_npy);
  if (data.dtype != DType::F16 || data.sidecar_json.empty() || !is_mel_sidecar(data.sidecar_json))
    throw std::runtime_error("--data " + data_npy + ": expected a mel dataset from prepare-audio (float16 .npy with its "
                             "mel .json sidecar)");
  const MelDatasetInfo info = parse_mel_sidecar(data.sidecar_json, sidecar_path_for(data_npy));
  progress_line(options, "generating " + std::to_string(options.n_generated) + " slices from " + checkpoint);
  MelDatasetInfo trained_on;
  const std::vector<float> generated = generate_mel_images(checkpoint, options.n_generated, options.listen, &trained_on);
  if (trained_on.height != info.height || trained_on.width != info.width || trained_on.mel.sr != info.mel.sr ||
      trained_on.mel.n_fft != info.mel.n_fft || trained_on.mel.hop != info.mel.hop ||
      trained_on.mel.n_mels != info.mel.n_mels || trained_on.mel.slice_seconds != info.mel.slice_seconds)
    throw std::runtime_error("--data " + data_npy + ": its layout (" + std::to_string(info.height) + "×" +
                             std::to_string(info.width) + ", " + std::to_string(info.mel.n_mels) + " mels, " +
                             fmt("%g", info.mel.slice_seconds) + " s) is not the one " + checkpoint +
                             " was trained on (" + std::to_string(trained_on.height) + "×" +
                             std::to_string(trained_on.width) + ", " + std::to_string(trained_on.mel.n_mels) +
                             " mels, " + fmt("%g", trained_on.mel.slice_seconds) + " s)");
  const std::string log = log_path.empty() ? (fs::path(checkpoint).parent_path() / "log.jsonl").string() : log_path;
  std::string log_text;
  std::error_code ec;
  if (fs::exists(log, ec)) {
    std::ifstream in(log, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    log_text = ss.str();
  } else if (!log_path.empty()) {
    throw std::runtime_error("--log " + log_path + ": no such file");
  }
  // The nearest-training figure compares against every training slice, so they are all needed as float.
  std::vector<float> real(static_cast<size_t>(data.count * data.sample_size()));
  for (int64_t i = 0; i < data.count; ++i) data.sample_as_float(real.data() + i * data.sample_size(), i);
  return assess_quality(info, real.data(), data.count, generated.data(), options.n_generated, log_text, options);
}

}  // namespace ds
