// Element-wise CUDA kernels (ds::kcuda: kernels/activations.cu, loss.cu, adam.cu, image.cu) on the GPU
// against the CPU references (engine/nn/cpu/activations.h, loss.h, adam.h, image.h) on awkward sizes, with
// every output poisoned first so unwritten elements are caught.
//
// Tolerances differ from the emulated tests (which are bit-exact) only where the GPU may round
// differently: CUDA's tanhf/expf/log1pf are within 1–2 ulp of the correctly rounded result (CUDA C
// Programming Guide, "Mathematical Functions", single-precision table) where glibc's are within ~1 ulp,
// and nvcc contracts a·b + c into one FMA. Comparisons, single multiplies, IEEE division and sqrt (nvcc's
// defaults -prec-div=true -prec-sqrt=true) and integer work must still match exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/adam.h"
#include "engine/nn/cpu/image.h"
#include "engine/nn/cpu/loss.h"
#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"
#include "kernels/activations.h"
#include "kernels/adam.h"
#include "kernels/fill.h"
#include "kernels/image.h"
#include "kernels/loss.h"
#include "tests/test_util.h"

namespace {

using ds::DeviceBuffer;

using ds::test::count_mismatches;
using ds::test::download;
using ds::test::kNaN;
using ds::test::normalised_error;
using ds::test::random_floats;

constexpr int64_t kSizes[] = {1, 255, 257, 1000003};

cudaStream_t stream() { return ds::CudaContext::get().stream(); }

// DeviceBuffer::from_host copies on the context's stream and waits for it, so kernels enqueued on that
// stream afterwards see the data (nothing here touches the legacy default stream).
template <class T>
DeviceBuffer<T> to_device(const std::vector<T>& host) {
  return DeviceBuffer<T>::from_host(host);
}

DeviceBuffer<float> poisoned(size_t n) {
  DeviceBuffer<float> b(n);
  ds::kcuda::fill(b.get(), kNaN, static_cast<int64_t>(n), stream());
  return b;
}

}  // namespace

TEST_CASE("gpu activations: relu, leaky_relu, tanh forward and backward against the CPU reference") {
  std::mt19937 rng(201);
  const float slope = 0.2f;
  for (int64_t n : kSizes) {
    CAPTURE(n);
    const size_t count = static_cast<size_t>(n);
    std::vector<float> x = random_floats(count, -3.0f, 3.0f, rng);
    x[0] = 0.0f;
    const std::vector<float> dy = random_floats(count, -1.0f, 1.0f, rng);
    auto d_x = to_device(x), d_dy = to_device(dy);
    std::vector<float> y_ref(count), dx_ref(count);

    // ReLU and LeakyReLU: selections and one multiply, exact on any IEEE machine.
    ds::cpu::relu_forward(y_ref.data(), x.data(), n);
    ds::cpu::relu_backward(dx_ref.data(), dy.data(), y_ref.data(), n);
    {
      auto d_y = poisoned(count), d_dx = poisoned(count), d_y_ref = to_device(y_ref);
      ds::kcuda::relu_forward(d_y.get(), d_x.get(), n, stream());
      ds::kcuda::relu_backward(d_dx.get(), d_dy.get(), d_y_ref.get(), n, stream());
      CHECK(count_mismatches(download(d_y), y_ref) == 0);
      CHECK(count_mismatches(download(d_dx), dx_ref) == 0);
    }
    ds::cpu::leaky_relu_forward(y_ref.data(), x.data(), slope, n);
    ds::cpu::leaky_relu_backward(dx_ref.data(), dy.data(), y_ref.data(), slope, n);
    {
      auto d_y = poisoned(count), d_dx = poisoned(count), d_y_ref = to_device(y_ref);
      ds::kcuda::leaky_relu_forward(d_y.get(), d_x.get(), slope, n, stream());
      ds::kcuda::leaky_relu_backward(d_dx.get(), d_dy.get(), d_y_ref.get(), slope, n, stream());
      CHECK(count_mismatches(download(d_y), y_ref) == 0);
      CHECK(count_mismatches(download(d_dx), dx_ref) == 0);
    }
    // Tanh: tanhf within 2 ulp on each side (≤ 4 ulp of 1 ≈ 4.8e-7 apart for |y| ≤ 1); the backward
    // 1 − y² may be one FMA (≤ 1 ulp of 1 absolute, times |dy| ≤ 1). Absolute 6e-7 on values ≤ 1.
    ds::cpu::tanh_forward(y_ref.data(), x.data(), n);
    ds::cpu::tanh_backward(dx_ref.data(), dy.data(), y_ref.data(), n);
    {
      auto d_y = poisoned(count), d_dx = poisoned(count), d_y_ref = to_device(y_ref);
      ds::kcuda::tanh_forward(d_y.get(), d_x.get(), n, stream());
      ds::kcuda::tanh_backward(d_dx.get(), d_dy.get(), d_y_ref.get(), n, stream());
      CHECK(normalised_error(download(d_y), y_ref, 1.0) <= 6e-7);
      CHECK(normalised_error(download(d_dx), dx_ref, 1.0) <= 6e-7);
    }
  }
}

