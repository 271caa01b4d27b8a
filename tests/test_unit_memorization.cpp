// The memorisation check (engine/inspect/memorization.h): the cuBLAS argument roles through a
// column-major reference GEMM, the blocked search against brute force, and the known cases (samples
// that are training items: memorised; Gaussian noise: not).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/inspect/memorization.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;

namespace {

// C = α·op(A)·op(B) + β·C, column-major, exactly as the BLAS/cuBLAS gemm documentation defines the
// arguments: op(A) m×k, op(B) k×n, C m×n; element (i, j) of a column-major X with leading dimension
// ld at X[i + j·ld]; op = transpose when trans.
void gemm_column_major_reference(const DistanceGemm& g, const float* A, const float* B, float* C) {
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      double s = 0;
      for (int p = 0; p < g.k; ++p) {
        const float a = g.transa ? A[p + i * g.lda] : A[i + p * g.lda];
        const float b = g.transb ? B[j + p * g.ldb] : B[p + j * g.ldb];
        s += double(a) * b;
      }
      C[i + j * g.ldc] = static_cast<float>(s);
    }
}

// n smooth single-channel images (a few Gaussian blobs each), uint8, written as a dataset .npy.
ImageDataset blob_dataset(const fs::path& dir, int64_t n, int64_t side, uint64_t seed) {
  std::vector<uint8_t> px(static_cast<size_t>(n * side * side));
  Philox rng(seed, 0);
  for (int64_t i = 0; i < n; ++i)
    for (int b = 0; b < 2; ++b) {
      const double cy = rng.uniform() * side, cx = rng.uniform() * side, s = 1.5 + 3 * rng.uniform();
      for (int64_t y = 0; y < side; ++y)
        for (int64_t x = 0; x < side; ++x) {
          uint8_t& p = px[(i * side + y) * side + x];
          const double v = p + 200 * std::exp(-((y - cy) * (y - cy) + (x - cx) * (x - cx)) / (2 * s * s));
          p = static_cast<uint8_t>(std::min(255.0, v));
        }
    }
  const std::string path = (dir / "blobs.npy").string();
  write_npy(path, DType::U8, {n, 1, side, side}, px.data());
  return load_image_dataset(path);
}

}  // namespace

TEST_CASE("unit memorization gemm arguments: the cuBLAS operand roles give Q·Rᵀ row-major") {
  // Awkward sizes, so a swapped m/n/k or leading dimension cannot pass by symmetry.
  const int64_t nq = 5, nr = 7, dim = 3;
  std::mt19937 rng(3);
  const std::vector<float> q = ds::test::random_floats(nq * dim, -1, 1, rng), r = ds::test::random_floats(nr * dim, -1, 1, rng);
  const DistanceGemm g = distance_gemm(nq, nr, dim);
  std::vector<float> dots(nq * nr, ds::test::kNaN);
  // As memorization.cpp calls cublasGemmEx: A = the rows block, B = the queries, C = the dots buffer.
  gemm_column_major_reference(g, r.data(), q.data(), dots.data());
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nr; ++j) {
      double want = 0;
      for (int64_t p = 0; p < dim; ++p) want += double(q[i * dim + p]) * r[j * dim + p];
      CHECK(dots[i * nr + j] == doctest::Approx(want).epsilon(1e-6));  // row-major n_queries × n_rows
    }
}

