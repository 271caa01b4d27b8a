// Sliced Wasserstein distance (see swd.h): pyramid, descriptors, projections (one OpenBLAS sgemm per
// level and set), sorting, on the CPU.
#include "engine/inspect/swd.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/formats/npy_map.h"

namespace ds {

namespace {

constexpr float kBinomial[5] = {1.f / 16, 4.f / 16, 6.f / 16, 4.f / 16, 1.f / 16};

// Mirror without repeating the edge (scipy "mirror", cv2 BORDER_REFLECT_101); n >= 3 here.
inline int64_t mirror(int64_t i, int64_t n) {
  if (i < 0) i = -i;
  if (i >= n) i = 2 * (n - 1) - i;
  return i;
}

// plane (h×w) convolved with the separable 5×5 binomial kernel ×gain, mirrored borders.
void binomial_blur(float* out, const float* in, int64_t h, int64_t w, float gain, std::vector<float>& tmp) {
  tmp.assign(static_cast<size_t>(h * w), 0.f);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      float s = 0;
      for (int k = -2; k <= 2; ++k) s += kBinomial[k + 2] * in[y * w + mirror(x + k, w)];
      tmp[y * w + x] = s;
    }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      float s = 0;
      for (int k = -2; k <= 2; ++k) s += kBinomial[k + 2] * tmp[mirror(y + k, h) * w + x];
      out[y * w + x] = s * gain;
    }
}

void check_options(const SwdOptions& o) {
  if (o.patch_size < 1 || o.patch_size % 2 == 0)
    throw std::invalid_argument("SWD patch size " + std::to_string(o.patch_size) + ": expected an odd number");
  if (o.patches_per_image < 1 || o.direction_repeats < 1 || o.directions_per_repeat < 1)
    throw std::invalid_argument("SWD: patches per image, repeats and directions must be positive");
  if (o.min_resolution < o.patch_size || o.min_resolution < 3)
    throw std::invalid_argument("SWD minimum resolution " + std::to_string(o.min_resolution) +
                                ": expected at least the patch size");
}

}  // namespace

int swd_level_count(int64_t height, int64_t width, int min_resolution) {
  int levels = 0;
  while (height >= min_resolution && width >= min_resolution) {
    ++levels;
    height = (height + 1) / 2;
    width = (width + 1) / 2;
  }
  return levels;
}

int64_t swd_level_side(int64_t side, int level) {
  for (int l = 0; l < level; ++l) side = (side + 1) / 2;
  return side;
}

std::vector<std::vector<float>> laplacian_pyramid(const ImageSetView& im, int levels) {
  std::vector<std::vector<float>> pyramid(static_cast<size_t>(levels));
  const int64_t planes = im.count * im.channels;
  pyramid[0].assign(im.data, im.data + planes * im.height * im.width);
  std::vector<float> tmp, blurred, up;
  for (int l = 1; l < levels; ++l) {
    const int64_t h = swd_level_side(im.height, l - 1), w = swd_level_side(im.width, l - 1);
    const int64_t hc = swd_level_side(im.height, l), wc = swd_level_side(im.width, l);
    std::vector<float>& fine = pyramid[l - 1];
    std::vector<float>& coarse = pyramid[l];
    coarse.assign(static_cast<size_t>(planes * hc * wc), 0.f);
    blurred.resize(static_cast<size_t>(h * w));
    up.resize(static_cast<size_t>(4 * hc * wc));
    std::vector<float> up_blurred(static_cast<size_t>(4 * hc * wc));
    for (int64_t p = 0; p < planes; ++p) {
      float* f = fine.data() + p * h * w;
      binomial_blur(blurred.data(), f, h, w, 1.f, tmp);
      float* c = coarse.data() + p * hc * wc;
      for (int64_t y = 0; y < hc; ++y)
        for (int64_t x = 0; x < wc; ++x) c[y * wc + x] = blurred[(2 * y) * w + 2 * x];
      std::fill(up.begin(), up.end(), 0.f);
      for (int64_t y = 0; y < hc; ++y)
        for (int64_t x = 0; x < wc; ++x) up[(2 * y) * (2 * wc) + 2 * x] = c[y * wc + x];
      binomial_blur(up_blurred.data(), up.data(), 2 * hc, 2 * wc, 4.f, tmp);
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) f[y * w + x] -= up_blurred[y * (2 * wc) + x];
    }
  }
  return pyramid;
}

