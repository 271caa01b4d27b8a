// Is a generator copying its training set? Nearest training rows of generated samples by L2 in the
// model's input space (dataset rows mapped to [−1, 1] by ImageDataset::gather_as_float, the function
// the trainer feeds batches through), all distances of a block of rows as one GEMM
// (‖q‖² + ‖r‖² − 2·q·r; OpenBLAS sgemm on the CPU, cuBLAS on CUDA), blocked over the dataset so
// memory stays bounded, then the distribution of sample → nearest-training distances set against
// held-out training rows → nearest of the same training rows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/data/image_dataset.h"

namespace ds {

// For each query: its k nearest rows among all of the dataset (nearest first) and its single nearest
// row among those not flagged in `excluded` (the held-out set). Distances are Euclidean; the GEMM
// only chooses the candidates: the k + 1 kept distances are recomputed exactly in double from the
// rows and the k re-sorted, so a reported distance of an exact copy is exactly 0.
struct NeighbourSearch {
  int64_t queries = 0, k = 0;
  std::vector<int64_t> indices;     // queries × k, nearest first (ties: lower row first)
  std::vector<double> distances;    // queries × k
  std::vector<int64_t> nearest_kept_index;  // per query: the nearest row not excluded
  std::vector<double> nearest_kept;         // its distance
};

// The GEMM's cuBLAS arguments for one block (column-major, see memorization.cpp): the row-major
// dot products D (n_queries × n_rows) = Q (n_queries × dim) · Rᵀ (R: n_rows × dim, row-major) are
// computed as the column-major Dᵀ (n_rows × n_queries) = op(A) · op(B) with A = R, B = Q.
struct DistanceGemm {
  bool transa = true, transb = false;  // CUBLAS_OP_T, CUBLAS_OP_N
  int m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
};
DistanceGemm distance_gemm(int64_t n_queries, int64_t n_rows, int64_t dim);

// queries: n_queries × data.sample_size() floats in [−1, 1]. excluded: empty, or data.count flags.
// block_rows: dataset rows per GEMM (0: as many as fit 64 MiB of float rows and of distances).
NeighbourSearch nearest_rows(const float* queries, int64_t n_queries, const ImageDataset& data, int64_t k,
                             const std::vector<uint8_t>& excluded, Device device, int64_t block_rows = 0);

// min, 5th percentile, median, 95th percentile, max (numpy's default linear interpolation).
struct DistanceSummary {
  double min = 0, p05 = 0, median = 0, p95 = 0, max = 0;
};
DistanceSummary summarize_distances(std::vector<double> values);
double percentile(std::vector<double> values, double q);  // q in [0, 100], numpy.percentile

struct MemorizationOptions {
  int64_t samples = 64;      // K
  int64_t neighbours = 5;    // k
  int64_t heldout = 0;       // |H|; 0: min(500, count / 10), at least 1
  uint64_t seed = 1;         // of the generator's noise: the same images as `sample --seed S --n K`
  uint64_t heldout_seed = 0; // which rows are held out (Philox stream 7)
  Device device = Device::CPU;
  int64_t block_rows = 0;    // see nearest_rows
  int64_t png_rows = 32;     // neighbours.png shows the first this many samples
};

struct MemorizationReport {
  int64_t k = 0, num_samples = 0, num_heldout = 0, num_reference = 0;
  std::vector<int64_t> heldout_rows;  // ascending
  NeighbourSearch samples;            // sample → all of D (k) and → D∖H (1)
  std::vector<double> heldout_nn;     // H → nearest of D∖H
  DistanceSummary sample_nn_distance, heldout_nn_distance;
  double fraction_below_heldout_p05 = 0;  // of samples closer to D∖H than 95 % of held-out rows are
  std::string verdict_word;               // "memorised" | "partly memorised" | "not memorised"
  std::string verdict;                    // one line: what was compared, how, and the figures
  std::string summary_json() const;       // summary.json as `darkstar report` reads it
  std::string neighbours_json() const;    // {"indices": K×k, "distances": K×k}
};

// The comparison on given samples (K × data.sample_size(), [−1, 1]), for tests and for the CLI.
MemorizationReport analyse_memorization(const float* samples, int64_t n_samples, const ImageDataset& data,
                                        const MemorizationOptions& options);

// `darkstar inspect memorization`: K samples from the checkpoint's generator in eval mode (batch norm
// with its running statistics, as the trainer's sample grids), analysed against the dataset; writes
// out_dir/samples.npy, neighbours.json, neighbours.png (each row: sample | its k nearest rows) and
// summary.json. Throws naming the file when the checkpoint's images differ in shape from the data.
MemorizationReport run_memorization(const std::string& checkpoint, const std::string& data_path,
                                    const std::string& out_dir, const MemorizationOptions& options);

}  // namespace ds
