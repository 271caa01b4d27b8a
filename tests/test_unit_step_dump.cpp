// train --dump: the dump must not change training (checkpoints bit-identical with and without it),
// and every dumped tensor must be what its name says, checked by relations a mislabelled tensor
// would break: activations against their inputs, the three passes' logits against the logged
// D(x) / D(G(z)), loss gradients, tensors shared between passes, batch-norm statistics, conv
// forward with the weights of the pass, and parameter gradients recomputed from dumped inputs and
// output gradients. Also the command line's refusals.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/rng.h"
#include "engine/formats/npy.h"
#include "engine/train/step_dump.h"
#include "engine/train/trainer.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ds;
using ds::test::contains;
using ds::test::fresh_dir;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// 32 random 16×16 grey images: D has stages conv(0)+leaky(1), conv(2)+bn(3)+leaky(4), conv(5);
// G has convT(0)+bn(1)+relu(2), convT(3)+bn(4)+relu(5), convT(6)+tanh(7).
std::string write_dataset(const fs::path& dir) {
  std::vector<uint8_t> pixels(32 * 16 * 16);
  Philox rng(5, 0);
  for (uint8_t& p : pixels) p = static_cast<uint8_t>(rng.uniform() * 255.0);
  const std::string path = (dir / "noise.npy").string();
  write_npy(path, DType::U8, {32, 1, 16, 16}, pixels.data());
  return path;
}

TrainConfig tiny(const std::string& data, const fs::path& out) {
  TrainConfig c;
  c.data_path = data;
  c.out_dir = out.string();
  c.model.nz = 6;
  c.model.ngf = 4;
  c.model.ndf = 4;
  c.batch = 8;
  c.n_samples = 4;
  c.sample_every = 0;
  c.log_every = 1;
  c.quiet = true;
  return c;
}

struct Dump {
  fs::path dir;
  nlohmann::json index;
  std::map<std::string, NpyArray> cache;
  const NpyArray& get(const std::string& name) {
    auto it = cache.find(name);
    if (it != cache.end()) return it->second;
    REQUIRE_MESSAGE(fs::exists(dir / (name + ".npy")), name);
    return cache[name] = read_npy((dir / (name + ".npy")).string());
  }
  std::vector<float> values(const std::string& name) {
    const NpyArray& a = get(name);
    REQUIRE(a.dtype == DType::F32);
    return std::vector<float>(a.as<float>(), a.as<float>() + a.numel());
  }
  std::vector<int64_t> shape(const std::string& name) { return get(name).shape; }
};

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::abs(a[i] - b[i])));
  return d;
}
double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float v : a) m = std::max(m, double(std::abs(v)));
  return m;
}

// Conv2d (no bias) as plain loops in double: y[n,k,oy,ox] = Σ x[n,c,oy·s−p+r, ox·s−p+q] w[k,c,r,q].
std::vector<float> conv2d(const std::vector<float>& x, const std::vector<float>& w, int N, int C, int H, int W, int K,
                          int R, int stride, int pad) {
  const int OH = (H + 2 * pad - R) / stride + 1, OW = (W + 2 * pad - R) / stride + 1;
  std::vector<float> y(static_cast<size_t>(N) * K * OH * OW);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      for (int oy = 0; oy < OH; ++oy)
        for (int ox = 0; ox < OW; ++ox) {
          double s = 0;
          for (int c = 0; c < C; ++c)
            for (int r = 0; r < R; ++r)
              for (int q = 0; q < R; ++q) {
                const int iy = oy * stride - pad + r, ix = ox * stride - pad + q;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += double(x[((n * C + c) * H + iy) * W + ix]) * w[((k * C + c) * R + r) * R + q];
              }
          y[((n * K + k) * OH + oy) * OW + ox] = static_cast<float>(s);
        }
  return y;
}
// d(loss)/dw of that conv from its input and the gradient of its output, accumulated into dw (double).
void conv2d_weight_grad(std::vector<double>& dw, const std::vector<float>& x, const std::vector<float>& dy, int N,
                        int C, int H, int W, int K, int R, int stride, int pad) {
  const int OH = (H + 2 * pad - R) / stride + 1, OW = (W + 2 * pad - R) / stride + 1;
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      for (int oy = 0; oy < OH; ++oy)
        for (int ox = 0; ox < OW; ++ox) {
          const double g = dy[((n * K + k) * OH + oy) * OW + ox];
          for (int c = 0; c < C; ++c)
            for (int r = 0; r < R; ++r)
              for (int q = 0; q < R; ++q) {
                const int iy = oy * stride - pad + r, ix = ox * stride - pad + q;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                dw[((k * C + c) * R + r) * R + q] += g * x[((n * C + c) * H + iy) * W + ix];
              }
        }
}

}  // namespace

