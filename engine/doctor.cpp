// darkstar doctor: every CUDA op against the CPU path through the same op functions the layers call.
#include "engine/doctor.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/cuda_context.h"
#include "engine/ops.h"
#include "engine/rng.h"

namespace ds {

namespace {

std::vector<float> random_values(int64_t n, uint32_t stream, float scale = 1.f) {
  std::vector<float> v(n);
  Philox(20261123, stream).fill_normal(v.data(), 0.f, scale, n);
  return v;
}

// max|a - b| / max|b|: one number per tensor, insensitive to where the values are small.
double max_normalised_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}

struct Pair {
  Tensor cpu, gpu;
};
Pair random_pair(const Shape& shape, uint32_t stream, float scale = 1.f) {
  const std::vector<float> v = random_values(shape_numel(shape), stream, scale);
  return {Tensor::from_host(v, shape, Device::CPU), Tensor::from_host(v, shape, Device::CUDA)};
}

struct Report {
  std::FILE* out;
  bool ok = true;
  // Tolerance: FMA-only math (exact mode), float accumulation in a different order: ~1e-5 relative.
  void check(const std::string& what, const Tensor& gpu, const Tensor& cpu, double tol = 1e-4) {
    const double err = max_normalised_error(gpu.to_host(), cpu.to_host());
    const bool pass = std::isfinite(err) && err <= tol;
    ok = ok && pass;
    std::fprintf(out, "  %-44s max-normalised error %.2e  %s\n", what.c_str(), err, pass ? "ok" : "FAILED");
  }
};

}  // namespace

