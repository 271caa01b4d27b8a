// The memorisation search's cuBLAS GEMM (engine/inspect/memorization.cpp) against the CPU's OpenBLAS
// path on the same data: the same neighbours, in the same order, at the same distances.
#include <doctest/doctest.h>

#include <filesystem>
#include <vector>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/inspect/memorization.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;

TEST_CASE("gpu memorization: cuBLAS nearest rows equal the CPU's, blocked and not") {
  const fs::path dir = fs::temp_directory_path() / "ds_gpu_memorization";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const int64_t n = 301, side = 16, nq = 13, k = 4;  // odd sizes: a short last block of 300 / 7
  std::vector<uint8_t> px(n * side * side);
  Philox rng(5, 0);
  for (uint8_t& p : px) p = static_cast<uint8_t>(rng.uniform() * 255.0);
  const std::string path = (dir / "d.npy").string();
  write_npy(path, DType::U8, {n, 1, side, side}, px.data());
  const ImageDataset data = load_image_dataset(path);
  std::vector<float> q(nq * side * side);
  for (float& v : q) v = rng.uniform() * 2 - 1;
  data.sample_as_float(q.data() + 3 * side * side, 123);  // an exact copy
  std::vector<uint8_t> excluded(n, 0);
  for (int64_t i = 0; i < n; i += 4) excluded[i] = 1;
  for (int64_t block : {int64_t{7}, int64_t{0}}) {
    const NeighbourSearch c = nearest_rows(q.data(), nq, data, k, excluded, Device::CPU, block);
    const NeighbourSearch g = nearest_rows(q.data(), nq, data, k, excluded, Device::CUDA, block);
    // Both pick candidates from FP32 GEMMs (pedantic FP32 on CUDA) and recompute the distances in
    // double from the rows, so only a near-tie within GEMM rounding could reorder them: none here.
    CHECK(g.indices == c.indices);
    CHECK(g.nearest_kept_index == c.nearest_kept_index);
    CHECK(g.distances == c.distances);
    CHECK(g.indices[3 * k] == 123);
    CHECK(g.distances[3 * k] == 0.0);
  }
}