TEST_CASE("e2e dump: a run with --dump writes bit-identical checkpoints to one without") {
  const fs::path dir = fresh_dir("e2e_dump_identical");
  const std::string data = write_dataset(dir);
  TrainConfig plain = tiny(data, dir / "plain");
  plain.steps = 6;  // epochs of 4 batches: the dump step (3) sits inside an epoch, the run crosses one
  plain.checkpoint_every = 6;
  TrainConfig dumped = plain;
  dumped.out_dir = (dir / "dumped").string();
  dumped.dump_step = 3;
  Trainer(plain).run();
  Trainer(dumped).run();
  CHECK(fs::exists(fs::path(StepDump::directory(dumped.out_dir, 3)) / "index.json"));
  CHECK_FALSE(fs::exists(dir / "plain" / "dump"));
  for (const char* f : {"last.safetensors", "netG.safetensors", "netD.safetensors"}) {
    INFO(f);
    const std::string a = read_text(dir / "plain" / f), b = read_text(dir / "dumped" / f);
    CHECK(a.size() > 1000);
    CHECK(a == b);  // every byte: weights, BN statistics, Adam moments, step, data order
  }
}

TEST_CASE("unit dump: every dumped tensor is what its name and index entry say") {
  const fs::path dir = fresh_dir("unit_dump_relations");
  const std::string data = write_dataset(dir);
  TrainConfig c = tiny(data, dir / "run");
  c.steps = 2;
  c.checkpoint_every = 0;
  c.dump_step = 2;  // not the first step: Adam moments and BN running statistics are no longer initial
  Trainer trainer(c);
  trainer.run();
  Dump d;
  d.dir = StepDump::directory(c.out_dir, 2);
  d.index = nlohmann::json::parse(read_text(d.dir / "index.json"));
  CHECK(d.index.at("step") == 2);
  const int B = 8;

  // The index: each entry's file exists with the shape and dtype it lists; gradients point at a
  // tensor of the same shape; nothing missing that a study needs.
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& e : d.index.at("tensors")) {
    const std::string name = e.at("name");
    INFO(name);
    CHECK(by_name.count(name) == 0);
    by_name[name] = e;
    CHECK(e.at("file") == name + ".npy");
    CHECK(d.shape(name) == e.at("shape").get<std::vector<int64_t>>());
    CHECK(e.at("dtype") == "float32");
  }
  for (const auto& [name, e] : by_name)
    if (e.contains("gradient_of")) {
      INFO(name);
      REQUIRE(by_name.count(e.at("gradient_of")) == 1);
      CHECK(by_name.at(e.at("gradient_of")).at("shape") == e.at("shape"));
    }
  // 3 D forwards × (input + 6 module outputs) + G forward (input + 8) + 3 D backwards × 6 + G_step's
  // D input gradient + G backward × 8, plus parameters: D's 5 tensors with gradients (D_step), D's 5
  // again (G_step, the updated weights), G's 7 with gradients.
  CHECK(by_name.size() == size_t(3 * 7 + 9 + 3 * 6 + 1 + 8 + 10 + 5 + 14));
  CHECK(by_name.at("D_real.D.main.3.out").at("module") == "BatchNorm2d");
  CHECK(by_name.at("D_fake.G.main.7.out").at("module") == "Tanh");
  CHECK(by_name.at("G_step.G.main.0.out.grad").at("gradient_of") == "D_fake.G.main.0.out");
  CHECK(by_name.at("D_step.D.main.0.weight.grad").at("kind") == "parameter_gradient");

  // Activations against their inputs (the CPU reference's own formulas: exact).
  {
    const std::vector<float> x = d.values("D_real.D.main.0.out"), y = d.values("D_real.D.main.1.out");
    size_t bad = 0;
    for (size_t i = 0; i < x.size(); ++i) bad += y[i] != (x[i] < 0 ? x[i] * 0.2f : x[i]);
    CHECK(bad == 0);
  }
  for (const char* relu : {"1", "4"}) {
    const std::string in = std::string("D_fake.G.main.") + relu, out = std::string("D_fake.G.main.") + char(relu[0] + 1);
    const std::vector<float> x = d.values(in + ".out"), y = d.values(out + ".out");
    size_t bad = 0, negative = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      bad += y[i] != std::max(0.f, x[i]);
      negative += x[i] < 0;
    }
    CHECK(bad == 0);
    CHECK(negative > 0);  // the batch-norm output is centred: the relation is not trivially x = y
  }
  {
    const std::vector<float> pre = d.values("D_fake.G.main.6.out"), out = d.values("D_fake.G.main.7.out");
    size_t bad = 0;
    for (size_t i = 0; i < pre.size(); ++i) bad += out[i] != std::tanh(pre[i]);  // the reference calls std::tanh
    CHECK(bad == 0);
  }
  // Tanh backward: d/d(pre) = d/d(out)·(1 − out²); float products: 1e-6 of the gradient's scale.
  {
    const std::vector<float> dout = d.values("G_step.G.main.7.out.grad"), dpre = d.values("G_step.G.main.6.out.grad"),
                             y = d.values("D_fake.G.main.7.out");
    std::vector<float> want(y.size());
    for (size_t i = 0; i < y.size(); ++i) want[i] = dout[i] * (1.f - y[i] * y[i]);
    CHECK(max_abs_diff(dpre, want) <= 1e-6 * max_abs(want));
    CHECK(max_abs(want) > 0);
  }

  // Inputs shared between passes: the real batch; G(z) fed to D twice; G's output gradient = D's
  // input gradient of the G step; G's input = the step's noise shape.
  CHECK(d.values("D_real.D.input") == trainer.real_batch().to_host());
  CHECK(d.values("D_fake.D.input") == d.values("D_fake.G.main.7.out"));
  CHECK(d.values("G_step.D.input") == d.values("D_fake.G.main.7.out"));
  CHECK(d.values("G_step.D.input.grad") == d.values("G_step.G.main.7.out.grad"));
  CHECK(d.shape("D_fake.G.input") == std::vector<int64_t>{B, 6, 1, 1});
  CHECK(d.values("D_real.D.input") != d.values("D_fake.D.input"));

  // The three passes' logits against the step's logged statistics, and the BCE gradients
  // (σ(x) − label)/B: a swapped pass gives another D(x)/D(G(z)) and the other label.
  const std::vector<float> stats = trainer.statistics().to_host();
  struct PassCheck {
    const char* pass;
    int stat;
    float label;
  };
  for (const PassCheck& p : {PassCheck{"D_real", kDx, 1.f}, PassCheck{"D_fake", kDGz1, 0.f}, PassCheck{"G_step", kDGz2, 1.f}}) {
    INFO(p.pass);
    const std::vector<float> logits = d.values(std::string(p.pass) + ".D.main.5.out");
    const std::vector<float> grad = d.values(std::string(p.pass) + ".D.main.5.out.grad");
    REQUIRE(logits.size() == size_t(B));
    double mean = 0;
    std::vector<float> want(B);
    for (int i = 0; i < B; ++i) {
      const double s = 1.0 / (1.0 + std::exp(-double(logits[i])));
      mean += s / B;
      want[i] = static_cast<float>((s - p.label) / B);
    }
    CHECK(std::abs(mean - stats[p.stat]) < 1e-6);  // σ in float vs double: ~1e-7
    CHECK(max_abs_diff(grad, want) < 1e-7);         // gradients ~0.06: float rounding ~1e-8
  }
  // The G step's D is the updated one; its first conv reproduces from its input and the G_step
  // weights (float sums of 16 products against double: 1e-5 of the output's scale) and not from
  // the D_step (pre-update) weights.
  {
    const std::vector<float> x = d.values("G_step.D.input");
    const std::vector<float> w_new = d.values("G_step.D.main.0.weight"), w_old = d.values("D_step.D.main.0.weight");
    CHECK(w_new != w_old);
    const std::vector<float> y = d.values("G_step.D.main.0.out");
    CHECK(max_abs_diff(y, conv2d(x, w_new, B, 1, 16, 16, 4, 4, 2, 1)) <= 1e-5 * max_abs(y));
    CHECK(max_abs_diff(y, conv2d(x, w_old, B, 1, 16, 16, 4, 4, 2, 1)) > 1e-4 * max_abs(y));
    const std::vector<float> y_real = d.values("D_real.D.main.0.out");
    CHECK(max_abs_diff(y_real, conv2d(d.values("D_real.D.input"), w_old, B, 1, 16, 16, 4, 4, 2, 1)) <=
          1e-5 * max_abs(y_real));
  }
  // Train-mode batch norm: per channel, the output has mean beta and variance gamma²·var/(var+eps)
  // (~gamma² here) over the batch: D's main.3 (8 channels of 4×4) with D_step's parameters.
  {
    const std::vector<float> y = d.values("D_real.D.main.3.out"), pre = d.values("D_real.D.main.2.out");
    const std::vector<float> gamma = d.values("D_step.D.main.3.weight"), beta = d.values("D_step.D.main.3.bias");
    const int K = 8, HW = 16;
    for (int k = 0; k < K; ++k) {
      double m = 0, v = 0, pm = 0, pv = 0;
      for (int n = 0; n < B; ++n)
        for (int i = 0; i < HW; ++i) {
          m += y[(n * K + k) * HW + i];
          pm += pre[(n * K + k) * HW + i];
        }
      m /= B * HW;
      pm /= B * HW;
      for (int n = 0; n < B; ++n)
        for (int i = 0; i < HW; ++i) {
          v += std::pow(y[(n * K + k) * HW + i] - m, 2);
          pv += std::pow(pre[(n * K + k) * HW + i] - pm, 2);
        }
      v /= B * HW;
      pv /= B * HW;
      INFO("channel " << k);
      CHECK(m == doctest::Approx(beta[k]).epsilon(1e-4).scale(1.0));  // absolute 1e-4: float BN of 128 values
      CHECK(v == doctest::Approx(gamma[k] * gamma[k] * pv / (pv + 1e-5)).epsilon(1e-3));
    }
  }
  // Parameter gradients Adam consumed, recomputed from dumped inputs and output gradients:
  // D's first conv sums its real and fake passes; G's first ConvTranspose2d (1×1 → 4×4, stride 1,
  // no padding) has dW[c,k,y,x] = Σ_n z[n,c]·dY[n,k,y,x]. Float accumulation against double: 1e-4
  // of the gradient's scale.
  {
    std::vector<double> dw(4 * 1 * 4 * 4, 0.0);
    conv2d_weight_grad(dw, d.values("D_real.D.input"), d.values("D_real.D.main.0.out.grad"), B, 1, 16, 16, 4, 4, 2, 1);
    conv2d_weight_grad(dw, d.values("D_fake.D.input"), d.values("D_fake.D.main.0.out.grad"), B, 1, 16, 16, 4, 4, 2, 1);
    const std::vector<float> got = d.values("D_step.D.main.0.weight.grad");
    std::vector<float> want(dw.begin(), dw.end());
    CHECK(max_abs(want) > 0);
    CHECK(max_abs_diff(got, want) <= 1e-4 * max_abs(want));
    // Only the real pass's share would be wrong: the fake pass contributes.
    std::vector<double> real_only(dw.size(), 0.0);
    conv2d_weight_grad(real_only, d.values("D_real.D.input"), d.values("D_real.D.main.0.out.grad"), B, 1, 16, 16, 4, 4, 2, 1);
    CHECK(max_abs_diff(got, std::vector<float>(real_only.begin(), real_only.end())) > 1e-2 * max_abs(want));
  }
  {
    const std::vector<float> z = d.values("D_fake.G.input"), dy = d.values("G_step.G.main.0.out.grad");
    const int nz = 6, K = 8, S = 16;  // G main.0: nz → ngf·2 = 8 channels of 4×4
    REQUIRE(dy.size() == size_t(B * K * S));
    std::vector<float> want(nz * K * S);
    for (int c = 0; c < nz; ++c)
      for (int k = 0; k < K; ++k)
        for (int i = 0; i < S; ++i) {
          double s = 0;
          for (int n = 0; n < B; ++n) s += double(z[n * nz + c]) * dy[(n * K + k) * S + i];
          want[(c * K + k) * S + i] = static_cast<float>(s);
        }
    const std::vector<float> got = d.values("G_step.G.main.0.weight.grad");
    CHECK(max_abs(want) > 0);
    CHECK(max_abs_diff(got, want) <= 1e-4 * max_abs(want));
  }
}

