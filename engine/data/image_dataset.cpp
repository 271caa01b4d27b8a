// prepare-images (folder or IDX -> uint8 N×C×H×W .npy + .json sidecar) and load_image_dataset.
//
// Why area averaging for downscaling: it is the exact mean of the source over each output pixel's
// footprint (PIL's BOX filter, OpenCV's INTER_AREA), so every source pixel contributes with its exact
// coverage, mean brightness is preserved, integer factors reduce to plain block means, and having no
// negative lobes it never rings or overshoots [0, 255]. Aliasing is suppressed as well as a box prefilter
// can, which is what matters for photos shrunk 4-20x into 64×64; a Lanczos kernel would be sharper but
// rings. Enlarging (rare: sources smaller than the target) uses bilinear, where no aliasing is possible.
#include "engine/data/image_dataset.h"

#include <stb_image.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/formats/atomic_file.h"
#include "engine/nn/cpu/image.h"

namespace fs = std::filesystem;

namespace ds {

bool is_dcgan_size(int size) {
  if (size < 4 || size % 4 != 0) return false;
  const int k = size / 4;
  return (k & (k - 1)) == 0;
}

void check_dcgan_size(int value, const std::string& flag) {
  if (!is_dcgan_size(value)) {
    throw std::runtime_error(flag + " " + std::to_string(value) +
                             ": expected 4·2^k pixels (e.g. 32, 64, 128, 256), since the DCGAN generator starts "
                             "from a 4-pixel map and doubles it per layer");
  }
}

std::string sidecar_path_for(const std::string& npy_path) {
  const std::string suffix = ".npy";
  if (npy_path.size() > suffix.size() && npy_path.compare(npy_path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return npy_path.substr(0, npy_path.size() - suffix.size()) + ".json";
  }
  return npy_path + ".json";
}

// ---- resampling --------------------------------------------------------------------------------

namespace {

// For one axis: the source taps and weights of every output position.
struct AxisKernel {
  std::vector<int> first;         // per output: index into taps
  std::vector<int> count;         // per output: number of taps
  std::vector<int> tap_index;     // source index
  std::vector<float> tap_weight;  // weights of one output sum to 1
};

AxisKernel make_axis_kernel(int in, int out) {
  AxisKernel k;
  k.first.resize(out);
  k.count.resize(out);
  if (out < in) {
    // Output i covers [i*scale, (i+1)*scale) in source pixels; source j covers [j, j+1).
    const double scale = static_cast<double>(in) / out;
    for (int i = 0; i < out; ++i) {
      const double lo = i * scale, hi = (i + 1) * scale;
      k.first[i] = static_cast<int>(k.tap_index.size());
      for (int j = static_cast<int>(std::floor(lo)); j < std::min(in, static_cast<int>(std::ceil(hi))); ++j) {
        const double overlap = std::min<double>(hi, j + 1) - std::max<double>(lo, j);
        if (overlap <= 1e-12) continue;
        k.tap_index.push_back(j);
        k.tap_weight.push_back(static_cast<float>(overlap / scale));
      }
      k.count[i] = static_cast<int>(k.tap_index.size()) - k.first[i];
    }
  } else {
    // Bilinear with pixel centres at +0.5 (align_corners=False), clamped at the edges; equal sizes give
    // exactly the identity (x = i, weight 1).
    const double scale = static_cast<double>(in) / out;
    for (int i = 0; i < out; ++i) {
      double x = (i + 0.5) * scale - 0.5;
      x = std::min<double>(std::max(x, 0.0), in - 1);
      const int j0 = static_cast<int>(std::floor(x));
      const int j1 = std::min(j0 + 1, in - 1);
      const float frac = static_cast<float>(x - j0);
      k.first[i] = static_cast<int>(k.tap_index.size());
      k.tap_index.push_back(j0);
      k.tap_weight.push_back(1.0f - frac);
      if (frac > 0.0f && j1 != j0) {
        k.tap_index.push_back(j1);
        k.tap_weight.push_back(frac);
      }
      k.count[i] = static_cast<int>(k.tap_index.size()) - k.first[i];
    }
  }
  return k;
}

}  // namespace

void resample_plane(float* out, const float* in, int in_h, int in_w, int out_h, int out_w) {
  const AxisKernel horizontal = make_axis_kernel(in_w, out_w);
  const AxisKernel vertical = make_axis_kernel(in_h, out_h);
  std::vector<float> rows(static_cast<size_t>(in_h) * out_w);  // in_h × out_w after the horizontal pass
  for (int y = 0; y < in_h; ++y) {
    const float* src = in + static_cast<size_t>(y) * in_w;
    for (int x = 0; x < out_w; ++x) {
      float sum = 0.0f;
      for (int t = horizontal.first[x]; t < horizontal.first[x] + horizontal.count[x]; ++t) {
        sum += horizontal.tap_weight[t] * src[horizontal.tap_index[t]];
      }
      rows[static_cast<size_t>(y) * out_w + x] = sum;
    }
  }
  for (int y = 0; y < out_h; ++y) {
    float* dst = out + static_cast<size_t>(y) * out_w;
    std::fill(dst, dst + out_w, 0.0f);
    for (int t = vertical.first[y]; t < vertical.first[y] + vertical.count[y]; ++t) {
      const float weight = vertical.tap_weight[t];
      const float* src = rows.data() + static_cast<size_t>(vertical.tap_index[t]) * out_w;
      for (int x = 0; x < out_w; ++x) dst[x] += weight * src[x];
    }
  }
}

// ---- one image ---------------------------------------------------------------------------------

namespace {

uint8_t to_byte(float v) { return static_cast<uint8_t>(std::lround(std::min(255.0f, std::max(0.0f, v)))); }

float border_median(const float* plane, int h, int w) {
  std::vector<float> ring;
  for (int x = 0; x < w; ++x) {
    ring.push_back(plane[x]);
    if (h > 1) ring.push_back(plane[static_cast<size_t>(h - 1) * w + x]);
  }
  for (int y = 1; y + 1 < h; ++y) {
    ring.push_back(plane[static_cast<size_t>(y) * w]);
    if (w > 1) ring.push_back(plane[static_cast<size_t>(y) * w + w - 1]);
  }
  std::nth_element(ring.begin(), ring.begin() + ring.size() / 2, ring.end());
  return ring[ring.size() / 2];
}

}  // namespace

void fit_image(uint8_t* out, const uint8_t* src, int src_h, int src_w, int src_channels, int out_channels,
               int out_h, int out_w, bool pad_small, const float* background) {
  // Composite on black and convert channels, into float planes out_channels × src_h × src_w.
  const size_t src_plane = static_cast<size_t>(src_h) * src_w;
  std::vector<float> planes(out_channels * src_plane);
  const bool has_alpha = src_channels == 2 || src_channels == 4;
  const bool src_colour = src_channels >= 3;
  for (size_t p = 0; p < src_plane; ++p) {
    const uint8_t* px = src + p * src_channels;
    const float alpha = has_alpha ? px[src_channels - 1] / 255.0f : 1.0f;
    float r, g, b;
    if (src_colour) {
      r = px[0] * alpha, g = px[1] * alpha, b = px[2] * alpha;
    } else {
      r = g = b = px[0] * alpha;
    }
    if (out_channels == 3) {
      planes[p] = r;
      planes[src_plane + p] = g;
      planes[2 * src_plane + p] = b;
    } else {
      // ITU-R BT.601 luma, as PIL's convert("L").
      planes[p] = src_colour ? 0.299f * r + 0.587f * g + 0.114f * b : r;
    }
  }

  const size_t out_plane = static_cast<size_t>(out_h) * out_w;
  if (pad_small && src_h <= out_h && src_w <= out_w) {
    const int top = (out_h - src_h) / 2, left = (out_w - src_w) / 2;
    for (int c = 0; c < out_channels; ++c) {
      const float* plane = planes.data() + c * src_plane;
      const uint8_t fill = to_byte(background ? background[c] : border_median(plane, src_h, src_w));
      uint8_t* dst = out + c * out_plane;
      std::fill(dst, dst + out_plane, fill);
      for (int y = 0; y < src_h; ++y) {
        for (int x = 0; x < src_w; ++x) dst[(top + y) * out_w + left + x] = to_byte(plane[y * src_w + x]);
      }
    }
    return;
  }

  // Centre crop to the target aspect (out_w / out_h), keeping the full extent of the limiting side.
  int crop_h = src_h, crop_w = src_w;
  if (static_cast<int64_t>(src_w) * out_h > static_cast<int64_t>(out_w) * src_h) {
    crop_w = std::max(1, static_cast<int>(std::lround(static_cast<double>(src_h) * out_w / out_h)));
  } else {
    crop_h = std::max(1, static_cast<int>(std::lround(static_cast<double>(src_w) * out_h / out_w)));
  }
  const int top = (src_h - crop_h) / 2, left = (src_w - crop_w) / 2;
  std::vector<float> crop(static_cast<size_t>(crop_h) * crop_w), resized(out_plane);
  for (int c = 0; c < out_channels; ++c) {
    const float* plane = planes.data() + c * src_plane;
    for (int y = 0; y < crop_h; ++y) {
      std::copy(plane + static_cast<size_t>(top + y) * src_w + left,
                plane + static_cast<size_t>(top + y) * src_w + left + crop_w, crop.data() + static_cast<size_t>(y) * crop_w);
    }
    resample_plane(resized.data(), crop.data(), crop_h, crop_w, out_h, out_w);
    for (size_t p = 0; p < out_plane; ++p) out[c * out_plane + p] = to_byte(resized[p]);
  }
}

// ---- decoding one file ---------------------------------------------------------------------------

namespace {

// Debian's stb_image (git 2022-09) trusts a JPEG DHT table's 16 code counts: their sum (up to 4080)
// indexes the 257-entry size[] of stbi__build_huffman and the 256-entry values[] of the DHT reader, a
// heap overflow from a crafted file (found by tests/fuzz/fuzz_image). This walks the markers as stb
// does (segments by length, entropy-coded data byte by byte up to the next real marker) and reads
// every table of every DHT segment the way stb will, refusing a sum over 256 before stb sees it.
bool jpeg_huffman_tables_fit(const uint8_t* b, size_t n) {
  // SOI, after any number of 0xFF fill bytes (stbi__get_marker skips them); else stb will not take it
  // for a JPEG.
  size_t i = 0;
  while (i < n && b[i] == 0xFF) ++i;
  if (i == 0 || i >= n || b[i] != 0xD8) return true;
  ++i;
  while (i + 1 < n) {
    if (b[i] != 0xFF) {
      ++i;  // entropy-coded data
      continue;
    }
    const uint8_t marker = b[i + 1];
    if (marker == 0xFF) {
      ++i;  // fill byte
      continue;
    }
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
      i += 2;  // stuffed 0xFF, TEM, RSTn, SOI: no length
      continue;
    }
    if (marker == 0xD9) return true;  // EOI
    if (i + 3 >= n) return true;
    const size_t length = (static_cast<size_t>(b[i + 2]) << 8) | b[i + 3];
    if (marker == 0xC4) {
      // stb: L = length - 2; while (L > 0) { 1 byte class/id, 16 counts, sum(counts) values }; reads past
      // the end of the file give 0.
      int64_t left = static_cast<int64_t>(length) - 2;
      size_t p = i + 4;
      while (left > 0) {
        int total = 0;
        for (size_t k = 1; k <= 16; ++k) total += p + k < n ? b[p + k] : 0;
        if (total > 256) return false;
        left -= 17 + total;
        p += 17 + static_cast<size_t>(total);
      }
    }
    i += 2 + length;
  }
  return true;
}

// The same stb reads a binary PNM header's width, height and maxval with an int that overflows on
// a long digit run (stbi__pnm_getinteger: undefined, and the wrapped size is what it then uses; found
// by tests/fuzz/fuzz_image). Reads the three numbers as stb does (whitespace, '#' comments to the end
// of the line) and refuses any above INT_MAX.
bool pnm_header_fits(const uint8_t* b, size_t n) {
  if (n < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return true;
  size_t i = 2;
  for (int number = 0; number < 3; ++number) {
    for (;;) {  // stbi__pnm_skip_whitespace
      while (i < n && std::isspace(b[i])) ++i;
      if (i >= n || b[i] != '#') break;
      while (i < n && b[i] != '\n' && b[i] != '\r') ++i;
    }
    int64_t value = 0;
    for (; i < n && b[i] >= '0' && b[i] <= '9'; ++i) {
      value = value * 10 + (b[i] - '0');
      if (value > INT32_MAX) return false;
    }
  }
  return true;
}

// The same stb copies a PNG's IDAT chunks into a buffer it allocates only once data arrives: a
// zero-length IDAT before any other (legal: the compressed stream may be split anywhere) makes it
// memcpy 0 bytes to a null pointer, undefined behaviour (stbi__getn; found by tests/fuzz/fuzz_image
// under UBSan). Such chunks carry nothing, so they are dropped from a copy that stb reads instead;
// stb checks no CRC, and every other byte is kept. Returns an empty vector when there is none.
std::vector<uint8_t> png_without_empty_idat(const uint8_t* b, size_t n) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (n < 8 || std::memcmp(b, kSignature, 8) != 0) return {};
  auto empty_idat_at = [&](size_t i) {
    return i + 8 <= n && b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 0 && b[i + 3] == 0 && std::memcmp(b + i + 4, "IDAT", 4) == 0;
  };
  bool any = false;
  for (size_t i = 8; i + 8 <= n;) {  // length (4, big-endian), type (4), data, CRC (4)
    if (empty_idat_at(i)) any = true;
    const uint64_t length = (uint64_t{b[i]} << 24) | (uint64_t{b[i + 1]} << 16) | (uint64_t{b[i + 2]} << 8) | b[i + 3];
    i += 12 + length;
  }
  if (!any) return {};
  std::vector<uint8_t> out(b, b + 8);
  size_t i = 8;
  while (i + 8 <= n) {
    const uint64_t length = (uint64_t{b[i]} << 24) | (uint64_t{b[i + 1]} << 16) | (uint64_t{b[i + 2]} << 8) | b[i + 3];
    const size_t end = static_cast<size_t>(std::min<uint64_t>(n, i + 12 + length));
    if (!empty_idat_at(i)) out.insert(out.end(), b + i, b + end);
    i = end;
  }
  out.insert(out.end(), b + i, b + n);  // a cut-off tail, as it was
  return out;
}

}  // namespace

std::vector<uint8_t> decode_image(int* height, int* width, int* channels, const uint8_t* bytes, size_t size,
                                  int64_t max_pixels) {
  if (size > static_cast<size_t>(INT32_MAX)) throw std::runtime_error("larger than 2 GB");
  const int length = static_cast<int>(size);
  if (!pnm_header_fits(bytes, size)) throw std::runtime_error("corrupt PNM: a header number exceeds 2^31 - 1");
  // Before stbi_info too: its JPEG header pass already builds the Huffman tables.
  if (!jpeg_huffman_tables_fit(bytes, size)) {
    throw std::runtime_error("corrupt JPEG: a Huffman table (DHT) lists more than 256 codes");
  }
  const std::vector<uint8_t> stripped = png_without_empty_idat(bytes, size);
  if (!stripped.empty()) return decode_image(height, width, channels, stripped.data(), stripped.size(), max_pixels);
  int w = 0, h = 0, comp = 0;
  if (stbi_info_from_memory(bytes, length, &w, &h, &comp) && static_cast<int64_t>(w) * h > max_pixels) {
    throw std::runtime_error("its header claims " + std::to_string(w) + "×" + std::to_string(h) +
                             " pixels, more than the " + std::to_string(max_pixels) + " accepted");
  }
  uint8_t* decoded = stbi_load_from_memory(bytes, length, &w, &h, &comp, 0);
  if (!decoded) {
    // stb's reason can be null or empty (e.g. a PNG cut before IEND); the error must not be.
    const char* reason = stbi_failure_reason();
    throw std::runtime_error(reason && *reason ? reason : "cannot decode");
  }
  std::vector<uint8_t> pixels(decoded, decoded + static_cast<size_t>(w) * h * comp);
  stbi_image_free(decoded);
  *height = h;
  *width = w;
  *channels = comp;
  return pixels;
}

// ---- prepare-images ----------------------------------------------------------------------------

namespace {

// Progress on stderr at most every two seconds, plus the last line.
class Progress {
 public:
  Progress(bool enabled, const std::string& what) : enabled_(enabled), what_(what), last_(Clock::now()) {}
  void update(int64_t done, int64_t total, bool final = false) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (!final && now - last_ < std::chrono::seconds(2)) return;
    last_ = now;
    std::fprintf(stderr, "prepare-images: %s %lld/%lld\n", what_.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total));
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  std::string what_;
  Clock::time_point last_;
};

struct PreparedImages {
  std::vector<uint8_t> pixels;  // N×C×H×W
  int64_t count = 0;
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  nlohmann::ordered_json skipped = nlohmann::ordered_json::array();
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

bool is_hidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return !name.empty() && name[0] == '.';
}

PreparedImages prepare_folder(const std::string& folder, const std::string& out_npy, int out_h, int out_w,
                              int channels, bool pad_small, const PrepareImagesOptions& options) {
  std::error_code ec;
  std::vector<fs::path> paths;
  const fs::path out_path = fs::weakly_canonical(out_npy, ec);
  const fs::path out_sidecar = fs::weakly_canonical(sidecar_path_for(out_npy), ec);
  fs::recursive_directory_iterator it(folder, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) throw std::runtime_error("cannot read folder '" + folder + "': " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw std::runtime_error("cannot read folder '" + folder + "': " + ec.message());
    if (is_hidden(it->path())) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    const fs::path canonical = fs::weakly_canonical(it->path(), ec);
    if (canonical == out_path || canonical == out_sidecar) continue;  // a re-run writing into its own input
    paths.push_back(it->path());
  }
  if (paths.empty()) throw std::runtime_error("prepare-images: folder '" + folder + "' contains no files");
  std::sort(paths.begin(), paths.end());

  PreparedImages result;
  const size_t image_bytes = static_cast<size_t>(channels) * out_h * out_w;
  const int64_t wanted = options.limit > 0 ? std::min<int64_t>(options.limit, paths.size()) : paths.size();
  Progress progress(options.progress, "images");
  // Decoding dominates; decode a chunk in parallel, then keep results in path order for determinism.
  const int64_t chunk = 64;
  size_t next = 0;
  while (result.count < wanted && next < paths.size()) {
    const int64_t begin = static_cast<int64_t>(next);
    const int64_t stop = std::min<int64_t>(begin + chunk, paths.size());
    std::vector<std::vector<uint8_t>> images(stop - begin);
    std::vector<std::string> errors(stop - begin);
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = begin; i < stop; ++i) {
      int w = 0, h = 0, comp = 0;
      std::vector<uint8_t> decoded;
      try {
        const std::vector<uint8_t> file = read_file_bytes(paths[i].string());
        decoded = decode_image(&h, &w, &comp, file.data(), file.size());
      } catch (const std::exception& e) {
        errors[i - begin] = e.what();
        continue;
      }
      images[i - begin].resize(image_bytes);
      fit_image(images[i - begin].data(), decoded.data(), h, w, comp, channels, out_h, out_w, pad_small, nullptr);
    }
    for (int64_t i = begin; i < stop && result.count < wanted; ++i) {
      const std::string relative = fs::relative(paths[i], folder, ec).generic_string();
      if (!errors[i - begin].empty()) {
        std::fprintf(stderr, "prepare-images: skipping '%s': not a readable image (%s)\n", paths[i].c_str(),
                     errors[i - begin].c_str());
        result.skipped.push_back({{"file", relative}, {"reason", errors[i - begin]}});
        continue;
      }
      result.pixels.insert(result.pixels.end(), images[i - begin].begin(), images[i - begin].end());
      result.files.push_back(relative);
      ++result.count;
    }
    next = static_cast<size_t>(stop);
    progress.update(result.count, wanted);
  }
  progress.update(result.count, wanted, true);
  if (result.count == 0) {
    throw std::runtime_error("prepare-images: no usable images in folder '" + folder + "' (" +
                             std::to_string(result.skipped.size()) + " files tried, none could be decoded)");
  }
  if (!result.skipped.empty()) {
    std::fprintf(stderr, "prepare-images: skipped %zu unreadable file(s) in '%s'\n", result.skipped.size(),
                 folder.c_str());
  }
  result.extra["source_format"] = "folder";
  return result;
}

