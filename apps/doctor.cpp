// darkstar doctor: every CUDA op against the CPU path through the same op functions the layers call,
// outputs NaN-poisoned first, in exact and in default math; the measures are engine/core/compare.h's, the
// ones the gpu test suite uses.
#include "apps/doctor.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "audio/griffin_lim.h"
#include "audio/griffin_lim_gpu.h"
#include "audio/mel_cpu.h"
#include "audio/mel_gpu.h"
#include "audio/mel_params.h"
#include "engine/core/compare.h"
#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"
#include "engine/nn/ops.h"
#include "engine/core/rng.h"

namespace ds {

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_values(int64_t n, uint32_t stream, float scale = 1.f) {
  std::vector<float> v(static_cast<size_t>(n));
  Philox(20261123, stream).fill_normal(v.data(), 0.f, scale, n);
  return v;
}

// One tensor on the reference side (CPU) and one on the side under test.
struct Pair {
  Tensor cpu, test;
};
Pair random_pair(const Shape& shape, Device device, uint32_t stream, float scale = 1.f) {
  const std::vector<float> v = random_values(shape_numel(shape), stream, scale);
  return {Tensor::from_host(v, shape, Device::CPU), Tensor::from_host(v, shape, device)};
}
// Outputs an op must write: NaN on both sides, so an element left unwritten (or an accumulating β = 1
// where β = 0 is meant) stays NaN and fails.
Pair poisoned_pair(const Shape& shape, Device device) {
  Pair p{Tensor::empty(shape, Device::CPU), Tensor::empty(shape, device)};
  p.cpu.fill(kNaN);
  p.test.fill(kNaN);
  return p;
}

// Host data on a device (CPU: the vector itself), for the raw-pointer ops (gathers, cursors).
template <class T>
struct OnDevice {
  std::vector<T> host;
  DeviceBuffer<T> device;
  const T* get() const { return device.get() ? device.get() : host.data(); }
};
template <class T>
OnDevice<T> on_device(const std::vector<T>& values, Device d) {
  OnDevice<T> b;
  if (d == Device::CUDA)
    b.device = DeviceBuffer<T>::from_host(values);
  else
    b.host = values;
  return b;
}

// Tolerances (max-normalised, engine/core/compare.h), each with its reason:
// - kernels of ours (activations, BN, loss, gathers' float maps): float sums in another order
//   (block reductions vs serial loops) and device expf/logf within a few ulp: ~1e-6..1e-5 → 1e-4.
// - library convolutions, exact math: FMA-only float, but the heuristics may pick FFT or Winograd
//   algorithms, whose error is norm-wise (~1e-6..1e-5 of the largest output here) → 1e-4, as in
//   tests/gpu/test_gpu_conv.cpp.
// - library convolutions, default math: TF32 keeps 10 mantissa bits, each product rounded to ~2^-11
//   relative, a sum of K random-sign products of unit-scale inputs off by ~2^-11·sqrt(K)·scale; for
//   these sizes (K ≤ 32·64) that stays below ~5e-3 of the largest output (tests/gpu/test_gpu_dcgan.cpp).
// - Adam: the same formula on identical inputs, one rounding of each FMA apart: 1e-6 (test_gpu_elementwise).
// - noise: device logf/sincosf vs the host's, a few ulp of values of order 1: 1e-5.
// - gathers and the finite check: exact (a copy, or one correctly rounded division; a boolean).
// - mel image (cuFFT + kernels + pedantic cuBLAS vs kissfft + double sums, in [-1, 1]): 1e-4, the bound
//   of tests/gpu/test_gpu_spectral.cpp (the projection is pedantic in both math modes).
// - Griffin-Lim after 0 and 2 iterations: 1e-4 of the signal's peak (float FFT rounding grows ~3× over
//   2 iterations from ~7e-7: tests/gpu/test_gpu_griffin_lim.cpp measured the growth).
struct Tolerances {
  double kernel = 1e-4, conv = 1e-4, adam = 1e-6, noise = 1e-5, mel = 1e-4, griffin_lim = 1e-4;
};

struct Report {
  std::FILE* out;
  bool ok = true;
  int checks = 0;
  void line(const std::string& what, double err, double tol) {
    const bool pass = err <= tol;  // NaN and inf fail
    ok = ok && pass;
    ++checks;
    std::fprintf(out, "  %-58s error %.2e (tolerance %.0e)  %s\n", what.c_str(), err, tol, pass ? "ok" : "FAILED");
  }
  // Max-normalised error of the side under test against the CPU reference (floor 0: by the
  // reference's own scale; a NaN anywhere on either side fails).
  void check(const std::string& what, const Tensor& test, const Tensor& cpu, double tol) {
    const std::vector<float> want = cpu.to_host();
    // The reference itself must be fully written: a NaN there is a bug in the CPU path or the harness.
    const bool reference_finite = std::all_of(want.begin(), want.end(), [](float v) { return std::isfinite(v); });
    line(what, reference_finite ? max_normalised_error(test.to_host(), want, 0.0) : INFINITY, tol);
  }
  void check_true(const std::string& what, bool pass) { line(what, pass ? 0.0 : INFINITY, 0.0); }
};

void check_convolutions(Report& r, Device d, const Tolerances& tol) {
  struct Case {
    const char* name;
    ConvShape shape;
  };
  // DCGAN's layer kinds at small, odd sizes (odd batch, channel counts and maps).
  const Case cases[] = {
      {"conv2d 4x4/2 (D's inner layers)", make_conv_shape(3, 4, 10, 14, 8, 4, 4, 2, 1, false)},
      {"conv_transpose2d 4x4/2 (G's inner layers)", make_conv_shape(3, 8, 5, 7, 4, 4, 4, 2, 1, true)},
      {"G's first layer 1x1 -> 4x4", make_conv_shape(3, 20, 1, 1, 24, 4, 4, 1, 0, true)},
      {"G's first layer 1x1 -> 4x16 (non-square start)", make_conv_shape(3, 20, 1, 1, 24, 4, 16, 1, 0, true)},
      {"D's last layer 4x4 -> 1 (K = 1)", make_conv_shape(3, 32, 4, 4, 1, 4, 4, 1, 0, false)},
      {"D's last layer 4x16 -> 1 (K = 1)", make_conv_shape(3, 32, 4, 16, 1, 4, 16, 1, 0, false)},
  };
  uint32_t stream = 100;
  for (const Case& c : cases) {
    const ConvShape& s = c.shape;
    ConvOp cpu_op(s, Device::CPU), test_op(s, d);
    Pair x = random_pair(conv_input_shape(s), d, stream++), w = random_pair(conv_weight_shape(s), d, stream++, 0.1f);
    Pair dy = random_pair(conv_output_shape(s), d, stream++);
    Pair y = poisoned_pair(conv_output_shape(s), d);
    cpu_op.forward(y.cpu, x.cpu, w.cpu);
    test_op.forward(y.test, x.test, w.test);
    r.check(std::string(c.name) + " forward", y.test, y.cpu, tol.conv);
    Pair dx = poisoned_pair(conv_input_shape(s), d);
    cpu_op.backward_data(dx.cpu, dy.cpu, w.cpu);
    test_op.backward_data(dx.test, dy.test, w.test);
    r.check(std::string(c.name) + " backward data", dx.test, dx.cpu, tol.conv);
    Pair dw = random_pair(conv_weight_shape(s), d, stream++);  // accumulates onto a prior value (β = 1)
    cpu_op.backward_filter(dw.cpu, dy.cpu, x.cpu);
    test_op.backward_filter(dw.test, dy.test, x.test);
    r.check(std::string(c.name) + " backward filter (+=)", dw.test, dw.cpu, tol.conv);
  }
}

void check_batchnorm(Report& r, Device d, const Tolerances& tol) {
  const Shape shape{3, 5, 7, 9}, ch{5};
  Pair x = random_pair(shape, d, 5, 2.f), gamma = random_pair(ch, d, 6), beta = random_pair(ch, d, 7);
  Pair dy = random_pair(shape, d, 8), rm = random_pair(ch, d, 9);
  Pair rv{Tensor::empty(ch, Device::CPU), Tensor::empty(ch, d)};
  rv.cpu.fill(1.f);
  rv.test.fill(1.f);
  Pair y = poisoned_pair(shape, d), mean = poisoned_pair(ch, d), invstd = poisoned_pair(ch, d);
  batchnorm_forward_train(y.cpu, mean.cpu, invstd.cpu, rm.cpu, rv.cpu, x.cpu, gamma.cpu, beta.cpu, 0.1, 1e-5);
  batchnorm_forward_train(y.test, mean.test, invstd.test, rm.test, rv.test, x.test, gamma.test, beta.test, 0.1, 1e-5);
  r.check("batchnorm forward (train)", y.test, y.cpu, tol.kernel);
  r.check("batchnorm saved mean", mean.test, mean.cpu, tol.kernel);
  r.check("batchnorm saved invstd", invstd.test, invstd.cpu, tol.kernel);
  r.check("batchnorm running mean (updated in place)", rm.test, rm.cpu, tol.kernel);
  r.check("batchnorm running var (updated in place)", rv.test, rv.cpu, tol.kernel);
  Pair dx = poisoned_pair(shape, d);
  Pair dg = random_pair(ch, d, 10), db = random_pair(ch, d, 11);
  batchnorm_backward(dx.cpu, dg.cpu, db.cpu, dy.cpu, x.cpu, gamma.cpu, mean.cpu, invstd.cpu);
  batchnorm_backward(dx.test, dg.test, db.test, dy.test, x.test, gamma.test, mean.test, invstd.test);
  r.check("batchnorm backward dx", dx.test, dx.cpu, tol.kernel);
  r.check("batchnorm backward dgamma (+=)", dg.test, dg.cpu, tol.kernel);
  r.check("batchnorm backward dbeta (+=)", db.test, db.cpu, tol.kernel);
  Pair ye = poisoned_pair(shape, d);
  batchnorm_forward_eval(ye.cpu, x.cpu, gamma.cpu, beta.cpu, rm.cpu, rv.cpu, 1e-5);
  batchnorm_forward_eval(ye.test, x.test, gamma.test, beta.test, rm.test, rv.test, 1e-5);
  r.check("batchnorm forward (eval)", ye.test, ye.cpu, tol.kernel);
  // Batch norm fused with LeakyReLU (the training step's CUDA kernels) against BN then the activation.
  Pair yf = poisoned_pair(shape, d), meanf = poisoned_pair(ch, d), invstdf = poisoned_pair(ch, d);
  batchnorm_activation_forward_train(yf.cpu, meanf.cpu, invstdf.cpu, rm.cpu, rv.cpu, x.cpu, gamma.cpu, beta.cpu, 0.1,
                                     1e-5, BnActivation::LeakyReLU, 0.2f);
  batchnorm_activation_forward_train(yf.test, meanf.test, invstdf.test, rm.test, rv.test, x.test, gamma.test,
                                     beta.test, 0.1, 1e-5, BnActivation::LeakyReLU, 0.2f);
  r.check("batchnorm + leaky_relu forward (train, fused)", yf.test, yf.cpu, tol.kernel);
  r.check("batchnorm + leaky_relu running var", rv.test, rv.cpu, tol.kernel);
  Pair dyf = random_pair(shape, d, 12), dxf = poisoned_pair(shape, d);  // dyf is the op's scratch
  // Both backward passes read the reference's y, so a forward output rounding across 0 cannot flip a mask.
  Tensor y_on_test = Tensor::empty(shape, d);
  y_on_test.copy_from(yf.cpu);
  batchnorm_activation_backward(dxf.cpu, dg.cpu, db.cpu, dyf.cpu, yf.cpu, x.cpu, gamma.cpu, meanf.cpu, invstdf.cpu,
                                BnActivation::LeakyReLU, 0.2f);
  batchnorm_activation_backward(dxf.test, dg.test, db.test, dyf.test, y_on_test, x.test,
                                gamma.test, meanf.test, invstdf.test, BnActivation::LeakyReLU, 0.2f);
  r.check("batchnorm + leaky_relu backward dx (fused)", dxf.test, dxf.cpu, tol.kernel);
  r.check("batchnorm + leaky_relu backward dgamma (+=)", dg.test, dg.cpu, tol.kernel);
  r.check("batchnorm + leaky_relu backward dbeta (+=)", db.test, db.cpu, tol.kernel);
}

void check_activations(Report& r, Device d, const Tolerances& tol) {
  const Shape shape{3, 5, 7, 11};
  Pair x = random_pair(shape, d, 12, 2.f), dy = random_pair(shape, d, 13);
  auto run = [&](const std::string& name, const std::function<void(Tensor&, const Tensor&)>& fwd,
                 const std::function<void(Tensor&, const Tensor&, const Tensor&)>& bwd) {
    Pair y = poisoned_pair(shape, d), dx = poisoned_pair(shape, d);
    fwd(y.cpu, x.cpu);
    fwd(y.test, x.test);
    r.check(name + " forward", y.test, y.cpu, tol.kernel);
    bwd(dx.cpu, dy.cpu, y.cpu);
    bwd(dx.test, dy.test, y.test);
    r.check(name + " backward", dx.test, dx.cpu, tol.kernel);
  };
  run("relu", [](Tensor& y, const Tensor& x) { relu_forward(y, x); },
      [](Tensor& dx, const Tensor& dy, const Tensor& y) { relu_backward(dx, dy, y); });
  run("leaky_relu", [](Tensor& y, const Tensor& x) { leaky_relu_forward(y, x, 0.2f); },
      [](Tensor& dx, const Tensor& dy, const Tensor& y) { leaky_relu_backward(dx, dy, y, 0.2f); });
  run("tanh", [](Tensor& y, const Tensor& x) { tanh_forward(y, x); },
      [](Tensor& dx, const Tensor& dy, const Tensor& y) { tanh_backward(dx, dy, y); });
}

void check_loss_adam_noise(Report& r, Device d, const Tolerances& tol) {
  const Shape shape{37, 1, 1, 1}, one{1};
  Pair logits = random_pair(shape, d, 14, 3.f);
  for (float target : {0.f, 1.f}) {
    Pair dl = poisoned_pair(shape, d), loss = poisoned_pair(one, d), prob = poisoned_pair(one, d);
    bce_with_logits(dl.cpu, loss.cpu, prob.cpu, logits.cpu, target);
    bce_with_logits(dl.test, loss.test, prob.test, logits.test, target);
    const std::string t = target == 1.f ? " (label 1)" : " (label 0)";
    r.check("bce_with_logits loss" + t, loss.test, loss.cpu, tol.kernel);
    r.check("bce_with_logits mean sigmoid" + t, prob.test, prob.cpu, tol.kernel);
    r.check("bce_with_logits gradient" + t, dl.test, dl.cpu, tol.kernel);
  }
  // Adam on identical gradients (the same formula on the same inputs: no sign question, see
  // engine/core/compare.h for comparisons where the gradients themselves differ).
  const Shape p{1001};
  Pair params = random_pair(p, d, 15), grads = random_pair(p, d, 16);
  Pair m{Tensor::zeros(p, Device::CPU), Tensor::zeros(p, d)}, v{Tensor::zeros(p, Device::CPU), Tensor::zeros(p, d)};
  AdamCounter step_cpu(Device::CPU), step_test(d);
  for (int step = 1; step <= 3; ++step) {
    adam_step(params.cpu, m.cpu, v.cpu, grads.cpu, AdamConfig{}, step_cpu);
    adam_step(params.test, m.test, v.test, grads.test, AdamConfig{}, step_test);
  }
  r.check("adam (3 steps) parameters", params.test, params.cpu, tol.adam);
  r.check("adam (3 steps) exp_avg_sq", v.test, v.cpu, tol.adam);
  // Noise: device Philox against the host's, at an offset and with the step read from device memory.
  Pair z = poisoned_pair({7, 13, 1, 1}, d);
  normal_noise(z.cpu, 42, 3, 5);
  normal_noise(z.test, 42, 3, 5);
  r.check("normal noise (Philox)", z.test, z.cpu, tol.noise);
  const std::vector<int64_t> step{6};
  const OnDevice<int64_t> step_test_dev = on_device(step, d);
  Pair za = poisoned_pair({7, 13, 1, 1}, d);
  normal_noise_at(za.cpu, 42, 3, step.data(), 23);
  normal_noise_at(za.test, 42, 3, step_test_dev.get(), 23);
  r.check("normal noise at a device step (Philox)", za.test, za.cpu, tol.noise);
}

void check_gathers_and_finite(Report& r, Device d) {
  // 6 images of 3×5×7 bytes, every byte value 0..255 present; indices with repeats, out of order.
  const int64_t count = 6, image_size = 3 * 5 * 7, n = 4;
  std::vector<uint8_t> bytes(static_cast<size_t>(count * image_size));
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  bytes[0] = 0;
  bytes[1] = 255;
  const std::vector<int32_t> permutation{5, 0, 3, 3, 1, 2, 4};
  const std::vector<int64_t> position{2};
  const OnDevice<uint8_t> bytes_test = on_device(bytes, d);
  const OnDevice<int32_t> perm_test = on_device(permutation, d);
  const OnDevice<int64_t> pos_test = on_device(position, d);
  const Shape out_shape{n, 3, 5, 7};
  Pair img = poisoned_pair(out_shape, d);
  gather_images(img.cpu, bytes.data(), permutation.data(), n, image_size);
  gather_images(img.test, bytes_test.get(), perm_test.get(), n, image_size);
  r.check("gather_images (uint8 -> [-1, 1])", img.test, img.cpu, 0.0);
  Pair img_at = poisoned_pair(out_shape, d);
  gather_images_at(img_at.cpu, bytes.data(), permutation.data(), position.data(), n, image_size);
  gather_images_at(img_at.test, bytes_test.get(), perm_test.get(), pos_test.get(), n, image_size);
  r.check("gather_images_at (device cursor)", img_at.test, img_at.cpu, 0.0);
  Pair rows = random_pair({count, 3, 5, 7}, d, 17);
  Pair got = poisoned_pair(out_shape, d);
  gather_rows(got.cpu, rows.cpu, permutation.data(), n);
  gather_rows(got.test, rows.test, perm_test.get(), n);
  r.check("gather_rows (float rows)", got.test, got.cpu, 0.0);
  Pair got_at = poisoned_pair(out_shape, d);
  gather_rows_at(got_at.cpu, rows.cpu, permutation.data(), position.data(), n);
  gather_rows_at(got_at.test, rows.test, perm_test.get(), pos_test.get(), n);
  r.check("gather_rows_at (device cursor)", got_at.test, got_at.cpu, 0.0);

  // The finite check over several tensors: clean, a NaN in the last element of the second, an Inf first.
  const Shape a{1001}, b{3, 257};
  std::vector<float> va = random_values(1001, 18), vb = random_values(3 * 257, 19);
  const Tensor ta = Tensor::from_host(va, a, d), tb = Tensor::from_host(vb, b, d);
  const bool clean = all_finite({ta, tb});
  vb.back() = kNaN;
  const bool with_nan = all_finite({ta, Tensor::from_host(vb, b, d)});
  va.front() = std::numeric_limits<float>::infinity();
  vb.back() = 0.f;
  const bool with_inf = all_finite({Tensor::from_host(va, a, d), Tensor::from_host(vb, b, d)});
  r.check_true("all_finite: true when clean, false on a NaN or an Inf", clean && !with_nan && !with_inf);
}

// A synthetic "music" signal: a rising chirp, two harmonics and a little noise, amplitude < 1.
std::vector<float> synthetic_audio(int64_t n, int sr) {
  std::vector<float> noise(static_cast<size_t>(n));
  Philox(5, 9).fill_normal(noise.data(), 0.f, 0.01f, n);
  std::vector<float> x(static_cast<size_t>(n));
  const double two_pi = 6.283185307179586;
  for (int64_t i = 0; i < n; ++i) {
    const double t = double(i) / sr;
    const double chirp = std::sin(two_pi * (110.0 * t + 400.0 * t * t));
    x[i] = static_cast<float>(0.4 * chirp + 0.2 * std::sin(two_pi * 440.0 * t) + 0.1 * std::sin(two_pi * 1320.0 * t) +
                              noise[i]);
  }
  return x;
}

void check_mel(Report& r, Device d, const Tolerances& tol) {
  const int sr = 22050;
  const double slice_seconds = 1.0;
  MelParams p = mel_preset("default", sr, slice_seconds);
  if (!p.resize_w) p.frames = static_cast<int>(p.stft_frames(p.slice_samples()));
  const int64_t L = p.slice_samples(), n_slices = 3, stride = L + sr / 8;
  const std::vector<float> audio = synthetic_audio(2 * stride + L, sr);
  const int64_t image_size = int64_t(p.image_height()) * p.image_width();
  std::vector<float> want(static_cast<size_t>(n_slices * image_size)), want_ref(static_cast<size_t>(n_slices));
  for (int64_t s = 0; s < n_slices; ++s) {
    double ref = 0;
    const std::vector<float> image = mel_image(audio.data() + s * stride, L, p, &ref);
    std::copy(image.begin(), image.end(), want.begin() + s * image_size);
    want_ref[static_cast<size_t>(s)] = static_cast<float>(ref);
  }
  std::vector<float> got(want.size(), kNaN), got_ref(want_ref.size(), kNaN);
  if (d == Device::CUDA) {
    const DeviceBuffer<float> d_audio = DeviceBuffer<float>::from_host(audio);
    DeviceBuffer<float> d_images = DeviceBuffer<float>::from_host(got), d_refs = DeviceBuffer<float>::from_host(got_ref);
    MelGpu mel(p, n_slices + 1);  // built for more than it is given: the shorter-batch plan is used
    mel.compute(d_images.get(), d_audio.get(), n_slices, stride, d_refs.get());
    got = d_images.download();
    got_ref = d_refs.download();
  } else {
    for (int64_t s = 0; s < n_slices; ++s) {
      double ref = 0;
      const std::vector<float> image = mel_image(audio.data() + s * stride, L, p, &ref);
      std::copy(image.begin(), image.end(), got.begin() + s * image_size);
      got_ref[static_cast<size_t>(s)] = static_cast<float>(ref);
    }
  }
  // The image is in [-1, 1]: judged absolutely (floor 1). The per-slice reference power relatively.
  r.line("mel image (3 slices, default preset)", max_normalised_error(got, want, 1.0), tol.mel);
  r.line("mel slice dB reference", max_normalised_error(got_ref, want_ref, 0.0), 1e-5);
}

void check_griffin_lim(Report& r, Device d, const Tolerances& tol) {
  const int sr = 22050;
  MelParams p = mel_preset("default", sr, 1.0);
  p.n_fft = p.win = 1024;
  p.hop = 256;
  const std::vector<float> x = synthetic_audio(sr, sr);
  const int64_t L = static_cast<int64_t>(x.size()), frames = p.stft_frames(L);
  const std::vector<complexf> X = stft(x.data(), L, p);
  const std::vector<float> target = stft_magnitude(X.data(), frames, p.n_freqs());
  std::unique_ptr<GriffinLimGpu> gpu;
  if (d == Device::CUDA) gpu = std::make_unique<GriffinLimGpu>(p, frames);
  for (const int iters : {0, 2}) {
    const std::vector<float> want = griffin_lim(target.data(), frames, p, iters, 0.99f, 1234, L);
    const std::vector<float> got = gpu ? gpu->run(target.data(), iters, 0.99f, 1234, L)
                                       : griffin_lim(target.data(), frames, p, iters, 0.99f, 1234, L);
    r.line("griffin-lim " + std::to_string(iters) + " iterations (of the peak)", max_normalised_error(got, want, 0.0),
           tol.griffin_lim);
  }
}

}  // namespace

