// The run report page (report.h): reads what a run folder holds, draws the curves as inline SVG and
// inlines PNGs and WAVs as base64 data URIs, so the page needs nothing beside itself to open.
#include "engine/inspect/report.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/formats/atomic_file.h"
#include "engine/train/checkpoint.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ds {

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {
constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string base64_encode(const uint8_t* data, size_t size) {
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const uint32_t v = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8) | data[i + 2];
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += kBase64Alphabet[(v >> 6) & 63];
    out += kBase64Alphabet[v & 63];
  }
  if (size - i == 1) {
    const uint32_t v = uint32_t(data[i]) << 16;
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += "==";
  } else if (size - i == 2) {
    const uint32_t v = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8);
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += kBase64Alphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::vector<uint8_t> base64_decode(const std::string& text) {
  std::vector<uint8_t> out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const char* p = std::strchr(kBase64Alphabet, c);
    if (c == '\0' || !p) throw std::runtime_error(std::string("base64: unexpected character '") + c + "'");
    acc = (acc << 6) | static_cast<uint32_t>(p - kBase64Alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::vector<size_t> evenly_spaced_indices(size_t count, size_t max_count) {
  std::vector<size_t> out;
  if (count == 0 || max_count == 0) return out;
  if (count <= max_count) {
    for (size_t i = 0; i < count; ++i) out.push_back(i);
    return out;
  }
  if (max_count == 1) return {count - 1};  // the last grid says most about the run
  for (size_t i = 0; i < max_count; ++i) {
    const size_t k = static_cast<size_t>(std::llround(double(i) * double(count - 1) / double(max_count - 1)));
    if (out.empty() || out.back() != k) out.push_back(k);
  }
  return out;
}

namespace {

std::string fmt_number(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string fmt_coord(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string fmt_bytes(int64_t bytes) {
  char buf[32];
  if (bytes >= (1 << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / double(1 << 20));
  else if (bytes >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(bytes));
  return buf;
}

std::string data_uri(const char* mime, const std::vector<uint8_t>& bytes) {
  return std::string("data:") + mime + ";base64," + base64_encode(bytes.data(), bytes.size());
}

// ---------------------------------------------------------------- the log

struct LogPoint {
  std::map<std::string, double> scalars;  // finite or NaN (a JSON null: the trainer's NaN)
  std::vector<double> swd_levels;
};

struct RunLog {
  std::map<int64_t, LogPoint> steps;  // a resumed run re-logs steps: the later line wins
  int64_t unreadable = 0, first_unreadable_line = 0, restarts = 0;
};

RunLog read_log(const fs::path& path) {
  RunLog log;
  std::ifstream in(path);
  std::string line;
  int64_t line_no = 0, previous_step = std::numeric_limits<int64_t>::min();
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) {
      if (log.unreadable++ == 0) log.first_unreadable_line = line_no;
      continue;
    }
    const int64_t step = j["step"].get<int64_t>();
    if (step <= previous_step) ++log.restarts;
    previous_step = step;
    LogPoint point;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "step") continue;
      if (it->is_number()) point.scalars[it.key()] = it->get<double>();
      else if (it->is_null()) point.scalars[it.key()] = std::numeric_limits<double>::quiet_NaN();
    }
    if (j.contains("swd_levels") && j["swd_levels"].is_array())
      for (const json& v : j["swd_levels"])
        point.swd_levels.push_back(v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN());
    log.steps[step] = std::move(point);
  }
  return log;
}

// ---------------------------------------------------------------- SVG charts

struct Series {
  std::string name, color;
  std::vector<std::pair<double, double>> points;  // (step, value); NaN values break the line
  bool dashed = false;
};

// Tick positions of a "nice" step (1, 2 or 5 × 10^k) covering [lo, hi] with about `target` ticks.
std::vector<double> nice_ticks(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * magnitude) { step = m * magnitude; break; }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

// A line chart with axes, ticks, axis labels and a legend. y_range fixes the value axis (D outputs
// are probabilities in [0, 1]); otherwise it spans the finite values.
std::string svg_line_chart(const std::string& title, const std::string& y_label, const std::vector<Series>& series,
                           std::optional<std::pair<double, double>> y_range = std::nullopt) {
  const double W = 900, H = 320, left = 70, right = 220, top = 34, bottom = 50;  // legend on the right
  const double pw = W - left - right, ph = H - top - bottom;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const Series& s : series)
    for (auto [x, y] : s.points) {
      x0 = std::min(x0, x); x1 = std::max(x1, x);
      if (std::isfinite(y)) { y0 = std::min(y0, y); y1 = std::max(y1, y); }
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1;
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y_range) y0 = y_range->first, y1 = y_range->second;
  if (!std::isfinite(y0)) y0 = 0, y1 = 1;
  if (y1 == y0) { const double pad = std::max(std::abs(y0) * 0.1, 0.5); y0 -= pad; y1 += pad; }
  if (!y_range) { const double pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad; }
  auto X = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"" << W << "\" height=\"" << H
    << "\" viewBox=\"0 0 " << W << ' ' << H << "\" role=\"img\" aria-label=\"" << html_escape(title) << "\">\n";
  o << "<rect x=\"0\" y=\"0\" width=\"" << W << "\" height=\"" << H << "\" fill=\"#ffffff\"/>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"20\" text-anchor=\"middle\" class=\"title\">" << html_escape(title) << "</text>\n";
  for (double t : nice_ticks(x0, x1, 8)) {
    o << "<line x1=\"" << fmt_coord(X(t)) << "\" y1=\"" << top << "\" x2=\"" << fmt_coord(X(t)) << "\" y2=\""
      << top + ph << "\" class=\"grid\"/>";
    o << "<text x=\"" << fmt_coord(X(t)) << "\" y=\"" << top + ph + 16 << "\" text-anchor=\"middle\" class=\"tick\">"
      << fmt_number(t) << "</text>\n";
  }
  for (double t : nice_ticks(y0, y1, 6)) {
    o << "<line x1=\"" << left << "\" y1=\"" << fmt_coord(Y(t)) << "\" x2=\"" << left + pw << "\" y2=\""
      << fmt_coord(Y(t)) << "\" class=\"grid\"/>";
    o << "<text x=\"" << left - 6 << "\" y=\"" << fmt_coord(Y(t) + 4) << "\" text-anchor=\"end\" class=\"tick\">"
      << fmt_number(t) << "</text>\n";
  }
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" class=\"frame\"/>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\" class=\"label\">step</text>\n";
  o << "<text x=\"16\" y=\"" << top + ph / 2 << "\" text-anchor=\"middle\" class=\"label\" transform=\"rotate(-90 16 "
    << top + ph / 2 << ")\">" << html_escape(y_label) << "</text>\n";
  double legend_y = top + 14;
  for (const Series& s : series) {
    std::string d;
    bool pen_down = false;
    size_t drawn = 0;
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) { pen_down = false; continue; }
      const double cy = std::clamp(Y(y), top, top + ph);  // a fixed range clips, it never spills
      d += (pen_down ? " L" : (d.empty() ? "M" : " M")) + fmt_coord(X(x)) + ' ' + fmt_coord(cy);
      pen_down = true;
      ++drawn;
    }
    if (drawn > 0)
      o << "<path d=\"" << d << "\" fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"1.6\""
        << (s.dashed ? " stroke-dasharray=\"5 3\"" : "") << " data-series=\"" << html_escape(s.name) << "\"/>\n";
    if (drawn == 1)  // a single point draws no line: mark it
      for (auto [x, y] : s.points)
        if (std::isfinite(y))
          o << "<circle cx=\"" << fmt_coord(X(x)) << "\" cy=\"" << fmt_coord(std::clamp(Y(y), top, top + ph))
            << "\" r=\"3\" fill=\"" << s.color << "\"/>\n";
    o << "<line x1=\"" << left + pw + 12 << "\" y1=\"" << legend_y - 4 << "\" x2=\"" << left + pw + 32 << "\" y2=\""
      << legend_y - 4 << "\" stroke=\"" << s.color << "\" stroke-width=\"2\""
      << (s.dashed ? " stroke-dasharray=\"5 3\"" : "") << "/>";
    o << "<text x=\"" << left + pw + 38 << "\" y=\"" << legend_y << "\" class=\"legend\">" << html_escape(s.name)
      << (drawn == 0 ? " (no finite values)" : "") << "</text>\n";
    legend_y += 16;
  }
  o << "</svg>\n";
  return o.str();
}