// IDX (Y. LeCun's MNIST format): magic 00 00 08 <ndim>, ndim big-endian u32 sizes, then unsigned bytes.
// gzread reads gzipped and plain files alike.
class IdxReader {
 public:
  explicit IdxReader(const std::string& path) : path_(path) {
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) throw std::runtime_error("cannot open IDX file '" + path + "'");
  }
  ~IdxReader() {
    if (file_) gzclose(file_);
  }
  void read(uint8_t* out, size_t bytes, const char* what) {
    while (bytes > 0) {
      const unsigned piece = static_cast<unsigned>(std::min<size_t>(bytes, 1u << 30));
      const int got = gzread(file_, out, piece);
      if (got < 0) {
        int code = 0;
        throw std::runtime_error("IDX file '" + path_ + "' is corrupt (" + gzerror(file_, &code) + ") reading " + what);
      }
      if (got == 0) throw std::runtime_error("IDX file '" + path_ + "' is truncated: it ends inside the " + what);
      out += got;
      bytes -= static_cast<size_t>(got);
    }
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

PreparedImages prepare_idx(const std::string& path, int out_h, int out_w, int channels, bool pad_small,
                           const PrepareImagesOptions& options) {
  IdxReader reader(path);
  uint8_t magic[4];
  reader.read(magic, 4, "magic number");
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || (magic[3] != 3 && magic[3] != 4)) {
    throw std::runtime_error("'" + path +
                             "' is neither a folder nor an IDX image file (expected magic 00 00 08 03: unsigned "
                             "bytes, N×H×W, optionally gzipped)");
  }
  const int ndim = magic[3];
  int64_t dims[4] = {0, 0, 0, 1};
  for (int d = 0; d < ndim; ++d) {
    uint8_t be[4];
    reader.read(be, 4, "dimension sizes");
    dims[d] = (int64_t(be[0]) << 24) | (int64_t(be[1]) << 16) | (int64_t(be[2]) << 8) | int64_t(be[3]);
  }
  const int64_t n = dims[0], h = dims[1], w = dims[2], src_channels = dims[3];
  if (n <= 0 || h <= 0 || w <= 0 || (src_channels != 1 && src_channels != 3)) {
    throw std::runtime_error("IDX file '" + path + "' has unusable dimensions " + std::to_string(n) + "×" +
                             std::to_string(h) + "×" + std::to_string(w) + "×" + std::to_string(src_channels) +
                             " (expected N×H×W grey or N×H×W×3)");
  }
  // Sizes come from the header: bounded before any product or allocation uses them (2^28 bytes is a
  // 16k×16k RGB image, far beyond any IDX set; 32-bit sizes could otherwise overflow h·w·c).
  if (h > (int64_t{1} << 28) || w > (int64_t{1} << 28) || h * w * src_channels > (int64_t{1} << 28)) {
    throw std::runtime_error("IDX file '" + path + "' claims " + std::to_string(h) + "×" + std::to_string(w) + "×" +
                             std::to_string(src_channels) + " images: expected at most 2^28 bytes per image");
  }
  const int64_t count = options.limit > 0 ? std::min(options.limit, n) : n;
  const size_t src_bytes = static_cast<size_t>(h * w * src_channels);
  // Read in pieces of at most 64 MiB, growing the buffer only by what arrived: a header that claims
  // more images than the file holds ends in "truncated", not in an allocation of its claimed size.
  std::vector<uint8_t> source;
  const size_t total_bytes = static_cast<size_t>(count) * src_bytes;  // count < 2^32, src_bytes <= 2^28
  for (size_t done = 0; done < total_bytes;) {
    const size_t piece = std::min<size_t>(total_bytes - done, size_t{64} << 20);
    source.resize(done + piece);
    reader.read(source.data() + done, piece, "image data");
    done += piece;
  }

  // One background for the whole set: the most common value of the images' border pixels (per channel),
  // so every padded image gets the same canvas (0 for Fashion-MNIST).
  std::vector<float> background(channels, 0.0f);
  if (pad_small) {
    std::vector<std::vector<int64_t>> histogram(src_channels, std::vector<int64_t>(256, 0));
    for (int64_t i = 0; i < count; ++i) {
      const uint8_t* img = source.data() + i * src_bytes;
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
          if (y != 0 && y != h - 1 && x != 0 && x != w - 1) continue;
          for (int64_t c = 0; c < src_channels; ++c) ++histogram[c][img[(y * w + x) * src_channels + c]];
        }
      }
    }
    std::vector<float> mode(src_channels);
    for (int64_t c = 0; c < src_channels; ++c) {
      mode[c] = static_cast<float>(std::max_element(histogram[c].begin(), histogram[c].end()) - histogram[c].begin());
    }
    for (int c = 0; c < channels; ++c) {
      if (src_channels == channels) background[c] = mode[c];
      else if (src_channels == 1) background[c] = mode[0];
      else background[c] = 0.299f * mode[0] + 0.587f * mode[1] + 0.114f * mode[2];
    }
  }

  PreparedImages result;
  const size_t image_bytes = static_cast<size_t>(channels) * out_h * out_w;
  result.pixels.resize(static_cast<size_t>(count) * image_bytes);
  Progress progress(options.progress && count >= 10000, "IDX images");
  const int64_t chunk = 4096;
  for (int64_t begin = 0; begin < count; begin += chunk) {
    const int64_t stop = std::min(count, begin + chunk);
#pragma omp parallel for
    for (int64_t i = begin; i < stop; ++i) {
      fit_image(result.pixels.data() + i * image_bytes, source.data() + i * src_bytes, static_cast<int>(h),
                static_cast<int>(w), static_cast<int>(src_channels), channels, out_h, out_w, pad_small,
                background.data());
    }
    progress.update(stop, count, stop == count);
  }
  result.count = count;
  result.extra["source_format"] = "idx";
  result.extra["source_shape"] = std::vector<int64_t>(dims, dims + ndim);
  result.extra["first_index"] = 0;
  if (pad_small) result.extra["background"] = background;
  return result;
}

}  // namespace

