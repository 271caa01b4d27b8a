// cuDNN Conv2d / ConvTranspose2d (engine/nn/cudnn_conv.h) against the CPU reference run in double: all six
// paths, dx written over poisoned memory, dw accumulated onto a prior value. Runs only on a GPU, in exact
// (FMA-only) math, which gpu_main.cpp sets before any test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/nn/conv_shape.h"
#include "engine/nn/cpu/conv.h"
#include "engine/core/cuda_context.h"
#include "engine/nn/cudnn_conv.h"
#include "engine/core/device_buffer.h"
#include "tests/test_util.h"

namespace {

using ds::ConvShape;
using ds::DeviceBuffer;

// Inputs uniform in [-1, 1).
std::vector<float> gpu_random(size_t n, std::mt19937_64& rng) { return ds::test::random_floats(n, -1.0f, 1.0f, rng); }

// Max-normalised error max|a−b| / max|b|. 1e-4: float data with FMA-only kernels; the heuristics may
// pick FFT or Winograd algorithms, whose error is norm-wise (~1e-6..1e-5 of the largest output for these
// sizes) rather than element-wise, so the bound is taken against the output's scale, as the PyTorch
// oracle tests do. TF32 (10-bit mantissa, ~5e-4 relative) would fail it, which is the point of exact mode.
double gpu_max_normalised_error(const std::vector<float>& a, const std::vector<double>& b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;  // an unwritten (poisoned) output
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return err / scale;
}

void check_cudnn_layer(const ConvShape& s, unsigned seed) {
  INFO((s.transposed ? "ConvTranspose2d" : "Conv2d") << " N=" << s.N << " C=" << s.C << " " << s.H << "x" << s.W
                                                     << " K=" << s.K << " kernel " << s.R << "x" << s.S << " stride "
                                                     << s.stride_h << "x" << s.stride_w << " pad " << s.pad_h << "x"
                                                     << s.pad_w);
  std::mt19937_64 rng(seed);
  const std::vector<float> x = gpu_random(s.x_size(), rng), w = gpu_random(s.w_size(), rng),
                           dy = gpu_random(s.y_size(), rng), dw0 = gpu_random(s.w_size(), rng);
  const std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), dyd(dy.begin(), dy.end());
  std::vector<double> y_ref(s.y_size()), dx_ref(s.x_size()), dw_ref(dw0.begin(), dw0.end());
  if (s.transposed) {
    ds::cpu::conv_transpose2d_forward(y_ref.data(), xd.data(), wd.data(), s);
    ds::cpu::conv_transpose2d_backward_data(dx_ref.data(), dyd.data(), wd.data(), s);
    ds::cpu::conv_transpose2d_backward_filter(dw_ref.data(), dyd.data(), xd.data(), s);
  } else {
    ds::cpu::conv2d_forward(y_ref.data(), xd.data(), wd.data(), s);
    ds::cpu::conv2d_backward_data(dx_ref.data(), dyd.data(), wd.data(), s);
    ds::cpu::conv2d_backward_filter(dw_ref.data(), dyd.data(), xd.data(), s);
  }

  ds::CudnnConv conv(s);
  INFO("algorithms fwd " << int(conv.forward_algo()) << " bwd-data " << int(conv.backward_data_algo())
                         << " bwd-filter " << int(conv.backward_filter_algo()) << ", workspace "
                         << conv.workspace_bytes() << " bytes");
  DeviceBuffer<float> x_d = DeviceBuffer<float>::from_host(x), w_d = DeviceBuffer<float>::from_host(w),
                      dy_d = DeviceBuffer<float>::from_host(dy), dw_d = DeviceBuffer<float>::from_host(dw0);
  DeviceBuffer<float> y_d(s.y_size()), dx_d(s.x_size());
  // Outputs that are written start as NaN (all-ones bytes), so anything left unwritten fails. The poison
  // goes on the context's stream, the one cuDNN runs on: that stream is non-blocking, so a plain
  // cudaMemset (legacy default stream) would not be ordered before the convolutions, and waiting on the
  // context's stream alone would not wait for it (CUDA Runtime API, "Stream synchronization behavior").
  const cudaStream_t stream = ds::CudaContext::get().stream();
  DS_CUDA_CHECK(cudaMemsetAsync(y_d.get(), 0xFF, s.y_size() * sizeof(float), stream));
  DS_CUDA_CHECK(cudaMemsetAsync(dx_d.get(), 0xFF, s.x_size() * sizeof(float), stream));