bool run_doctor_checks(std::FILE* out, Device device, bool exact_math, int* checks_run) {
  Tolerances tol;
  if (!exact_math) tol.conv = 5e-3;
  Report r{out};
  const bool previous_math = device == Device::CUDA && CudaContext::get().exact_math();
  if (device == Device::CUDA) CudaContext::get().set_exact_math(exact_math);
  std::fprintf(out, " %s math (%s)\n", exact_math ? "exact" : "default",
               exact_math ? "FMA only, no TF32" : "TF32 allowed in cuDNN and cuBLAS, as training runs");
  try {
    check_convolutions(r, device, tol);
    check_batchnorm(r, device, tol);
    check_activations(r, device, tol);
    check_loss_adam_noise(r, device, tol);
    check_gathers_and_finite(r, device);
    check_mel(r, device, tol);
    check_griffin_lim(r, device, tol);
    if (device == Device::CUDA) CudaContext::get().synchronize();
  } catch (const std::exception& e) {
    std::fprintf(out, "  FAILED with an error: %s\n", e.what());
    r.ok = false;
  }
  if (device == Device::CUDA) CudaContext::get().set_exact_math(previous_math);
  if (checks_run) *checks_run = r.checks;
  return r.ok;
}

bool run_doctor(std::FILE* out) {
  const CudaProbe& probe = probe_cuda();
  std::fprintf(out, "darkstar doctor\n");
  if (!probe.available) {
    std::fprintf(out, "  GPU: none usable (%s)\n", probe.reason.c_str());
    std::fprintf(out, "  CUDA checks SKIPPED: training runs on the CPU (--device cpu or auto)\n");
    return true;
  }
  std::fprintf(out, "  GPU: %s\n", probe.device_name.c_str());
  const bool exact = run_doctor_checks(out, Device::CUDA, true);
  const bool fast = run_doctor_checks(out, Device::CUDA, false);
  const bool ok = exact && fast;
  std::fprintf(out, "%s\n", ok ? "all CUDA ops agree with the CPU" : "SOME CUDA OPS DISAGREE WITH THE CPU");
  return ok;
}

}  // namespace ds