Series log_series(const RunLog& log, const std::string& key, const std::string& name, const std::string& color,
                  bool dashed = false) {
  Series s{name, color, {}, dashed};
  for (const auto& [step, point] : log.steps) {
    auto it = point.scalars.find(key);
    if (it != point.scalars.end()) s.points.emplace_back(double(step), it->second);
  }
  return s;
}

// Horizontal box plots of distance distributions {min, p05, median, p95, max} on one shared axis.
std::string svg_distance_boxes(const std::vector<std::pair<std::string, json>>& rows) {
  const char* keys[] = {"min", "p05", "median", "p95", "max"};
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& [name, d] : rows)
    for (const char* k : keys)
      if (d.contains(k) && d[k].is_number()) lo = std::min(lo, d[k].get<double>()), hi = std::max(hi, d[k].get<double>());
  if (!std::isfinite(lo)) return "";
  if (hi == lo) lo -= 0.5, hi += 0.5;
  const double W = 900, left = 150, right = 20, row_h = 44, top = 20;
  const double H = top + row_h * rows.size() + 40, pw = W - left - right;
  auto X = [&](double v) { return left + (v - lo) / (hi - lo) * pw; };
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"" << W << "\" height=\"" << H
    << "\" viewBox=\"0 0 " << W << ' ' << H << "\" role=\"img\" aria-label=\"nearest-neighbour distances\">\n";
  o << "<rect x=\"0\" y=\"0\" width=\"" << W << "\" height=\"" << H << "\" fill=\"#ffffff\"/>\n";
  const double axis_y = top + row_h * rows.size();
  for (double t : nice_ticks(lo, hi, 8))
    o << "<line x1=\"" << fmt_coord(X(t)) << "\" y1=\"" << top << "\" x2=\"" << fmt_coord(X(t)) << "\" y2=\"" << axis_y
      << "\" class=\"grid\"/><text x=\"" << fmt_coord(X(t)) << "\" y=\"" << axis_y + 16
      << "\" text-anchor=\"middle\" class=\"tick\">" << fmt_number(t) << "</text>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 6
    << "\" text-anchor=\"middle\" class=\"label\">L2 distance to the nearest training item</text>\n";
  const char* colors[] = {"#d62728", "#1f77b4"};
  for (size_t r = 0; r < rows.size(); ++r) {
    const json& d = rows[r].second;
    auto v = [&](const char* k) { return d.contains(k) && d[k].is_number() ? d[k].get<double>() : std::nan(""); };
    const double cy = top + row_h * r + row_h / 2;
    o << "<text x=\"" << left - 8 << "\" y=\"" << cy + 4 << "\" text-anchor=\"end\" class=\"legend\">"
      << html_escape(rows[r].first) << "</text>\n";
    const char* c = colors[r % 2];
    if (std::isfinite(v("min")) && std::isfinite(v("max")))
      o << "<line x1=\"" << fmt_coord(X(v("min"))) << "\" y1=\"" << cy << "\" x2=\"" << fmt_coord(X(v("max")))
        << "\" y2=\"" << cy << "\" stroke=\"" << c << "\"/>\n";
    if (std::isfinite(v("p05")) && std::isfinite(v("p95")))
      o << "<rect x=\"" << fmt_coord(X(v("p05"))) << "\" y=\"" << cy - 10 << "\" width=\""
        << fmt_coord(std::max(1.0, X(v("p95")) - X(v("p05")))) << "\" height=\"20\" fill=\"" << c
        << "\" fill-opacity=\"0.25\" stroke=\"" << c << "\"/>\n";
    if (std::isfinite(v("median")))
      o << "<line x1=\"" << fmt_coord(X(v("median"))) << "\" y1=\"" << cy - 12 << "\" x2=\"" << fmt_coord(X(v("median")))
        << "\" y2=\"" << cy + 12 << "\" stroke=\"" << c << "\" stroke-width=\"3\"/>\n";
  }
  o << "</svg>\n";
  return o.str();
}