  conv.forward(y_d.get(), x_d.get(), w_d.get());
  conv.backward_data(dx_d.get(), dy_d.get(), w_d.get());
  conv.backward_filter(dw_d.get(), dy_d.get(), x_d.get());
  ds::CudaContext::get().synchronize();

  CHECK(gpu_max_normalised_error(y_d.download(), y_ref) < 1e-4);
  CHECK(gpu_max_normalised_error(dx_d.download(), dx_ref) < 1e-4);
  CHECK(gpu_max_normalised_error(dw_d.download(), dw_ref) < 1e-4);  // dw0 + ∂L/∂w: beta = 1

  // Run backward-filter again: the increment must add once more (dw0 + 2·∂L/∂w).
  conv.backward_filter(dw_d.get(), dy_d.get(), x_d.get());
  ds::CudaContext::get().synchronize();
  std::vector<double> dw_twice(dw_ref.size());
  for (size_t i = 0; i < dw_ref.size(); ++i) dw_twice[i] = 2 * dw_ref[i] - double(dw0[i]);
  CHECK(gpu_max_normalised_error(dw_d.download(), dw_twice) < 1e-4);
}

}  // namespace

TEST_CASE("gpu conv conv2d: cuDNN forward, backward-data, backward-filter against the CPU reference") {
  check_cudnn_layer(ds::conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1), 51);
  check_cudnn_layer(ds::conv2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0), 52);
  check_cudnn_layer(ds::conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 0, 0), 53);
  check_cudnn_layer(ds::conv2d_shape(2, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0), 54);
  check_cudnn_layer(ds::conv2d_shape(3, 4, 4, 6, 1, 4, 6, 1, 1, 0, 0), 55);
  check_cudnn_layer(ds::conv2d_shape(4, 64, 32, 32, 128, 4, 4, 2, 2, 1, 1), 56);  // D's second layer
  check_cudnn_layer(ds::conv2d_shape(8, 512, 4, 4, 1, 4, 4, 1, 1, 0, 0), 57);     // D's last layer
}

TEST_CASE("gpu conv conv_transpose2d: cuDNN backward-data, forward, backward-filter (x, dy swapped) vs the reference") {
  check_cudnn_layer(ds::conv_transpose2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1), 61);
  check_cudnn_layer(ds::conv_transpose2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0), 62);
  check_cudnn_layer(ds::conv_transpose2d_shape(3, 5, 1, 1, 2, 4, 6, 1, 1, 0, 0), 63);
  check_cudnn_layer(ds::conv_transpose2d_shape(2, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0), 64);
  check_cudnn_layer(ds::conv_transpose2d_shape(2, 2, 3, 4, 3, 2, 2, 3, 3, 0, 0), 65);
  check_cudnn_layer(ds::conv_transpose2d_shape(8, 100, 1, 1, 512, 4, 4, 1, 1, 0, 0), 66);   // G's first layer
  check_cudnn_layer(ds::conv_transpose2d_shape(4, 128, 16, 16, 64, 4, 4, 2, 2, 1, 1), 67);  // G's middle layer
  check_cudnn_layer(ds::conv_transpose2d_shape(4, 100, 1, 1, 64, 4, 16, 1, 1, 0, 0), 68);   // 4×16 start
}

TEST_CASE("gpu conv a layer built in exact mode reserves its workspace at construction") {
  REQUIRE(ds::CudaContext::get().exact_math());
  ds::CudnnConv conv(ds::conv2d_shape(64, 64, 32, 32, 128, 4, 4, 2, 2, 1, 1));
  CHECK(ds::CudaContext::get().workspace_size() >= conv.workspace_bytes());
}