PrepareImagesResult prepare_images(const std::string& input, const std::string& out_npy, int size_h, int size_w,
                                   int channels, const PrepareImagesOptions& options) {
  if (size_h == size_w) {
    check_dcgan_size(size_h, options.size_flag);
  } else {
    check_dcgan_size(size_h, options.size_flag + " (height)");
    check_dcgan_size(size_w, options.size_flag + " (width)");
  }
  if (channels != 1 && channels != 3) {
    throw std::runtime_error("--channels " + std::to_string(channels) + ": expected 1 (grey) or 3 (RGB)");
  }
  if (options.limit < 0) throw std::runtime_error("--limit " + std::to_string(options.limit) + ": expected >= 0");
  if (out_npy.empty()) throw std::runtime_error("--out: expected an output path ending in .npy");
  std::error_code ec;
  const fs::file_status status = fs::status(input, ec);
  if (!fs::exists(status)) throw std::runtime_error("prepare-images: input '" + input + "' does not exist");

  const bool is_folder = fs::is_directory(status);
  const bool pad_small = options.pad_small < 0 ? !is_folder : options.pad_small != 0;
  PreparedImages prepared = is_folder ? prepare_folder(input, out_npy, size_h, size_w, channels, pad_small, options)
                                      : prepare_idx(input, size_h, size_w, channels, pad_small, options);

  nlohmann::ordered_json sidecar;
  sidecar["kind"] = "images";
  sidecar["count"] = prepared.count;
  sidecar["channels"] = channels;
  sidecar["height"] = size_h;
  sidecar["width"] = size_w;
  sidecar["dtype"] = "uint8";
  sidecar["layout"] = "NCHW";
  sidecar["source"] = fs::absolute(input, ec).lexically_normal().generic_string();
  for (auto& [key, value] : prepared.extra.items()) sidecar[key] = value;
  sidecar["pad_small"] = pad_small;
  sidecar["resize"] = pad_small ? "centred on a background canvas when the image fits, else centre crop + area "
                                  "average down / bilinear up"
                                : "centre crop to aspect, area average down / bilinear up";
  sidecar["alpha"] = "composited on black";
  if (is_folder) sidecar["files"] = prepared.files;
  sidecar["skipped"] = prepared.skipped;
  sidecar["normalisation"] = "x/127.5-1";

  const fs::path parent = fs::path(out_npy).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) throw std::runtime_error("--out '" + out_npy + "': cannot create folder '" + parent.string() + "': " + ec.message());
  }
  PrepareImagesResult result;
  result.count = prepared.count;
  result.skipped = static_cast<int64_t>(prepared.skipped.size());
  result.sidecar_path = sidecar_path_for(out_npy);
  // The dataset and its sidecar both written and synced before either is renamed into place: a full
  // disk fails with neither published (the temp files removed), never an X.npy beside no or an old X.json.
  AtomicFileWriter npy_file(out_npy), sidecar_file(result.sidecar_path);
  const std::vector<uint8_t> npy_bytes =
      encode_npy(DType::U8, {prepared.count, channels, size_h, size_w}, prepared.pixels.data());
  npy_file.write(npy_bytes.data(), npy_bytes.size());
  const std::string sidecar_text = sidecar.dump(2) + "\n";
  sidecar_file.write(sidecar_text.data(), sidecar_text.size());
  npy_file.sync();
  sidecar_file.sync();
  npy_file.commit();
  sidecar_file.commit();
  return result;
}