// ---------------------------------------------------------------- files of the run

// The "__metadata__" of a safetensors file from its header alone (a checkpoint can be large).
std::map<std::string, std::string> safetensors_metadata(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open");
  uint8_t len_bytes[8];
  if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) throw std::runtime_error("shorter than its 8-byte header length");
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | len_bytes[i];
  const uint64_t file_size = fs::file_size(path);
  if (len > (100u << 20) || len > file_size - 8) throw std::runtime_error("header length " + std::to_string(len) + " past the file or over 100 MB");
  std::string header(len, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(len))) throw std::runtime_error("header cut short");
  const json j = json::parse(header, nullptr, false);
  if (!j.is_object()) throw std::runtime_error("header is not a JSON object");
  std::map<std::string, std::string> meta;
  if (j.contains("__metadata__") && j["__metadata__"].is_object())
    for (auto it = j["__metadata__"].begin(); it != j["__metadata__"].end(); ++it)
      if (it->is_string()) meta[it.key()] = it->get<std::string>();
  return meta;
}

std::string relative_name(const fs::path& path, const fs::path& run) {
  return fs::relative(path, run).generic_string();
}

bool has_extension(const fs::path& p, const char* ext_lower) {
  std::string e = p.extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e == ext_lower;
}

// The step in "step_0001234.png", or -1.
int64_t grid_step(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.size() <= 9 || name.compare(name.size() - 4, 4, ".png") != 0) return -1;
  const std::string digits = name.substr(5, name.size() - 9);
  if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