SwdDraws draw_swd(int64_t count_a, int64_t count_b, int64_t channels, int64_t height, int64_t width,
                  const SwdOptions& o) {
  check_options(o);
  const int levels = swd_level_count(height, width, o.min_resolution);
  const int r = o.patch_size / 2;
  const int64_t dims = channels * o.patch_size * o.patch_size;
  const int64_t n_dirs = int64_t(o.direction_repeats) * o.directions_per_repeat;
  SwdDraws d;
  Philox rng_a(o.seed, 0), rng_b(o.seed, 1), rng_dir(o.seed, 2);
  auto centres = [&](Philox& rng, int64_t count, int64_t h, int64_t w) {
    std::vector<int32_t> c(static_cast<size_t>(2 * count * o.patches_per_image));
    for (size_t i = 0; i < c.size(); i += 2) {
      c[i] = static_cast<int32_t>(r + rng.uniform_int(static_cast<uint32_t>(h - 2 * r)));
      c[i + 1] = static_cast<int32_t>(r + rng.uniform_int(static_cast<uint32_t>(w - 2 * r)));
    }
    return c;
  };
  for (int l = 0; l < levels; ++l) {
    const int64_t h = swd_level_side(height, l), w = swd_level_side(width, l);
    d.centres_a.push_back(centres(rng_a, count_a, h, w));
    d.centres_b.push_back(centres(rng_b, count_b, h, w));
    std::vector<float> raw(static_cast<size_t>(n_dirs * dims));
    rng_dir.fill_normal(raw.data(), 0.f, 1.f, static_cast<int64_t>(raw.size()));
    for (int64_t k = 0; k < n_dirs; ++k) {
      double norm = 0;
      for (int64_t j = 0; j < dims; ++j) norm += double(raw[k * dims + j]) * raw[k * dims + j];
      norm = std::sqrt(norm);
      for (int64_t j = 0; j < dims; ++j) raw[k * dims + j] = static_cast<float>(raw[k * dims + j] / norm);
    }
    d.directions.push_back(std::move(raw));
  }
  return d;
}

std::vector<float> swd_descriptors(const float* level, int64_t count, int64_t channels, int64_t height, int64_t width,
                                   const std::vector<int32_t>& centres, int patch_size, int patches_per_image) {
  const int64_t n = static_cast<int64_t>(centres.size() / 2);
  if (n != count * patches_per_image)
    throw std::invalid_argument("SWD: " + std::to_string(n) + " patch centres for " + std::to_string(count) +
                                " images of " + std::to_string(patches_per_image) + " patches");
  const int r = patch_size / 2;
  const int64_t pp = int64_t(patch_size) * patch_size, dims = channels * pp;
  std::vector<float> desc(static_cast<size_t>(n * dims));
  for (int64_t i = 0; i < n; ++i)
    if (centres[2 * i] < r || centres[2 * i] >= height - r || centres[2 * i + 1] < r || centres[2 * i + 1] >= width - r)
      throw std::invalid_argument("SWD: patch centre (" + std::to_string(centres[2 * i]) + ", " +
                                  std::to_string(centres[2 * i + 1]) + ") too close to the edge of a " +
                                  std::to_string(height) + "×" + std::to_string(width) + " level");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t img = i / patches_per_image, cy = centres[2 * i], cx = centres[2 * i + 1];
    for (int64_t c = 0; c < channels; ++c)
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx)
          desc[i * dims + c * pp + (dy + r) * patch_size + (dx + r)] =
              level[((img * channels + c) * height + cy + dy) * width + cx + dx];
  }
  // finalize_descriptors: per channel, over every descriptor and position, the set's own mean and std.
  for (int64_t c = 0; c < channels; ++c) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < pp; ++j) sum += desc[i * dims + c * pp + j];
    const double values = double(n) * pp, mean = sum / values;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < pp; ++j) {
        const double e = desc[i * dims + c * pp + j] - mean;
        sq += e * e;
      }
    const double sd = std::sqrt(sq / values);
    const double scale = sd > 0 ? 1.0 / sd : 1.0;  // a flat channel is only centred (the reference divides by 0)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < pp; ++j) {
        float& v = desc[i * dims + c * pp + j];
        v = static_cast<float>((v - mean) * scale);
      }
  }
  return desc;
}

