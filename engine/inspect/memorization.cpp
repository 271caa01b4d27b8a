// Memorisation check (see memorization.h): blocked GEMM nearest-neighbour search over a memory-mapped
// dataset, the held-out comparison, and the files `inspect memorization` writes.
#include "engine/inspect/memorization.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/core/cuda_context.h"
#include "engine/core/rng.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/npy.h"
#include "engine/formats/png.h"
#include "engine/inspect/swd.h"
#include "engine/train/checkpoint.h"

namespace fs = std::filesystem;

namespace ds {

DistanceGemm distance_gemm(int64_t n_queries, int64_t n_rows, int64_t dim) {
  // cuBLAS is column-major (cuBLAS docs, 1.1 Data Layout) and gemm computes C = α·op(A)·op(B) + β·C
  // with op(A) m×k, op(B) k×n, C m×n, each array's leading dimension the stride between its columns
  // (cublas<t>gemm). A row-major n_rows × dim block R is, read column-major, the dim × n_rows matrix Rᵀ
  // with leading dimension dim; likewise Q is Qᵀ (dim × n_queries, ld dim). The row-major product
  // D = Q·Rᵀ (n_queries × n_rows, row stride n_rows) is, read column-major, Dᵀ = R·Qᵀ (n_rows ×
  // n_queries, ld n_rows) = op(A)·op(B) with A = Rᵀ-as-stored, op(A) = its transpose (CUBLAS_OP_T,
  // m = n_rows, k = dim, lda = dim) and B = Qᵀ-as-stored untransposed (CUBLAS_OP_N, n = n_queries,
  // ldb = dim), C = D's buffer with ldc = n_rows. tests/test_unit_memorization.cpp runs these
  // arguments through a column-major reference GEMM against plain dot products.
  DistanceGemm g;
  g.transa = true;
  g.transb = false;
  g.m = static_cast<int>(n_rows);
  g.n = static_cast<int>(n_queries);
  g.k = static_cast<int>(dim);
  g.lda = static_cast<int>(dim);
  g.ldb = static_cast<int>(dim);
  g.ldc = static_cast<int>(n_rows);
  return g;
}

namespace {

double exact_distance(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return std::sqrt(s);
}

// Keeps the k smallest (value, index) pairs, ascending, ties by lower index.
struct TopK {
  std::vector<std::pair<float, int64_t>> items;
  size_t k;
  explicit TopK(size_t k_) : k(k_) { items.reserve(k_ + 1); }
  void offer(float v, int64_t i) {
    if (k == 0) return;
    if (items.size() == k && !(std::make_pair(v, i) < items.back())) return;
    auto at = std::lower_bound(items.begin(), items.end(), std::make_pair(v, i));
    items.insert(at, {v, i});
    if (items.size() > k) items.pop_back();
  }
};

}  // namespace

NeighbourSearch nearest_rows(const float* queries, int64_t n_queries, const ImageDataset& data, int64_t k,
                             const std::vector<uint8_t>& excluded, Device device, int64_t block_rows) {
  const int64_t dim = data.sample_size();
  if (k < 1 || k > data.count)
    throw std::invalid_argument("--neighbours " + std::to_string(k) + ": expected 1 to the dataset's " +
                                std::to_string(data.count) + " rows");
  if (!excluded.empty() && static_cast<int64_t>(excluded.size()) != data.count)
    throw std::invalid_argument("nearest_rows: one exclusion flag per dataset row expected");
  if (block_rows <= 0) {
    // 64 MiB of float rows, and of the n_queries × block distances.
    const int64_t budget = (int64_t{64} << 20) / static_cast<int64_t>(sizeof(float));
    block_rows = std::max<int64_t>(1, std::min(budget / dim, budget / std::max<int64_t>(1, n_queries)));
  }
  block_rows = std::min(block_rows, data.count);

  std::vector<double> qnorm(static_cast<size_t>(n_queries));
  for (int64_t q = 0; q < n_queries; ++q) {
    double s = 0;
    for (int64_t j = 0; j < dim; ++j) s += double(queries[q * dim + j]) * queries[q * dim + j];
    qnorm[q] = s;
  }
  std::vector<TopK> top(static_cast<size_t>(n_queries), TopK(static_cast<size_t>(k)));
  std::vector<std::pair<float, int64_t>> best_kept(static_cast<size_t>(n_queries),
                                                   {std::numeric_limits<float>::infinity(), -1});

  Tensor q_dev, r_dev, d_dev;
  if (device == Device::CUDA) {
    q_dev = Tensor::empty({n_queries, dim}, Device::CUDA);
    q_dev.copy_from_host(queries, n_queries * dim);
    r_dev = Tensor::empty({block_rows, dim}, Device::CUDA);
    d_dev = Tensor::empty({n_queries, block_rows}, Device::CUDA);
  }
  std::vector<float> rows(static_cast<size_t>(block_rows * dim)), dots(static_cast<size_t>(n_queries * block_rows));
  std::vector<int32_t> index(static_cast<size_t>(block_rows));
  std::vector<double> rnorm(static_cast<size_t>(block_rows));
  for (int64_t begin = 0; begin < data.count; begin += block_rows) {
    const int64_t nb = std::min(block_rows, data.count - begin);
    for (int64_t i = 0; i < nb; ++i) index[i] = static_cast<int32_t>(begin + i);
    data.gather_as_float(rows.data(), index.data(), nb);  // the trainer's mapping to [−1, 1]
    for (int64_t i = 0; i < nb; ++i) {
      double s = 0;
      for (int64_t j = 0; j < dim; ++j) s += double(rows[i * dim + j]) * rows[i * dim + j];
      rnorm[i] = s;
    }
    const DistanceGemm g = distance_gemm(n_queries, nb, dim);
    if (device == Device::CUDA) {
      Tensor r_block = r_dev.rows(0, nb);
      r_block.copy_from_host(rows.data(), nb * dim);
      CudaContext& ctx = CudaContext::get();
      const float one = 1.f, zero = 0.f;
      // cublasGemmEx (cuBLAS docs): cublasSgemm's arguments plus data types and a compute type.
      // CUBLAS_COMPUTE_32F_PEDANTIC keeps full FP32 whatever the handle's math mode (TF32 in
      // training), so the candidates are the CPU's up to summation order. Operand roles: distance_gemm.
      DS_CUBLAS_CHECK(cublasGemmEx(ctx.cublas(), g.transa ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   g.transb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &one, r_dev.data(), CUDA_R_32F,
                                   g.lda, q_dev.data(), CUDA_R_32F, g.ldb, &zero, d_dev.data(), CUDA_R_32F, g.ldc,
                                   CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
      DS_CUDA_CHECK(cudaMemcpyAsync(dots.data(), d_dev.data(), sizeof(float) * n_queries * nb,
                                    cudaMemcpyDeviceToHost, ctx.stream()));
      ctx.synchronize();
    } else {
      // The same product, row-major: D (n_queries × nb) = Q · Rᵀ.
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n_queries), static_cast<int>(nb),
                  static_cast<int>(dim), 1.f, queries, static_cast<int>(dim), rows.data(), static_cast<int>(dim), 0.f,
                  dots.data(), static_cast<int>(nb));
    }
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < n_queries; ++q) {
      for (int64_t i = 0; i < nb; ++i) {
        const float d2 = static_cast<float>(std::max(0.0, qnorm[q] + rnorm[i] - 2.0 * dots[q * nb + i]));
        top[q].offer(d2, begin + i);
        if ((excluded.empty() || !excluded[begin + i]) && std::make_pair(d2, begin + i) < best_kept[q])
          best_kept[q] = {d2, begin + i};
      }
    }
  }