// Loss and probability: each element within a few ulp (expf 2, log1pf 1, FMA), summed in double, so
// the means are within ~4 ulp relative: 1e-6. dlogits = (σ − t)·dloss/n: σ within ~3 ulp of 1 absolute,
// so against max|dlogits| ≳ 0.3·dloss/n (logits spread over ±6) the normalised error is ≲ 1e-6; 2e-6.
TEST_CASE("gpu bce_with_logits: loss, mean probability and dlogits for n = 1, 3, 257, 4099, both targets") {
  std::mt19937 rng(203);
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{257}, int64_t{4099}}) {
    std::vector<float> logits = random_floats(static_cast<size_t>(n), -6.0f, 6.0f, rng);
    if (n > 3) {
      logits[1] = 90.0f;
      logits[2] = -90.0f;
    }
    if (n == 1) logits[0] = 1.5f;  // keep σ − t away from 0 for either target
    auto d_logits = to_device(logits);
    for (float target : {0.0f, 1.0f}) {
      CAPTURE(n);
      CAPTURE(target);
      const float dloss = 0.5f;
      float p_ref = 0;
      const float loss_ref = ds::cpu::bce_with_logits_forward(&p_ref, logits.data(), target, n);
      std::vector<float> d_ref(static_cast<size_t>(n));
      ds::cpu::bce_with_logits_backward(d_ref.data(), logits.data(), target, dloss, n);

      auto d_loss = poisoned(1), d_p = poisoned(1), d_d = poisoned(static_cast<size_t>(n));
      ds::kcuda::bce_with_logits(d_loss.get(), d_p.get(), d_d.get(), d_logits.get(), target, dloss, n, stream());
      const float loss = download(d_loss)[0], p = download(d_p)[0];
      CHECK(loss == doctest::Approx(loss_ref).epsilon(1e-6).scale(0));
      CHECK(p == doctest::Approx(p_ref).epsilon(1e-6).scale(0));
      CHECK(normalised_error(download(d_d), d_ref, 0.0) <= 2e-6);

      // Deterministic: a second launch gives the same bits.
      auto d_loss2 = poisoned(1);
      ds::kcuda::bce_with_logits(d_loss2.get(), d_p.get(), nullptr, d_logits.get(), target, dloss, n, stream());
      const float loss2 = download(d_loss2)[0];
      CHECK(std::memcmp(&loss, &loss2, sizeof loss) == 0);
    }
  }
}

TEST_CASE("gpu check_finite: clears the flag on NaN/Inf anywhere, leaves it otherwise") {
  std::mt19937 rng(204);
  for (int64_t n : kSizes) {
    CAPTURE(n);
    std::vector<float> x = random_floats(static_cast<size_t>(n), -1e30f, 1e30f, rng);
    const std::vector<int> one{1};
    auto d_flag = to_device(one);
    auto d_x = to_device(x);
    ds::kcuda::check_finite(d_flag.get(), d_x.get(), n, stream());
    CHECK(download(d_flag)[0] == 1);
    for (float bad : {kNaN, std::numeric_limits<float>::infinity()}) {
      std::vector<float> y = x;
      y[static_cast<size_t>(n) - 1] = bad;
      auto d_y = to_device(y);
      d_flag.upload(one);
      DS_CUDA_CHECK(cudaDeviceSynchronize());
      ds::kcuda::check_finite(d_flag.get(), d_y.get(), n, stream());
      CHECK(download(d_flag)[0] == 0);
    }
  }
}