TEST_CASE("e2e dump: train --dump through the command line, and what it refuses") {
  const fs::path dir = fresh_dir("e2e_dump_cli");
  const std::string data = write_dataset(dir);
  const fs::path run = dir / "run";
  auto darkstar = [&](const std::string& args, std::string* out) {
    const fs::path log = dir / "log.txt";
    const int status = std::system((std::string(DS_DARKSTAR_EXE) + " " + args + " > " + log.string() + " 2>&1").c_str());
    *out = read_text(log);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  const std::string base = "train --data " + data + " --out " + run.string() +
                           " --nz 6 --ngf 4 --ndf 4 --batch 8 --sample-every 0 --device cpu";
  std::string out;
  CHECK(darkstar(base + " --steps 2 --dump 3", &out) != 0);
  CHECK(contains(out, "--dump 3: expected a step from 1 to --steps 2"));
  CHECK(darkstar(base + " --steps 2 --dump 0", &out) != 0);
  REQUIRE_MESSAGE(darkstar(base + " --steps 2 --dump 1", &out) == 0, out);
  const fs::path step1 = StepDump::directory(run.string(), 1);
  CHECK(fs::path(step1).filename() == "step_0000001");
  const nlohmann::json index = nlohmann::json::parse(read_text(fs::path(step1) / "index.json"));
  CHECK(index.at("tensors").size() > 50);
  // Resumed past the step: refused, saying why.
  CHECK(darkstar(base + " --steps 3 --resume --dump 1", &out) != 0);
  CHECK(contains(out, "resumes at step 2, past it"));
}
