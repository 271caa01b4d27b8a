// darkstar inspect latent: what G does along paths in its latent space. Interpolation grids (one row
// per pair of fixed-seed z, spherical interpolation between them) and per-dimension sweeps (one row
// per dimension d, z_d from −a to a with every other dimension of a fixed z unchanged), as PNG grids
// plus the images and the z used as .npy. G runs in eval mode (batch norm with its running
// statistics), as the trainer's fixed-noise sample grids and `darkstar sample` do, so each image
// depends on its own z only.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/nn/dcgan.h"

namespace ds {

// Spherical linear interpolation (Shoemake 1985; for GAN latents White 2016, "Sampling Generative
// Networks"): with θ = arccos(a·b / (|a||b|)),
//   slerp(a, b; t) = sin((1 − t)θ)/sin θ · a + sin(tθ)/sin θ · b,   t in [0, 1].
// For |a| = |b| every point has the same norm and the angle to a grows as tθ (a straight line
// would cut through the inside of the sphere, where Gaussian z of high dimension never lie). When
// sin θ < kSlerpLinearBelow (a and b (anti)parallel, or one of them zero) the great circle is
// undefined or numerically useless and the weights fall back to the straight line's 1 − t and t.
constexpr double kSlerpLinearBelow = 1e-6;
struct SlerpWeights {
  double a = 1, b = 0;  // out = a·first + b·second
  bool linear = false;  // the straight-line fallback was taken
};
SlerpWeights slerp_weights(const float* a, const float* b, int64_t n, double t);
// out (n values) = slerp(a, b; t), accumulated in double.
void slerp_latent(float* out, const float* a, const float* b, int64_t n, double t);

// Interpolation rows: endpoints holds pairs × 2 × nz (first, second of each pair); row p·steps + j is
// slerp(first_p, second_p; j / (steps − 1)), so j = 0 and j = steps − 1 are the endpoints themselves.
std::vector<float> interpolation_latents(const float* endpoints, int64_t pairs, int64_t nz, int64_t steps);
// Sweep rows: row k·steps + j is `base` with dimension dims[k] set to −range + 2·range·j/(steps − 1).
std::vector<float> sweep_latents(const float* base, int64_t nz, const std::vector<int64_t>& dims, int64_t steps,
                                 double range);
// The fixed-seed z: pairs × 2 × nz endpoints (Philox(seed, stream 6)) and the sweep's base z
// (Philox(seed, stream 7)), N(0, 1).
std::vector<float> latent_endpoints(uint64_t seed, int64_t pairs, int64_t nz);
std::vector<float> latent_sweep_base(uint64_t seed, int64_t nz);

// G (eval mode) on rows × nz latents, `G.batch()` at a time (the last chunk padded with zeros);
// returns rows × C×H×W images in [−1, 1].
std::vector<float> generate_eval(Generator& G, const std::vector<float>& z, int64_t rows, int64_t nz);

struct LatentOptions {
  int64_t pairs = 4;          // interpolation rows (0: none)
  int64_t steps = 8;          // images per row, endpoints included (>= 2)
  std::vector<int64_t> dims;  // sweep rows; empty: dimensions 0 .. min(nz, 8) − 1
  bool no_sweep = false;      // no sweep rows at all
  double range = 3.0;         // sweep from −range to range (z is N(0, 1): ±3 standard deviations)
  uint64_t seed = 1;
  Device device = Device::CPU;
  int64_t batch = 64;  // generator batch (memory), not a result: eval mode makes images independent
};

struct LatentResult {
  ModelConfig model;
  std::vector<int64_t> dims;         // the sweep's dimensions as used
  std::vector<std::string> written;  // every file, in writing order
  bool has_dataset_sidecar = false;  // the checkpoint says which dataset it was trained on
};

// "3,0,17" → {3, 0, 17}; throws std::invalid_argument naming --dims for anything else (a repeated
// dimension included).
std::vector<int64_t> parse_latent_dims(const std::string& text);

// Loads G from checkpoint (netG.safetensors or last.safetensors) and writes into out_dir:
// interpolation.png (pairs rows × steps), interpolation.npy (float32 pairs·steps × C×H×W in [−1, 1]),
// interpolation_z.npy (float32 pairs·steps × nz: `darkstar sample --z` takes it), the same three for
// sweep, and latent.json (the settings, the sweep's values, the row order). Throws
// std::invalid_argument naming the flag for bad options and std::runtime_error naming the file when
// out_dir already holds a latent.json (nothing is overwritten).
LatentResult inspect_latent(const std::string& checkpoint, const std::string& out_dir, const LatentOptions& options);

}  // namespace ds
