// darkstar inspect latent (see latent.h): slerp, the latent rows, eval-mode generation, the files.
#include "engine/inspect/latent.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/core/rng.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/npy.h"
#include "engine/formats/png.h"
#include "engine/train/checkpoint.h"

namespace fs = std::filesystem;

namespace ds {

namespace {
// Philox streams of the fixed z (the trainer uses 0–4, `sample` 5): distinct so no draw shifts another.
constexpr uint32_t kStreamEndpoints = 6, kStreamSweepBase = 7;
}  // namespace

SlerpWeights slerp_weights(const float* a, const float* b, int64_t n, double t) {
  double aa = 0, bb = 0, ab = 0;
  for (int64_t i = 0; i < n; ++i) {
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
    ab += double(a[i]) * b[i];
  }
  SlerpWeights w;
  const double cosine = (aa > 0 && bb > 0) ? std::clamp(ab / std::sqrt(aa * bb), -1.0, 1.0) : 1.0;
  const double theta = std::acos(cosine), s = std::sin(theta);
  if (s < kSlerpLinearBelow) {
    w.a = 1.0 - t;
    w.b = t;
    w.linear = true;
  } else {
    w.a = std::sin((1.0 - t) * theta) / s;
    w.b = std::sin(t * theta) / s;
  }
  return w;
}

void slerp_latent(float* out, const float* a, const float* b, int64_t n, double t) {
  const SlerpWeights w = slerp_weights(a, b, n, t);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(w.a * a[i] + w.b * b[i]);
}

std::vector<float> interpolation_latents(const float* endpoints, int64_t pairs, int64_t nz, int64_t steps) {
  if (steps < 2) throw std::invalid_argument("--steps " + std::to_string(steps) + ": expected at least 2");
  std::vector<float> z(static_cast<size_t>(pairs * steps * nz));
  for (int64_t p = 0; p < pairs; ++p) {
    const float* a = endpoints + (2 * p) * nz;
    const float* b = endpoints + (2 * p + 1) * nz;
    for (int64_t j = 0; j < steps; ++j) {
      float* row = z.data() + (p * steps + j) * nz;
      // The ends are copied, not computed: sin(θ)/sin(θ) can be 1 ± 1 ulp.
      if (j == 0) std::copy(a, a + nz, row);
      else if (j == steps - 1) std::copy(b, b + nz, row);
      else slerp_latent(row, a, b, nz, double(j) / double(steps - 1));
    }
  }
  return z;
}

std::vector<float> sweep_latents(const float* base, int64_t nz, const std::vector<int64_t>& dims, int64_t steps,
                                 double range) {
  if (steps < 2) throw std::invalid_argument("--steps " + std::to_string(steps) + ": expected at least 2");
  std::vector<float> z;
  z.reserve(dims.size() * static_cast<size_t>(steps * nz));
  for (int64_t d : dims) {
    if (d < 0 || d >= nz)
      throw std::invalid_argument("--dims: dimension " + std::to_string(d) + " is outside 0.." + std::to_string(nz - 1) +
                                  " (this checkpoint's nz is " + std::to_string(nz) + ")");
    for (int64_t j = 0; j < steps; ++j) {
      z.insert(z.end(), base, base + nz);
      z[z.size() - nz + d] = static_cast<float>(-range + 2.0 * range * double(j) / double(steps - 1));
    }
  }
  return z;
}

std::vector<float> latent_endpoints(uint64_t seed, int64_t pairs, int64_t nz) {
  std::vector<float> z(static_cast<size_t>(2 * pairs * nz));
  Philox(seed, kStreamEndpoints).fill_normal(z.data(), 0.f, 1.f, static_cast<int64_t>(z.size()));
  return z;
}

std::vector<float> latent_sweep_base(uint64_t seed, int64_t nz) {
  std::vector<float> z(static_cast<size_t>(nz));
  Philox(seed, kStreamSweepBase).fill_normal(z.data(), 0.f, 1.f, nz);
  return z;
}

std::vector<float> generate_eval(Generator& G, const std::vector<float>& z, int64_t rows, int64_t nz) {
  const int64_t B = G.batch();
  Tensor zt = Tensor::zeros({B, nz, 1, 1}, G.device());
  std::vector<float> chunk(static_cast<size_t>(B * nz));
  std::vector<float> images;
  for (int64_t begin = 0; begin < rows; begin += B) {
    const int64_t n = std::min(B, rows - begin);
    std::fill(chunk.begin(), chunk.end(), 0.f);
    std::copy(z.begin() + begin * nz, z.begin() + (begin + n) * nz, chunk.begin());
    zt.copy_from_host(chunk.data(), B * nz);
    G.forward(zt, false);
    const std::vector<float> out = G.output().to_host();
    const int64_t per_image = static_cast<int64_t>(out.size()) / B;
    images.insert(images.end(), out.begin(), out.begin() + n * per_image);
  }
  return images;
}

std::vector<int64_t> parse_latent_dims(const std::string& text) {
  std::vector<int64_t> dims;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0)
      throw std::invalid_argument("--dims " + text + ": '" + item +
                                  "' is not a dimension; expected non-negative integers separated by commas, e.g. 0,3,17");
    if (std::find(dims.begin(), dims.end(), v) != dims.end())
      throw std::invalid_argument("--dims " + text + ": dimension " + item + " given twice");
    dims.push_back(v);
    begin = end + 1;
  }
  return dims;
}