  NeighbourSearch out;
  out.queries = n_queries;
  out.k = k;
  out.indices.resize(static_cast<size_t>(n_queries * k));
  out.distances.resize(out.indices.size());
  out.nearest_kept_index.resize(static_cast<size_t>(n_queries));
  out.nearest_kept.resize(static_cast<size_t>(n_queries));
  std::vector<float> row(static_cast<size_t>(dim));
  for (int64_t q = 0; q < n_queries; ++q) {
    std::vector<std::pair<double, int64_t>> exact;
    for (const auto& [d2, i] : top[q].items) {
      data.sample_as_float(row.data(), i);
      exact.push_back({exact_distance(queries + q * dim, row.data(), dim), i});
    }
    std::sort(exact.begin(), exact.end());
    for (int64_t j = 0; j < k; ++j) {
      out.indices[q * k + j] = exact[j].second;
      out.distances[q * k + j] = exact[j].first;
    }
    out.nearest_kept_index[q] = best_kept[q].second;
    if (best_kept[q].second >= 0) {
      data.sample_as_float(row.data(), best_kept[q].second);
      out.nearest_kept[q] = exact_distance(queries + q * dim, row.data(), dim);
    } else {
      out.nearest_kept[q] = std::numeric_limits<double>::infinity();
    }
  }
  return out;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

DistanceSummary summarize_distances(std::vector<double> v) {
  DistanceSummary s;
  s.min = percentile(v, 0);
  s.p05 = percentile(v, 5);
  s.median = percentile(v, 50);
  s.p95 = percentile(v, 95);
  s.max = percentile(v, 100);
  return s;
}

namespace {
nlohmann::json summary_object(const DistanceSummary& s) {
  return {{"min", s.min}, {"p05", s.p05}, {"median", s.median}, {"p95", s.p95}, {"max", s.max}};
}
std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
}  // namespace

std::string MemorizationReport::summary_json() const {
  nlohmann::json j = {{"k", k},
                      {"num_samples", num_samples},
                      {"num_heldout", num_heldout},
                      {"sample_nn_distance", summary_object(sample_nn_distance)},
                      {"heldout_nn_distance", summary_object(heldout_nn_distance)},
                      {"verdict", verdict}};
  return j.dump(2) + "\n";
}

std::string MemorizationReport::neighbours_json() const {
  nlohmann::json idx = nlohmann::json::array(), dist = nlohmann::json::array();
  for (int64_t q = 0; q < samples.queries; ++q) {
    nlohmann::json ri = nlohmann::json::array(), rd = nlohmann::json::array();
    for (int64_t j = 0; j < samples.k; ++j) {
      ri.push_back(samples.indices[q * samples.k + j]);
      rd.push_back(samples.distances[q * samples.k + j]);
    }
    idx.push_back(ri);
    dist.push_back(rd);
  }
  return nlohmann::json{{"indices", idx}, {"distances", dist}}.dump() + "\n";
}

MemorizationReport analyse_memorization(const float* samples, int64_t n_samples, const ImageDataset& data,
                                        const MemorizationOptions& o) {
  if (n_samples < 1) throw std::invalid_argument("--samples " + std::to_string(n_samples) + ": expected at least 1");
  if (data.count < 2)
    throw std::invalid_argument("the dataset has " + std::to_string(data.count) +
                                " rows: at least 2 are needed (one held out, one to compare with)");
  int64_t h = o.heldout > 0 ? o.heldout : std::max<int64_t>(1, std::min<int64_t>(500, data.count / 10));
  if (h >= data.count)
    throw std::invalid_argument("--heldout " + std::to_string(h) + ": expected fewer than the dataset's " +
                                std::to_string(data.count) + " rows");
  MemorizationReport r;
  r.k = o.neighbours;
  r.num_samples = n_samples;
  r.num_heldout = h;
  r.num_reference = data.count - h;
  r.heldout_rows = fixed_subset(data.count, h, o.heldout_seed, 7);
  std::vector<uint8_t> excluded(static_cast<size_t>(data.count), 0);
  for (int64_t i : r.heldout_rows) excluded[i] = 1;

  // One search for both sides: the samples and the held-out rows as queries.
  const int64_t dim = data.sample_size();
  std::vector<float> queries(static_cast<size_t>((n_samples + h) * dim));
  std::copy(samples, samples + n_samples * dim, queries.begin());
  std::vector<int32_t> rows(r.heldout_rows.begin(), r.heldout_rows.end());
  data.gather_as_float(queries.data() + n_samples * dim, rows.data(), h);
  const NeighbourSearch all = nearest_rows(queries.data(), n_samples + h, data, o.neighbours, excluded, o.device,
                                           o.block_rows);
  NeighbourSearch& s = r.samples;
  s.queries = n_samples;
  s.k = all.k;
  s.indices.assign(all.indices.begin(), all.indices.begin() + n_samples * all.k);
  s.distances.assign(all.distances.begin(), all.distances.begin() + n_samples * all.k);
  s.nearest_kept_index.assign(all.nearest_kept_index.begin(), all.nearest_kept_index.begin() + n_samples);
  s.nearest_kept.assign(all.nearest_kept.begin(), all.nearest_kept.begin() + n_samples);
  r.heldout_nn.assign(all.nearest_kept.begin() + n_samples, all.nearest_kept.end());
  r.sample_nn_distance = summarize_distances(s.nearest_kept);
  r.heldout_nn_distance = summarize_distances(r.heldout_nn);

  const double bar = r.heldout_nn_distance.p05;
  int64_t below = 0;
  for (double d : s.nearest_kept) below += d < bar;
  r.fraction_below_heldout_p05 = double(below) / double(n_samples);
  // Samples drawn like the data would fall below the held-out 5th percentile about 5 % of the time;
  // 15 % leaves room for the sampling noise of K samples and of the percentile (binomial sd ≈ 2.7
  // points at K = 64); half of them is a generator that mostly reproduces training items.
  r.verdict_word = r.fraction_below_heldout_p05 >= 0.5    ? "memorised"
                   : r.fraction_below_heldout_p05 > 0.15 ? "partly memorised"
                                                          : "not memorised";
  r.verdict = r.verdict_word + ": " + std::to_string(below) + " of " + std::to_string(n_samples) + " samples (" +
              fmt("%.0f", 100 * r.fraction_below_heldout_p05) +
              " %) are closer to their nearest training row than 95 % of held-out training rows are to theirs "
              "(expected ~5 % for new images like the data); L2 in the model's [-1, 1] input space, both sides "
              "against the same " + std::to_string(r.num_reference) + " rows of the dataset minus " +
              std::to_string(h) + " held out (fixed seed); median sample->train " +
              fmt("%.3g", r.sample_nn_distance.median) + " vs held-out->train " +
              fmt("%.3g", r.heldout_nn_distance.median) + ", held-out 5th percentile " + fmt("%.3g", bar);
  return r;
}

MemorizationReport run_memorization(const std::string& checkpoint, const std::string& data_path,
                                    const std::string& out_dir, const MemorizationOptions& o) {
  if (o.samples < 1) throw std::invalid_argument("--samples " + std::to_string(o.samples) + ": expected at least 1");
  const ImageDataset data = load_image_dataset(data_path);
  LoadedGenerator lg = load_generator(checkpoint, o.samples, o.device);
  const ModelConfig& mc = lg.model;
  if (mc.channels != data.channels || mc.height != data.height || mc.width != data.width)
    throw std::invalid_argument(checkpoint + " makes " + std::to_string(mc.channels) + "×" + std::to_string(mc.height) +
                                "×" + std::to_string(mc.width) + " images but " + data_path + " holds " +
                                std::to_string(data.channels) + "×" + std::to_string(data.height) + "×" +
                                std::to_string(data.width) + " (give the dataset it was trained on)");
  // The noise of `sample --seed S --n K` (Philox stream 5), so the same command shows the same images.
  std::vector<float> z(static_cast<size_t>(o.samples * mc.nz));
  Philox(o.seed, 5).fill_normal(z.data(), 0.f, 1.f, static_cast<int64_t>(z.size()));
  const Tensor zt = Tensor::from_host(z, {o.samples, mc.nz, 1, 1}, o.device);
  lg.generator->forward(zt, false);  // eval mode, as the trainer's sample grids
  const std::vector<float> samples = lg.generator->output().to_host();

  MemorizationReport r = analyse_memorization(samples.data(), o.samples, data, o);

  fs::create_directories(out_dir);
  const fs::path dir(out_dir);
  write_npy((dir / "samples.npy").string(), DType::F32, {o.samples, mc.channels, mc.height, mc.width}, samples.data());
  write_text_atomic((dir / "neighbours.json").string(), r.neighbours_json());
  const int64_t shown = std::min(o.png_rows, o.samples), per_row = r.k + 1, size = data.sample_size();
  std::vector<float> grid(static_cast<size_t>(shown * per_row * size));
  for (int64_t q = 0; q < shown; ++q) {
    float* row = grid.data() + q * per_row * size;
    std::copy(samples.data() + q * size, samples.data() + (q + 1) * size, row);
    for (int64_t j = 0; j < r.k; ++j) data.sample_as_float(row + (j + 1) * size, r.samples.indices[q * r.k + j]);
  }
  write_png_grid((dir / "neighbours.png").string(), grid.data(), static_cast<int>(shown * per_row),
                 static_cast<int>(data.channels), static_cast<int>(data.height), static_cast<int>(data.width),
                 static_cast<int>(per_row));
  write_text_atomic((dir / "summary.json").string(), r.summary_json());
  return r;
}

}  // namespace ds