// m and v: one FMA each per step may round differently (1 ulp), compounding over 5 steps to a few ulp
// of their scale; p moves by ~lr per step, so its difference is a few ulp of the update, far below
// 1e-6 of |p|. 1e-6 normalised (the Adam bound) for all three.
TEST_CASE("gpu adam_step: 5 steps with the step counter on the device against the CPU reference") {
  std::mt19937 rng(205);
  const double lr = 2e-4, beta1 = 0.5, beta2 = 0.999, eps = 1e-8;
  for (int64_t n : kSizes) {
    CAPTURE(n);
    const size_t count = static_cast<size_t>(n);
    const std::vector<float> p0 = random_floats(count, -0.1f, 0.1f, rng), zeros(count, 0.0f);
    std::vector<float> p_ref = p0, m_ref = zeros, v_ref = zeros;
    auto d_p = to_device(p0), d_m = to_device(zeros);
    auto d_v = to_device(zeros);
    auto d_step = to_device(std::vector<int>{0});
    for (int64_t s = 1; s <= 5; ++s) {
      const std::vector<float> g = random_floats(count, -1e-2f, 1e-2f, rng);
      auto d_g = to_device(g);
      ds::cpu::adam_step(p_ref.data(), m_ref.data(), v_ref.data(), g.data(), n, lr, beta1, beta2, eps, s);
      ds::kcuda::advance_step(d_step.get(), stream());
      ds::kcuda::adam_step(d_p.get(), d_m.get(), d_v.get(), d_g.get(), d_step.get(), n, lr, beta1, beta2, eps,
                           stream());
      ds::CudaContext::get().synchronize();  // d_g is freed at the end of this iteration
    }
    CHECK(download(d_step)[0] == 5);
    CHECK(normalised_error(download(d_p), p_ref, 0.0) <= 1e-6);
    CHECK(normalised_error(download(d_m), m_ref, 0.0) <= 1e-6);
    CHECK(normalised_error(download(d_v), v_ref, 0.0) <= 1e-6);
  }
}

TEST_CASE("gpu images_u8_to_float and float_to_u8 against the CPU reference (exact)") {
  std::mt19937 rng(206);
  const int64_t count = 9, n_images = 17, image_size = 3 * 33 * 31;
  std::vector<uint8_t> images(static_cast<size_t>(count * image_size));
  std::uniform_int_distribution<int> byte(0, 255), row(0, static_cast<int>(count - 1));
  for (uint8_t& b : images) b = static_cast<uint8_t>(byte(rng));
  std::vector<int32_t> indices(static_cast<size_t>(n_images));
  for (int32_t& i : indices) i = row(rng);
  indices.back() = static_cast<int32_t>(count - 1);
  const size_t out_count = static_cast<size_t>(n_images * image_size);
  std::vector<float> ref(out_count);
  ds::cpu::images_u8_to_float(ref.data(), images.data(), indices.data(), n_images, image_size);
  auto d_images = to_device(images);
  auto d_indices = to_device(indices);
  auto d_out = poisoned(out_count);
  ds::kcuda::images_u8_to_float(d_out.get(), d_images.get(), d_indices.get(), n_images, image_size, stream());
  CHECK(count_mismatches(download(d_out), ref) == 0);

  for (int64_t n : kSizes) {
    CAPTURE(n);
    std::vector<float> in = random_floats(static_cast<size_t>(n), -1.2f, 1.2f, rng);
    in[0] = kNaN;
    std::vector<uint8_t> want(static_cast<size_t>(n));
    ds::cpu::float_to_u8(want.data(), in.data(), n);
    auto d_in = to_device(in);
    for (uint8_t poison : {uint8_t{0x00}, uint8_t{0xFF}}) {
      auto d_bytes = to_device(std::vector<uint8_t>(static_cast<size_t>(n), poison));
      ds::kcuda::float_to_u8(d_bytes.get(), d_in.get(), n, stream());
      CHECK(download(d_bytes) == want);
    }
  }
}