// ---- loading -----------------------------------------------------------------------------------

void ImageDataset::sample_as_float(float* out, int64_t index) const {
  const int32_t one = static_cast<int32_t>(index);
  gather_as_float(out, &one, 1);
}

void ImageDataset::gather_as_float(float* out, const int32_t* indices, int64_t n) const {
  const int64_t size = sample_size();
  if (dtype == DType::U8) {
    cpu::images_u8_to_float(out, file->data(), indices, n, size);
    return;
  }
  const uint16_t* halves = reinterpret_cast<const uint16_t*>(file->data());
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* src = halves + static_cast<int64_t>(indices[i]) * size;
    for (int64_t j = 0; j < size; ++j) out[i * size + j] = half_to_float(src[j]);
  }
}

ImageDataset load_image_dataset(const std::string& path) {
  auto file = std::make_shared<const MappedNpy>(path);
  const std::vector<int64_t>& shape = file->shape();
  if (shape.size() != 4 || (file->dtype() != DType::U8 && file->dtype() != DType::F16)) {
    std::string text;
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? "×" : "") + std::to_string(shape[i]);
    throw std::runtime_error("dataset '" + path + "' is " + dtype_name(file->dtype()) + " with shape (" + text +
                             "); expected a 4-D N×C×H×W array of uint8 (images, from prepare-images) or float16 "
                             "(mel spectrograms)");
  }
  ImageDataset dataset;
  dataset.dtype = file->dtype();
  dataset.count = shape[0];
  dataset.channels = shape[1];
  dataset.height = shape[2];
  dataset.width = shape[3];
  if (dataset.count == 0) throw std::runtime_error("dataset '" + path + "' holds no samples");
  if (dataset.count > std::numeric_limits<int32_t>::max())
    throw std::runtime_error("dataset '" + path + "' holds " + std::to_string(dataset.count) +
                             " samples; at most 2^31 - 1 are supported (rows are indexed by int32)");
  if (dataset.sample_size() == 0) {
    throw std::runtime_error("dataset '" + path + "' has an empty channel, height or width (expected N×C×H×W, all > 0)");
  }
  dataset.file = std::move(file);

  const std::string sidecar = sidecar_path_for(path);
  std::error_code ec;
  if (fs::exists(sidecar, ec)) {
    dataset.sidecar_json = read_file_text(sidecar);
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(dataset.sidecar_json);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("dataset sidecar '" + sidecar + "' is not valid JSON: " + e.what());
    }
    const std::pair<const char*, int64_t> expected[] = {{"count", dataset.count},
                                                        {"channels", dataset.channels},
                                                        {"height", dataset.height},
                                                        {"width", dataset.width}};
    for (const auto& [key, value] : expected) {
      if (json.is_object() && json.contains(key) && json[key].is_number_integer() && json[key].get<int64_t>() != value) {
        throw std::runtime_error("dataset sidecar '" + sidecar + "' says " + key + " = " +
                                 std::to_string(json[key].get<int64_t>()) + " but '" + path + "' has " +
                                 std::to_string(value) + ": the two files do not belong together");
      }
    }
  }
  return dataset;
}

}  // namespace ds