double sliced_wasserstein_level(const std::vector<float>& a, const std::vector<float>& b, int64_t dims,
                                const std::vector<float>& directions) {
  const int64_t n = static_cast<int64_t>(a.size()) / dims;
  const int64_t n_dirs = static_cast<int64_t>(directions.size()) / dims;
  if (static_cast<int64_t>(b.size()) != n * dims)
    throw std::invalid_argument("SWD: the two sets have different descriptor counts");
  // Projections, one row per direction (so each row is sorted in place): P = dirs · descᵀ, row-major
  // n_dirs × n: cblas_sgemm(RowMajor, NoTrans, Trans, M = n_dirs, N = n, K = dims).
  std::vector<float> pa(static_cast<size_t>(n_dirs * n)), pb(pa.size());
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n_dirs), static_cast<int>(n),
              static_cast<int>(dims), 1.f, directions.data(), static_cast<int>(dims), a.data(), static_cast<int>(dims),
              0.f, pa.data(), static_cast<int>(n));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n_dirs), static_cast<int>(n),
              static_cast<int>(dims), 1.f, directions.data(), static_cast<int>(dims), b.data(), static_cast<int>(dims),
              0.f, pb.data(), static_cast<int>(n));
  std::vector<double> per_dir(static_cast<size_t>(n_dirs));
#pragma omp parallel for schedule(dynamic)
  for (int64_t d = 0; d < n_dirs; ++d) {
    float* ra = pa.data() + d * n;
    float* rb = pb.data() + d * n;
    std::sort(ra, ra + n);
    std::sort(rb, rb + n);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::abs(double(ra[i]) - double(rb[i]));
    per_dir[d] = s / double(n);
  }
  double total = 0;
  for (double v : per_dir) total += v;  // fixed order: the result does not depend on the thread count
  return total / double(n_dirs);
}

namespace {
void check_sets(const ImageSetView& a, const ImageSetView& b, const SwdOptions& o) {
  if (a.channels != b.channels || a.height != b.height || a.width != b.width)
    throw std::invalid_argument("SWD: the sets' images differ in shape (" + std::to_string(a.channels) + "×" +
                                std::to_string(a.height) + "×" + std::to_string(a.width) + " against " +
                                std::to_string(b.channels) + "×" + std::to_string(b.height) + "×" +
                                std::to_string(b.width) + ")");
  if (a.count != b.count || a.count < 1)
    throw std::invalid_argument("SWD: the sets must hold the same number of images, at least 1 (" +
                                std::to_string(a.count) + " and " + std::to_string(b.count) + ")");
  if (swd_level_count(a.height, a.width, o.min_resolution) == 0)
    throw std::invalid_argument("SWD: images of " + std::to_string(a.height) + "×" + std::to_string(a.width) +
                                " px are smaller than the " + std::to_string(o.min_resolution) +
                                " px the coarsest pyramid level needs on each side");
}

SwdResult result_header(const ImageSetView& a, const SwdOptions& o, int levels) {
  SwdResult r;
  for (int l = 0; l < levels; ++l) {
    r.heights.push_back(swd_level_side(a.height, l));
    r.widths.push_back(swd_level_side(a.width, l));
  }
  r.images = a.count;
  r.descriptors = a.count * o.patches_per_image;
  return r;
}

void finish(SwdResult& r) {
  r.mean = 0;
  for (double v : r.levels) r.mean += v;
  r.mean /= static_cast<double>(r.levels.size());
}
}  // namespace

SwdResult sliced_wasserstein_distance(const ImageSetView& a, const ImageSetView& b, const SwdOptions& o,
                                      const SwdDraws* given) {
  check_options(o);
  check_sets(a, b, o);
  const int levels = swd_level_count(a.height, a.width, o.min_resolution);
  const SwdDraws drawn = given ? SwdDraws{} : draw_swd(a.count, b.count, a.channels, a.height, a.width, o);
  const SwdDraws& d = given ? *given : drawn;
  if (static_cast<int>(d.directions.size()) != levels || static_cast<int>(d.centres_a.size()) != levels ||
      static_cast<int>(d.centres_b.size()) != levels)
    throw std::invalid_argument("SWD: draws for " + std::to_string(d.directions.size()) + " levels; the images have " +
                                std::to_string(levels));
  const std::vector<std::vector<float>> pa = laplacian_pyramid(a, levels), pb = laplacian_pyramid(b, levels);
  const int64_t dims = a.channels * o.patch_size * o.patch_size;
  SwdResult r = result_header(a, o, levels);
  for (int l = 0; l < levels; ++l) {
    const int64_t h = r.heights[l], w = r.widths[l];
    const std::vector<float> da =
        swd_descriptors(pa[l].data(), a.count, a.channels, h, w, d.centres_a[l], o.patch_size, o.patches_per_image);
    const std::vector<float> db =
        swd_descriptors(pb[l].data(), b.count, b.channels, h, w, d.centres_b[l], o.patch_size, o.patches_per_image);
    r.levels.push_back(1e3 * sliced_wasserstein_level(da, db, dims, d.directions[l]));
  }
  finish(r);
  return r;
}