LatentResult inspect_latent(const std::string& checkpoint, const std::string& out_dir, const LatentOptions& o) {
  if (o.pairs < 0) throw std::invalid_argument("--pairs " + std::to_string(o.pairs) + ": expected 0 or more");
  if (o.steps < 2) throw std::invalid_argument("--steps " + std::to_string(o.steps) + ": expected at least 2");
  if (!(o.range > 0) || !std::isfinite(o.range))
    throw std::invalid_argument("--range " + std::to_string(o.range) + ": expected a positive number");
  if (o.batch < 1) throw std::invalid_argument("generator batch must be >= 1");
  const fs::path dir(out_dir);
  if (fs::exists(dir / "latent.json"))
    throw std::runtime_error((dir / "latent.json").string() +
                             " exists: --out already holds an inspect latent result; give another --out");
  const int64_t sweep_rows_max = o.no_sweep ? 0 : std::max<int64_t>(1, static_cast<int64_t>(o.dims.size()));
  const int64_t rows_max = std::max<int64_t>(1, std::max(o.pairs, sweep_rows_max) * o.steps);
  LoadedGenerator lg = load_generator(checkpoint, std::min(o.batch, rows_max), o.device);
  const ModelConfig& mc = lg.model;
  const int64_t nz = mc.nz;
  LatentResult r;
  r.model = mc;
  r.has_dataset_sidecar = !lg.dataset_sidecar.empty();
  if (!o.no_sweep) {
    r.dims = o.dims;
    if (r.dims.empty())
      for (int64_t d = 0; d < std::min<int64_t>(nz, 8); ++d) r.dims.push_back(d);
  }
  if (o.pairs == 0 && r.dims.empty())
    throw std::invalid_argument("--pairs 0 and no sweep: nothing to generate");
  // Validate every dimension before anything is written.
  const std::vector<float> base = latent_sweep_base(o.seed, nz);
  const std::vector<float> sweep_z = sweep_latents(base.data(), nz, r.dims, o.steps, o.range);
  const std::vector<float> endpoints = latent_endpoints(o.seed, o.pairs, nz);
  const std::vector<float> interp_z = interpolation_latents(endpoints.data(), o.pairs, nz, o.steps);

  fs::create_directories(dir);
  const int64_t C = mc.channels, H = mc.height, W = mc.width;
  auto write_set = [&](const std::string& stem, const std::vector<float>& z, int64_t rows) {
    if (rows == 0) return;
    const std::vector<float> images = generate_eval(*lg.generator, z, rows, nz);
    const std::string png = (dir / (stem + ".png")).string(), npy = (dir / (stem + ".npy")).string(),
                      znpy = (dir / (stem + "_z.npy")).string();
    write_png_grid(png, images.data(), static_cast<int>(rows), static_cast<int>(C), static_cast<int>(H),
                   static_cast<int>(W), static_cast<int>(o.steps));
    write_npy(npy, DType::F32, {rows, C, H, W}, images.data());
    write_npy(znpy, DType::F32, {rows, nz}, z.data());
    r.written.insert(r.written.end(), {png, npy, znpy});
  };
  write_set("interpolation", interp_z, o.pairs * o.steps);
  write_set("sweep", sweep_z, static_cast<int64_t>(r.dims.size()) * o.steps);

  std::vector<double> values;
  for (int64_t j = 0; j < o.steps; ++j) values.push_back(-o.range + 2.0 * o.range * double(j) / double(o.steps - 1));
  nlohmann::json j = {
      {"checkpoint", checkpoint},
      {"model", nlohmann::json::parse(mc.to_json())},
      {"generator_mode", "eval (batch norm with running statistics), as the trainer's sample grids"},
      {"seed", o.seed},
      {"steps", o.steps},
      {"interpolation",
       {{"pairs", o.pairs},
        {"rows", "row p*steps + j = slerp(z_p0, z_p1; j/(steps-1)) (White 2016), straight line when sin(theta) < 1e-6"},
        {"t", nlohmann::json::array()}}},
      {"sweep", {{"dims", r.dims}, {"range", o.range}, {"values", values},
                 {"rows", "row k*steps + j = the base z with dimension dims[k] set to values[j]"}}},
      {"files", nlohmann::json::array()}};
  for (int64_t s = 0; s < o.steps; ++s) j["interpolation"]["t"].push_back(double(s) / double(o.steps - 1));
  for (const std::string& f : r.written) j["files"].push_back(fs::path(f).filename().string());
  const std::string meta = (dir / "latent.json").string();
  write_text_atomic(meta, j.dump(1) + "\n");
  r.written.push_back(meta);
  return r;
}

}  // namespace ds