TEST_CASE("unit memorization search: blocked GEMM search equals brute force, exclusions honoured") {
  const fs::path dir = ds::test::fresh_dir("memorization_search");
  const ImageDataset data = blob_dataset(dir, 53, 8, 1);
  const int64_t dim = data.sample_size(), nq = 6, k = 4;
  std::vector<float> queries(nq * dim);
  Philox rng(2, 0);
  for (float& v : queries) v = rng.uniform() * 2 - 1;
  data.sample_as_float(queries.data() + 2 * dim, 17);  // an exact copy of row 17
  std::vector<uint8_t> excluded(data.count, 0);
  for (int64_t i = 0; i < data.count; i += 3) excluded[i] = 1;
  for (int64_t block : {int64_t{7}, int64_t{0}}) {  // 7: blocks with a short last one; 0: the default (one block)
    INFO("block_rows " << block);
    const NeighbourSearch s = nearest_rows(queries.data(), nq, data, k, excluded, Device::CPU, block);
    std::vector<float> row(dim);
    for (int64_t q = 0; q < nq; ++q) {
      std::vector<std::pair<double, int64_t>> all, kept;
      for (int64_t i = 0; i < data.count; ++i) {
        data.sample_as_float(row.data(), i);
        double d = 0;
        for (int64_t j = 0; j < dim; ++j) d += (double(queries[q * dim + j]) - row[j]) * (double(queries[q * dim + j]) - row[j]);
        all.push_back({std::sqrt(d), i});
        if (!excluded[i]) kept.push_back({std::sqrt(d), i});
      }
      std::sort(all.begin(), all.end());
      std::sort(kept.begin(), kept.end());
      for (int64_t j = 0; j < k; ++j) {
        CHECK(s.indices[q * k + j] == all[j].second);
        CHECK(s.distances[q * k + j] == doctest::Approx(all[j].first).epsilon(1e-12));
      }
      CHECK(s.nearest_kept_index[q] == kept[0].second);
      CHECK(s.nearest_kept[q] == doctest::Approx(kept[0].first).epsilon(1e-12));
    }
    CHECK(s.indices[2 * k] == 17);
    CHECK(s.distances[2 * k] == 0.0);  // recomputed exactly: a copy is at distance 0, not GEMM rounding
  }
  CHECK(percentile({1, 2, 3, 4, 5}, 5) == doctest::Approx(1.2));  // numpy.percentile([1..5], 5)
  CHECK(percentile({4, 1, 3, 2}, 50) == doctest::Approx(2.5));
}

TEST_CASE("unit memorization known cases: training items are memorised, Gaussian noise is not") {
  const fs::path dir = ds::test::fresh_dir("memorization_known");
  const ImageDataset data = blob_dataset(dir, 400, 16, 7);
  const int64_t dim = data.sample_size(), K = 32;
  MemorizationOptions o;
  o.neighbours = 3;
  o.heldout = 40;

  // Samples that are training items (rows outside the held-out set): distance 0 to themselves.
  const MemorizationReport probe = analyse_memorization(std::vector<float>(dim, 0.f).data(), 1, data, o);
  std::vector<float> copies(K * dim);
  int64_t taken = 0;
  for (int64_t i = 0; i < data.count && taken < K; i += 5)
    if (!std::binary_search(probe.heldout_rows.begin(), probe.heldout_rows.end(), i))
      data.sample_as_float(copies.data() + taken++ * dim, i);
  REQUIRE(taken == K);
  const MemorizationReport mem = analyse_memorization(copies.data(), K, data, o);
  MESSAGE(mem.verdict);
  CHECK(mem.verdict_word == "memorised");
  CHECK(mem.fraction_below_heldout_p05 == 1.0);
  CHECK(mem.sample_nn_distance.max == 0.0);
  CHECK(mem.heldout_nn_distance.p05 > 0.0);
  CHECK(mem.num_heldout == 40);
  CHECK(mem.num_reference == 360);
  for (int64_t q = 0; q < K; ++q) CHECK(mem.samples.distances[q * 3] == 0.0);

  // Gaussian noise, clipped to [−1, 1]: nothing like any training item.
  std::vector<float> noise(K * dim);
  Philox(3, 0).fill_normal(noise.data(), 0.f, 0.5f, static_cast<int64_t>(noise.size()));
  for (float& v : noise) v = std::max(-1.f, std::min(1.f, v));
  const MemorizationReport fresh = analyse_memorization(noise.data(), K, data, o);
  MESSAGE(fresh.verdict);
  CHECK(fresh.verdict_word == "not memorised");
  CHECK(fresh.fraction_below_heldout_p05 == 0.0);
  CHECK(fresh.sample_nn_distance.min > fresh.heldout_nn_distance.p95);

  // The same held-out rows every time (fixed seed), and the summary as `darkstar report` reads it.
  CHECK(fresh.heldout_rows == mem.heldout_rows);
  const nlohmann::json j = nlohmann::json::parse(mem.summary_json());
  CHECK(j.at("k") == 3);
  CHECK(j.at("num_samples") == K);
  CHECK(j.at("num_heldout") == 40);
  for (const char* side : {"sample_nn_distance", "heldout_nn_distance"})
    for (const char* f : {"min", "p05", "median", "p95", "max"}) CHECK(j.at(side).at(f).is_number());
  CHECK(j.at("verdict").get<std::string>().rfind("memorised:", 0) == 0);
}