bool run_doctor(std::FILE* out) {
  const CudaProbe& probe = probe_cuda();
  std::fprintf(out, "darkstar doctor\n");
  if (!probe.available) {
    std::fprintf(out, "  GPU: none usable (%s)\n", probe.reason.c_str());
    std::fprintf(out, "  CUDA checks SKIPPED: training runs on the CPU (--device cpu or auto)\n");
    return true;
  }
  std::fprintf(out, "  GPU: %s\n", probe.device_name.c_str());
  CudaContext::get().set_exact_math(true);
  Report r{out};
  try {
    // Convolutions: DCGAN-like shapes, odd batch, both directions.
    for (bool transposed : {false, true}) {
      const ConvShape s = transposed ? make_conv_shape(3, 8, 5, 7, 4, 4, 4, 2, 1, true)
                                     : make_conv_shape(3, 4, 10, 14, 8, 4, 4, 2, 1, false);
      const std::string name = transposed ? "conv_transpose2d" : "conv2d";
      ConvOp cpu_op(s, Device::CPU), gpu_op(s, Device::CUDA);
      Pair x = random_pair(conv_input_shape(s), 1), w = random_pair(conv_weight_shape(s), 2, 0.1f);
      Pair dy = random_pair(conv_output_shape(s), 3);
      Pair y{Tensor::zeros(conv_output_shape(s), Device::CPU), Tensor::zeros(conv_output_shape(s), Device::CUDA)};
      cpu_op.forward(y.cpu, x.cpu, w.cpu);
      gpu_op.forward(y.gpu, x.gpu, w.gpu);
      r.check(name + " forward", y.gpu, y.cpu);
      Pair dx{Tensor::zeros(conv_input_shape(s), Device::CPU), Tensor::zeros(conv_input_shape(s), Device::CUDA)};
      cpu_op.backward_data(dx.cpu, dy.cpu, w.cpu);
      gpu_op.backward_data(dx.gpu, dy.gpu, w.gpu);
      r.check(name + " backward data", dx.gpu, dx.cpu);
      Pair dw = random_pair(conv_weight_shape(s), 4);  // accumulates onto existing values
      cpu_op.backward_filter(dw.cpu, dy.cpu, x.cpu);
      gpu_op.backward_filter(dw.gpu, dy.gpu, x.gpu);
      r.check(name + " backward filter (+=)", dw.gpu, dw.cpu);
    }
    // Batch norm, train/eval/backward.
    {
      const Shape shape{3, 5, 7, 9}, ch{5};
      Pair x = random_pair(shape, 5, 2.f), gamma = random_pair(ch, 6), beta = random_pair(ch, 7), dy = random_pair(shape, 8);
      Pair rm = random_pair(ch, 9), rv{Tensor::zeros(ch, Device::CPU), Tensor::zeros(ch, Device::CUDA)};
      rv.cpu.fill(1.f);
      rv.gpu.fill(1.f);
      Pair y{Tensor::zeros(shape, Device::CPU), Tensor::zeros(shape, Device::CUDA)};
      Pair mean{Tensor::zeros(ch, Device::CPU), Tensor::zeros(ch, Device::CUDA)};
      Pair invstd{Tensor::zeros(ch, Device::CPU), Tensor::zeros(ch, Device::CUDA)};
      batchnorm_forward_train(y.cpu, mean.cpu, invstd.cpu, rm.cpu, rv.cpu, x.cpu, gamma.cpu, beta.cpu, 0.1, 1e-5);
      batchnorm_forward_train(y.gpu, mean.gpu, invstd.gpu, rm.gpu, rv.gpu, x.gpu, gamma.gpu, beta.gpu, 0.1, 1e-5);
      r.check("batchnorm forward (train)", y.gpu, y.cpu);
      r.check("batchnorm running mean", rm.gpu, rm.cpu);
      r.check("batchnorm running var", rv.gpu, rv.cpu);
      Pair dx{Tensor::zeros(shape, Device::CPU), Tensor::zeros(shape, Device::CUDA)};
      Pair dg = random_pair(ch, 10), db = random_pair(ch, 11);
      batchnorm_backward(dx.cpu, dg.cpu, db.cpu, dy.cpu, x.cpu, gamma.cpu, mean.cpu, invstd.cpu);
      batchnorm_backward(dx.gpu, dg.gpu, db.gpu, dy.gpu, x.gpu, gamma.gpu, mean.gpu, invstd.gpu);
      r.check("batchnorm backward dx", dx.gpu, dx.cpu);
      r.check("batchnorm backward dgamma (+=)", dg.gpu, dg.cpu);
      r.check("batchnorm backward dbeta (+=)", db.gpu, db.cpu);
      batchnorm_forward_eval(y.cpu, x.cpu, gamma.cpu, beta.cpu, rm.cpu, rv.cpu, 1e-5);
      batchnorm_forward_eval(y.gpu, x.gpu, gamma.gpu, beta.gpu, rm.gpu, rv.gpu, 1e-5);
      r.check("batchnorm forward (eval)", y.gpu, y.cpu);
    }
    // Activations.
    {
      const Shape shape{3, 5, 7, 11};
      Pair x = random_pair(shape, 12, 2.f), dy = random_pair(shape, 13);
      auto run = [&](const std::string& name, const std::function<void(Tensor&, const Tensor&)>& fwd,
                     const std::function<void(Tensor&, const Tensor&, const Tensor&)>& bwd) {
        Pair y{Tensor::zeros(shape, Device::CPU), Tensor::zeros(shape, Device::CUDA)};
        Pair dx{Tensor::zeros(shape, Device::CPU), Tensor::zeros(shape, Device::CUDA)};
        fwd(y.cpu, x.cpu);
        fwd(y.gpu, x.gpu);
        r.check(name + " forward", y.gpu, y.cpu);
        bwd(dx.cpu, dy.cpu, y.cpu);
        bwd(dx.gpu, dy.gpu, y.gpu);
        r.check(name + " backward", dx.gpu, dx.cpu);
      };
      run("relu", [](Tensor& y, const Tensor& x) { relu_forward(y, x); },
          [](Tensor& dx, const Tensor& dy, const Tensor& y) { relu_backward(dx, dy, y); });
      run("leaky_relu", [](Tensor& y, const Tensor& x) { leaky_relu_forward(y, x, 0.2f); },
          [](Tensor& dx, const Tensor& dy, const Tensor& y) { leaky_relu_backward(dx, dy, y, 0.2f); });
      run("tanh", [](Tensor& y, const Tensor& x) { tanh_forward(y, x); },
          [](Tensor& dx, const Tensor& dy, const Tensor& y) { tanh_backward(dx, dy, y); });
    }
    // Loss and Adam.
    {
      const Shape shape{37, 1, 1, 1}, one{1};
      Pair logits = random_pair(shape, 14, 3.f);
      for (float target : {0.f, 1.f}) {
        Pair dl{Tensor::zeros(shape, Device::CPU), Tensor::zeros(shape, Device::CUDA)};
        Pair loss{Tensor::zeros(one, Device::CPU), Tensor::zeros(one, Device::CUDA)};
        Pair prob{Tensor::zeros(one, Device::CPU), Tensor::zeros(one, Device::CUDA)};
        bce_with_logits(dl.cpu, loss.cpu, prob.cpu, logits.cpu, target);
        bce_with_logits(dl.gpu, loss.gpu, prob.gpu, logits.gpu, target);
        const std::string t = target == 1.f ? " (label 1)" : " (label 0)";
        r.check("bce_with_logits loss" + t, loss.gpu, loss.cpu);
        r.check("bce_with_logits mean sigmoid" + t, prob.gpu, prob.cpu);
        r.check("bce_with_logits gradient" + t, dl.gpu, dl.cpu);
      }
      const Shape p{1001};
      Pair params = random_pair(p, 15), grads = random_pair(p, 16);
      Pair m{Tensor::zeros(p, Device::CPU), Tensor::zeros(p, Device::CUDA)};
      Pair v{Tensor::zeros(p, Device::CPU), Tensor::zeros(p, Device::CUDA)};
      AdamCounter step_cpu(Device::CPU), step_gpu(Device::CUDA);
      for (int step = 1; step <= 3; ++step) {
        adam_step(params.cpu, m.cpu, v.cpu, grads.cpu, AdamConfig{}, step_cpu);
        adam_step(params.gpu, m.gpu, v.gpu, grads.gpu, AdamConfig{}, step_gpu);
      }
      r.check("adam (3 steps) parameters", params.gpu, params.cpu, 1e-6);
    }
    // Noise: device Philox against the host's (device logf/sincosf differ by a few ulp).
    {
      Pair z{Tensor::zeros({7, 13, 1, 1}, Device::CPU), Tensor::zeros({7, 13, 1, 1}, Device::CUDA)};
      normal_noise(z.cpu, 42, 3, 5);
      normal_noise(z.gpu, 42, 3, 5);
      r.check("normal noise (Philox)", z.gpu, z.cpu, 1e-5);
    }
    CudaContext::get().synchronize();
  } catch (const std::exception& e) {
    std::fprintf(out, "  FAILED with an error: %s\n", e.what());
    r.ok = false;
  }
  CudaContext::get().set_exact_math(false);
  std::fprintf(out, "%s\n", r.ok ? "all CUDA ops agree with the CPU" : "SOME CUDA OPS DISAGREE WITH THE CPU");
  return r.ok;
}

}  // namespace ds