SwdReference::SwdReference(const ImageSetView& ref, const SwdOptions& o)
    : options_(o), count_(ref.count), channels_(ref.channels), height_(ref.height), width_(ref.width) {
  check_options(o);
  check_sets(ref, ref, o);
  draws_ = draw_swd(count_, count_, channels_, height_, width_, o);
  const int levels = swd_level_count(height_, width_, o.min_resolution);
  const std::vector<std::vector<float>> pyramid = laplacian_pyramid(ref, levels);
  for (int l = 0; l < levels; ++l)
    descriptors_.push_back(swd_descriptors(pyramid[l].data(), count_, channels_, swd_level_side(height_, l),
                                           swd_level_side(width_, l), draws_.centres_a[l], o.patch_size,
                                           o.patches_per_image));
}

SwdResult SwdReference::compare(const ImageSetView& other) const {
  const ImageSetView ref{nullptr, count_, channels_, height_, width_};
  check_sets(ref, other, options_);
  const int levels = static_cast<int>(descriptors_.size());
  const std::vector<std::vector<float>> pyramid = laplacian_pyramid(other, levels);
  const int64_t dims = channels_ * options_.patch_size * options_.patch_size;
  SwdResult r = result_header(other, options_, levels);
  for (int l = 0; l < levels; ++l) {
    const std::vector<float> d = swd_descriptors(pyramid[l].data(), other.count, channels_, r.heights[l], r.widths[l],
                                                 draws_.centres_b[l], options_.patch_size, options_.patches_per_image);
    r.levels.push_back(1e3 * sliced_wasserstein_level(descriptors_[l], d, dims, draws_.directions[l]));
  }
  finish(r);
  return r;
}

std::vector<float> read_image_set(const std::string& path, int64_t* count, int64_t* channels, int64_t* height,
                                  int64_t* width, const std::vector<int64_t>& rows) {
  auto pick = [&](int64_t total) {
    std::vector<int32_t> take;
    if (rows.empty()) {
      for (int64_t i = 0; i < total; ++i) take.push_back(static_cast<int32_t>(i));
    } else {
      for (int64_t i : rows) {
        if (i < 0 || i >= total)
          throw std::out_of_range(path + ": row " + std::to_string(i) + " out of range (" + std::to_string(total) + " rows)");
        take.push_back(static_cast<int32_t>(i));
      }
    }
    return take;
  };
  {
    const MappedNpy file(path);
    const std::vector<int64_t>& shape = file.shape();
    if (shape.size() != 4 || (file.dtype() != DType::U8 && file.dtype() != DType::F16 && file.dtype() != DType::F32))
      throw std::runtime_error(path + ": expected N×C×H×W images as uint8 (prepare-images), float16 (prepare-audio) " +
                               "or float32 in [-1, 1] (samples.npy, sample --out X.npy), got " +
                               dtype_name(file.dtype()) + " of " + std::to_string(shape.size()) + " dimensions");
    if (file.dtype() == DType::F32) {
      *channels = shape[1];
      *height = shape[2];
      *width = shape[3];
      const std::vector<int32_t> take = pick(shape[0]);
      const int64_t size = *channels * *height * *width;
      const float* base = reinterpret_cast<const float*>(file.data());
      std::vector<float> out(take.size() * static_cast<size_t>(size));
      for (size_t k = 0; k < take.size(); ++k)
        std::copy(base + take[k] * size, base + (take[k] + 1) * size, out.data() + k * size);
      *count = static_cast<int64_t>(take.size());
      return out;
    }
  }
  // A dataset: read exactly as the trainer reads it (ImageDataset::gather_as_float: x/127.5 − 1 for uint8).
  const ImageDataset data = load_image_dataset(path);
  *channels = data.channels;
  *height = data.height;
  *width = data.width;
  const std::vector<int32_t> take = pick(data.count);
  std::vector<float> out(take.size() * static_cast<size_t>(data.sample_size()));
  data.gather_as_float(out.data(), take.data(), static_cast<int64_t>(take.size()));
  *count = static_cast<int64_t>(take.size());
  return out;
}

std::vector<int64_t> fixed_subset(int64_t total, int64_t count, uint64_t seed, uint32_t stream) {
  std::vector<int64_t> rows;
  if (count >= total) {
    for (int64_t i = 0; i < total; ++i) rows.push_back(i);
    return rows;
  }
  std::vector<int64_t> perm = Philox(seed, stream).permutation(total);
  rows.assign(perm.begin(), perm.begin() + count);
  std::sort(rows.begin(), rows.end());
  return rows;
}

}  // namespace ds