// A JSON value as a table cell: strings as they are, the rest as compact JSON.
std::string cell(const json& v) { return html_escape(v.is_string() ? v.get<std::string>() : v.dump()); }

// A flat key/value table of a JSON object, nested objects as "parent.child" rows.
void json_rows(std::ostringstream& o, const json& j, const std::string& prefix) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object() && !it->empty()) json_rows(o, *it, key);
    else o << "<tr><th>" << html_escape(key) << "</th><td>" << cell(*it) << "</td></tr>\n";
  }
}

const char* kStyle = R"css(
body{font-family:sans-serif;margin:24px;max-width:1180px;color:#222;background:#fafafa}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}
.sub{color:#666} .missing{background:#fff4e0;border:1px solid #e0b060;padding:8px 14px}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:normal} .chart{display:block;margin:8px 0;border:1px solid #ddd}
.chart .title{font-size:14px;font-weight:bold} .chart .tick{font-size:11px;fill:#555} .chart .label{font-size:12px;fill:#333}
.chart .legend{font-size:12px} .chart .grid{stroke:#e6e6e6} .chart .frame{fill:none;stroke:#888}
.grids{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}
figure img{display:block;image-rendering:pixelated;max-width:100%} figcaption{font-size:12px;color:#444;margin-top:4px}
.clip{display:flex;align-items:center;gap:12px;margin:6px 0} .clip img{height:64px;image-rendering:pixelated}
pre{background:#fff;border:1px solid #ddd;padding:8px;font-size:12px;overflow-x:auto}
.verdict{font-size:15px;font-weight:bold}
)css";

}  // namespace

std::string build_run_report(ReportSummary* summary_out, const std::string& run_dir, const ReportLimits& limits) {
  ReportSummary summary;
  const fs::path run(run_dir);
  std::error_code ec;
  if (!fs::is_directory(run, ec))
    throw std::runtime_error(run_dir + ": not a folder (expected a run folder written by `darkstar train --out`)");
  const fs::path log_path = run / "log.jsonl", last_path = run / "last.safetensors", samples_dir = run / "samples";
  if (!fs::exists(log_path) && !fs::exists(last_path) && !fs::is_directory(samples_dir))
    throw std::runtime_error(run_dir + ": not a darkstar run folder (none of log.jsonl, last.safetensors, samples/ "
                                       "in it; expected the --out folder of `darkstar train`)");
  auto missing = [&](const std::string& sentence) { summary.missing.push_back(sentence); };
  int64_t image_bytes_left = limits.max_image_bytes;
  std::vector<std::string> images_skipped;
  // A PNG as a data URI within the image byte cap, or nothing (and a line saying why).
  auto inline_png = [&](const fs::path& p) -> std::optional<std::string> {
    std::error_code e;
    const auto size = static_cast<int64_t>(fs::file_size(p, e));
    const std::string name = relative_name(p, run);
    if (e) { images_skipped.push_back(name + ": unreadable"); return std::nullopt; }
    if (size > image_bytes_left) {
      images_skipped.push_back(name + ": " + fmt_bytes(size) + " would pass the " + fmt_bytes(limits.max_image_bytes) +
                               " cap on inlined images");
      return std::nullopt;
    }
    image_bytes_left -= size;
    return data_uri("image/png", read_file_bytes(p.string()));
  };

  // ---- configuration: TrainConfig and the dataset sidecar live in last.safetensors' metadata
  std::map<std::string, std::string> meta;
  std::string meta_source;
  for (const fs::path& p : {last_path, run / "netG.safetensors"}) {
    if (!fs::exists(p)) continue;
    try {
      meta = safetensors_metadata(p);
      meta_source = p.filename().string();
      break;
    } catch (const std::exception& e) {
      missing(p.filename().string() + " is unreadable (" + e.what() + "): its configuration is not shown.");
    }
  }
  json train_cfg, model_cfg, dataset_cfg;
  if (meta.count(kMetaTrain)) train_cfg = json::parse(meta[kMetaTrain], nullptr, false);
  if (meta.count(kMetaModel)) model_cfg = json::parse(meta[kMetaModel], nullptr, false);
  if (meta.count(kMetaDataset)) dataset_cfg = json::parse(meta[kMetaDataset], nullptr, false);
  summary.has_config = train_cfg.is_object() || model_cfg.is_object();
  if (!summary.has_config) missing("No training configuration found (it is stored in last.safetensors, which is absent or holds none).");

  // ---- the log
  RunLog log;
  if (fs::exists(log_path)) log = read_log(log_path);
  else missing("No log.jsonl: no loss or D curves.");
  summary.log_steps = static_cast<int64_t>(log.steps.size());
  summary.unreadable_log_lines = log.unreadable;
  if (fs::exists(log_path) && log.steps.empty()) missing("log.jsonl holds no readable line: no curves.");
  else if (fs::exists(log_path) && log.steps.size() < 2)
    missing("log.jsonl holds a single logged step: the curves are one point each.");
  bool any_swd = false;
  for (const auto& [step, p] : log.steps) any_swd = any_swd || p.scalars.count("swd_mean") || !p.swd_levels.empty();
  summary.has_swd = any_swd;
  if (!any_swd) missing("No SWD values in log.jsonl (lines with \"swd_mean\" / \"swd_levels\"): no SWD curve.");

  // ---- sample grids
  std::vector<std::pair<int64_t, fs::path>> grids;
  if (fs::is_directory(samples_dir))
    for (const auto& entry : fs::directory_iterator(samples_dir, ec)) {
      const int64_t step = grid_step(entry.path().filename().string());
      if (step >= 0 && entry.is_regular_file()) grids.emplace_back(step, entry.path());
    }
  std::sort(grids.begin(), grids.end());
  if (grids.empty()) missing("No sample grids (samples/step_*.png).");

  std::ostringstream o;
  const std::string run_name = fs::absolute(run).lexically_normal().filename().string().empty()
                                   ? fs::absolute(run).lexically_normal().parent_path().filename().string()
                                   : fs::absolute(run).lexically_normal().filename().string();
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>darkstar run: "
    << html_escape(run_name) << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n";
  o << "<h1>darkstar run: " << html_escape(run_name) << "</h1>\n<p class=\"sub\">folder "
    << html_escape(fs::absolute(run).lexically_normal().string()) << "; page written by <code>darkstar report</code>";
  if (!log.steps.empty()) {
    o << "; last logged step " << log.steps.rbegin()->first;
    if (train_cfg.is_object() && train_cfg.contains("steps")) o << " of " << cell(train_cfg["steps"]);
  }
  o << "</p>\n";
  const size_t missing_anchor = static_cast<size_t>(o.tellp());  // the missing list goes here, once all is known

  // ---- curves
  o << "<h2 id=\"curves\">Losses and discriminator outputs</h2>\n";
  if (log.unreadable > 0)
    o << "<p>" << log.unreadable << " line(s) of log.jsonl were not readable (first: line " << log.first_unreadable_line
      << "; a line cut short by a crash looks like this) and are left out.</p>\n";
  if (log.restarts > 0)
    o << "<p>The log goes back in steps " << log.restarts
      << " time(s) (a resumed run logs again from its checkpoint): each step shows its last logged value.</p>\n";
  if (!log.steps.empty()) {
    o << svg_line_chart("Loss_D and Loss_G", "loss",
                        {log_series(log, "Loss_D", "Loss_D", "#d62728"), log_series(log, "Loss_G", "Loss_G", "#1f77b4")});
    o << svg_line_chart("D(x) and D(G(z))", "discriminator output",
                        {log_series(log, "D_x", "D(x)", "#2ca02c"),
                         log_series(log, "D_G_z1", "D(G(z)) before D's update", "#ff7f0e"),
                         log_series(log, "D_G_z2", "D(G(z)) after D's update", "#9467bd", true)},
                        std::make_pair(0.0, 1.0));
  } else {
    o << "<p>No logged steps: no curves.</p>\n";
  }

  // ---- SWD
  if (any_swd) {
    o << "<h2 id=\"swd\">Sliced Wasserstein distance</h2>\n";
    std::vector<Series> swd{log_series(log, "swd_mean", "SWD mean", "#000000")};
    size_t levels = 0;
    for (const auto& [step, p] : log.steps) levels = std::max(levels, p.swd_levels.size());
    const char* palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
    for (size_t l = 0; l < levels; ++l) {
      Series s{"level " + std::to_string(l) + (l == 0 ? " (finest)" : (l + 1 == levels ? " (coarsest)" : "")),
               palette[l % 8], {}, true};
      for (const auto& [step, p] : log.steps)
        if (l < p.swd_levels.size()) s.points.emplace_back(double(step), p.swd_levels[l]);
      swd.push_back(std::move(s));
    }
    o << svg_line_chart("SWD against the fixed real subset (lower is closer)", "SWD", swd);
  }

  // ---- sample grids
  o << "<h2 id=\"samples\">Samples over time (fixed noise)</h2>\n";
  if (grids.empty()) {
    o << "<p>No sample grids in samples/.</p>\n";
  } else {
    const std::vector<size_t> keep = evenly_spaced_indices(grids.size(), static_cast<size_t>(std::max(1, limits.max_sample_grids)));
    const std::set<size_t> kept(keep.begin(), keep.end());
    o << "<p>" << keep.size() << " of " << grids.size() << " grids";
    if (keep.size() < grids.size()) o << ", evenly spaced, the first and last included";
    o << ".</p>\n<div class=\"grids\">\n";
    for (size_t i : keep) {
      const std::string name = grids[i].second.filename().string();
      if (auto uri = inline_png(grids[i].second)) {
        o << "<figure><img src=\"" << *uri << "\" alt=\"" << html_escape(name) << "\"><figcaption>step "
          << grids[i].first << (i + 1 == grids.size() ? " (last)" : "") << "</figcaption></figure>\n";
        summary.grids_shown.push_back(name);
      } else {
        summary.grids_left_out.push_back(name);
      }
    }
    o << "</div>\n";
    for (size_t i = 0; i < grids.size(); ++i)
      if (!kept.count(i)) summary.grids_left_out.push_back(grids[i].second.filename().string());
    std::sort(summary.grids_left_out.begin(), summary.grids_left_out.end());
    if (!summary.grids_left_out.empty()) {
      o << "<p>Left out (" << summary.grids_left_out.size() << "): ";
      for (size_t i = 0; i < summary.grids_left_out.size(); ++i)
        o << (i ? ", " : "") << html_escape(summary.grids_left_out[i]);
      o << ".</p>\n";
    }
  }

  // ---- audio: RUN/gen/*.wav first (what the quickstart's listen writes), then any other WAV in the run
  std::vector<fs::path> wavs;
  std::set<fs::path> seen;
  if (fs::is_directory(run / "gen")) {
    std::vector<fs::path> gen;
    for (const auto& e : fs::directory_iterator(run / "gen", ec))
      if (e.is_regular_file() && has_extension(e.path(), ".wav")) gen.push_back(e.path());
    std::sort(gen.begin(), gen.end());
    for (const fs::path& p : gen) wavs.push_back(p), seen.insert(p);
  }
  {
    std::vector<fs::path> others;
    for (auto it = fs::recursive_directory_iterator(run, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file() && has_extension(it->path(), ".wav") && !seen.count(it->path()))
        others.push_back(it->path());
    }
    std::sort(others.begin(), others.end());
    wavs.insert(wavs.end(), others.begin(), others.end());
  }
  o << "<h2 id=\"audio\">Generated audio</h2>\n";
  if (wavs.empty()) {
    missing("No WAV files in the run folder (gen/*.wav is where `darkstar listen --out RUN/gen` puts them).");
    o << "<p>No WAV files in the run folder.</p>\n";
  } else {
    int64_t audio_bytes_left = limits.max_audio_bytes;
    for (const fs::path& p : wavs) {
      const std::string name = relative_name(p, run);
      std::error_code e;
      const auto size = static_cast<int64_t>(fs::file_size(p, e));
      if (e) { summary.audio_skipped.push_back(name + ": unreadable"); continue; }
      if (static_cast<int>(summary.audio_shown.size()) >= limits.max_audio_clips) {
        summary.audio_skipped.push_back(name + ": over the cap of " + std::to_string(limits.max_audio_clips) + " clips");
        continue;
      }
      if (size > audio_bytes_left) {
        summary.audio_skipped.push_back(name + ": " + fmt_bytes(size) + " would pass the " +
                                        fmt_bytes(limits.max_audio_bytes) + " cap on inlined audio");
        continue;
      }
      audio_bytes_left -= size;
      o << "<div class=\"clip\"><audio controls preload=\"metadata\" src=\""
        << data_uri("audio/wav", read_file_bytes(p.string())) << "\"></audio><span>" << html_escape(name) << " ("
        << fmt_bytes(size) << ")</span>";
      fs::path png = p;
      png.replace_extension(".png");
      if (fs::is_regular_file(png))
        if (auto uri = inline_png(png))
          o << "<img src=\"" << *uri << "\" alt=\"" << html_escape(relative_name(png, run)) << "\">";
      o << "</div>\n";
      summary.audio_shown.push_back(name);
    }
    if (!summary.audio_skipped.empty()) {
      o << "<p>Skipped (" << summary.audio_skipped.size() << "):</p><ul>\n";
      for (const std::string& s : summary.audio_skipped) o << "<li>" << html_escape(s) << "</li>\n";
      o << "</ul>\n";
    }
  }

  // ---- memorisation
  const fs::path mem_dir = run / "memorization";
  if (fs::exists(mem_dir / "summary.json")) {
    o << "<h2 id=\"memorization\">Memorisation</h2>\n";
    const json m = json::parse(read_file_text((mem_dir / "summary.json").string()), nullptr, false);
    if (!m.is_object()) {
      missing("memorization/summary.json is not a JSON object: its figures are not shown.");
      o << "<p>memorization/summary.json is not readable JSON.</p>\n";
    } else {
      summary.has_memorization = true;
      if (m.contains("verdict")) o << "<p class=\"verdict\">" << cell(m["verdict"]) << "</p>\n";
      o << "<p>";
      for (const char* k : {"num_samples", "num_heldout", "k"})
        if (m.contains(k)) o << html_escape(k) << " = " << cell(m[k]) << "; ";
      o << "distances are L2 in the model's input space, to the nearest training item.</p>\n";
      std::vector<std::pair<std::string, json>> rows;
      if (m.contains("sample_nn_distance") && m["sample_nn_distance"].is_object())
        rows.emplace_back("generated samples", m["sample_nn_distance"]);
      if (m.contains("heldout_nn_distance") && m["heldout_nn_distance"].is_object())
        rows.emplace_back("held-out training", m["heldout_nn_distance"]);
      if (!rows.empty()) {
        o << svg_distance_boxes(rows);
        o << "<table><tr><th></th><th>min</th><th>p05</th><th>median</th><th>p95</th><th>max</th></tr>\n";
        for (const auto& [name, d] : rows) {
          o << "<tr><th>" << html_escape(name) << "</th>";
          for (const char* k : {"min", "p05", "median", "p95", "max"})
            o << "<td>" << (d.contains(k) ? (d[k].is_number() ? fmt_number(d[k].get<double>()) : cell(d[k])) : "") << "</td>";
          o << "</tr>\n";
        }
        o << "</table>\n";
      }
    }
    if (fs::is_regular_file(mem_dir / "neighbours.png")) {
      if (auto uri = inline_png(mem_dir / "neighbours.png"))
        o << "<figure><img src=\"" << *uri << "\" alt=\"memorization/neighbours.png\" style=\"max-width:100%\">"
          << "<figcaption>each sample, then its nearest training items</figcaption></figure>\n";
    } else {
      missing("memorization/summary.json without memorization/neighbours.png.");
    }
  } else {
    missing("No memorisation figures (memorization/summary.json, from `darkstar inspect memorization --out RUN/memorization`).");
  }

  // ---- quality figures (apps/quickstart.sh keeps `inspect quality`'s output there)
  for (const char* name : {"quality.txt", "gen/quality.txt"})
    if (fs::is_regular_file(run / name)) {
      o << "<h2 id=\"quality\">Quality figures (" << name << ")</h2>\n<pre>"
        << html_escape(read_file_text((run / name).string())) << "</pre>\n";
      break;
    }

  if (!images_skipped.empty()) {
    o << "<p>Images not inlined (" << images_skipped.size() << "):</p><ul>\n";
    for (const std::string& s : images_skipped) o << "<li>" << html_escape(s) << "</li>\n";
    o << "</ul>\n";
  }

  // ---- configuration
  o << "<h2 id=\"config\">Configuration</h2>\n";
  if (summary.has_config) {
    o << "<p>From " << html_escape(meta_source) << ".</p>\n<table>\n";
    if (train_cfg.is_object()) json_rows(o, train_cfg, "");
    else json_rows(o, model_cfg, "model");
    o << "</table>\n";
  } else {
    o << "<p>No configuration found.</p>\n";
  }
  if (dataset_cfg.is_object())
    o << "<details><summary>dataset sidecar</summary><pre>" << html_escape(dataset_cfg.dump(2)) << "</pre></details>\n";
  o << "</body>\n</html>\n";

  std::string page = o.str();
  std::ostringstream m;
  if (!summary.missing.empty()) {
    m << "<div class=\"missing\"><p>Missing from this run folder:</p><ul>\n";
    for (const std::string& s : summary.missing) m << "<li>" << html_escape(s) << "</li>\n";
    m << "</ul></div>\n";
  }
  page.insert(missing_anchor, m.str());
  summary.html_path = (run / "report.html").string();
  if (summary_out) *summary_out = std::move(summary);
  return page;
}

ReportSummary write_run_report(const std::string& run_dir, const ReportLimits& limits) {
  ReportSummary summary;
  const std::string page = build_run_report(&summary, run_dir, limits);
  write_text_atomic(summary.html_path, page);
  return summary;
}

}  // namespace ds
