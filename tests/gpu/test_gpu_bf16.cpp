// bf16 on the GPU (`--precision bf16`'s pieces) against the float32 CPU reference: cuDNN convolutions on
// bf16 data (NCHW and NHWC, float compute, tensor-core math: engine/nn/cudnn_conv.h) in all three
// directions, and one generator layer's forward step as the bf16 path would run it — float32 master
// weights cast to a bf16 copy (kernels/bf16_cast.h), ConvTranspose2d in bf16, fused batch norm + ReLU
// on bf16 storage (kernels/batchnorm.h) — and the bf16 weight gradient added into the float32 master
// gradient. Written without a GPU to run it on: compiled, never run in this session.
//
// Tolerances, u = 2^-8 (one rounding to bf16, relative: kernels/bf16.h, tests/test_emu_bf16.cpp). For a convolution output
// y_i = Σ x_j·w_j, rounding x and w to bf16 moves each product by ≤ (2u + u²)|x_j||w_j|, so y_i moves by
// ≤ (2u + u²)·A_i with A_i = Σ|x_j||w_j| (the same convolution of |x| and |w|, computed here in double);
// the float32 accumulation, whatever the algorithm (GEMM, Winograd, FFT), stays within the 1e-4 of the
// output's scale that tests/gpu/test_gpu_conv.cpp allows for float data, taken here against max A; the
// bf16 store adds u·|y_i| (+ u times the two terms before). The batch norm after it: per channel, with
// E = the largest conv bound of the channel, the mean moves by ≤ E and σ by ≤ E (RMS of the
// perturbation), so x̂ by ≤ (E/(s − E))·(2 + |x̂|) (derivation in tests/test_emu_bf16.cpp, there with
// A·u for E), times |γ|, the activation 1-Lipschitz, then 1e-6 of the output's scale for the kernel's
// float arithmetic (tests/gpu/test_gpu_batchnorm_fused.cpp) and the store's u·|y|.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/core/cuda_context.h"
#include "engine/core/device_buffer.h"
#include "engine/nn/conv_shape.h"
#include "engine/nn/cpu/activations.h"
#include "engine/nn/cpu/batchnorm.h"
#include "engine/nn/cpu/conv.h"
#include "engine/nn/cudnn_conv.h"
#include "kernels/batchnorm.h"
#include "kernels/bf16_kernels.h"
#include "kernels/bf16.h"
#include "kernels/bf16_cast.h"
#include "tests/bf16_util.h"
#include "tests/test_util.h"

namespace {

using ds::bf16;
using ds::test::to_bf16;
using ds::test::to_float;
using ds::ConvShape;
using ds::DeviceBuffer;

constexpr double kU = 1.0 / 256.0;  // 2^-8: one rounding to bf16 (see tests/test_emu_bf16.cpp)
constexpr double kConvFloatLevel = 1e-4;  // of max A: float accumulation, any algorithm
constexpr double kBnFloatLevel = 1e-6;    // of max(1, max|y|): the batch-norm kernel's float arithmetic

cudaStream_t stream() { return ds::CudaContext::get().stream(); }

// d0×d1×d2×d3 in [a][b][c][d] order to [a][c][d][b]: NCHW tensors to NHWC, and cuDNN's out×in×R×S
// filter to its NHWC filter format out×R×S×in.
template <class T>
std::vector<T> to_nhwc(const std::vector<T>& v, int d0, int d1, int d2, int d3) {
  std::vector<T> out(v.size());
  for (int a = 0; a < d0; ++a)
    for (int b = 0; b < d1; ++b)
      for (int c = 0; c < d2; ++c)
        for (int d = 0; d < d3; ++d)
          out[((size_t(a) * d2 + c) * d3 + d) * d1 + b] = v[((size_t(a) * d1 + b) * d2 + c) * d3 + d];
  return out;
}
template <class T>
std::vector<T> from_nhwc(const std::vector<T>& v, int d0, int d1, int d2, int d3) {
  std::vector<T> out(v.size());
  for (int a = 0; a < d0; ++a)
    for (int b = 0; b < d1; ++b)
      for (int c = 0; c < d2; ++c)
        for (int d = 0; d < d3; ++d)
          out[((size_t(a) * d1 + b) * d2 + c) * d3 + d] = v[((size_t(a) * d2 + c) * d3 + d) * d1 + b];
  return out;
}
std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
std::vector<double> absolute(const std::vector<float>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = std::abs(static_cast<double>(v[i]));
  return out;
}

struct ConvRef {
  std::vector<double> y, dx, dw, abs_y, abs_dx, abs_dw;  // results, and the same ops on |inputs|
};
ConvRef reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                  const std::vector<float>& dy) {
  ConvRef r{std::vector<double>(s.y_size()), std::vector<double>(s.x_size()), std::vector<double>(s.w_size(), 0.0),
            std::vector<double>(s.y_size()), std::vector<double>(s.x_size()), std::vector<double>(s.w_size(), 0.0)};
  const std::vector<double> xd = to_double(x), wd = to_double(w), dyd = to_double(dy);
  const std::vector<double> xa = absolute(x), wa = absolute(w), dya = absolute(dy);
  if (s.transposed) {
    ds::cpu::conv_transpose2d_forward(r.y.data(), xd.data(), wd.data(), s);
    ds::cpu::conv_transpose2d_backward_data(r.dx.data(), dyd.data(), wd.data(), s);
    ds::cpu::conv_transpose2d_backward_filter(r.dw.data(), dyd.data(), xd.data(), s);
    ds::cpu::conv_transpose2d_forward(r.abs_y.data(), xa.data(), wa.data(), s);
    ds::cpu::conv_transpose2d_backward_data(r.abs_dx.data(), dya.data(), wa.data(), s);
    ds::cpu::conv_transpose2d_backward_filter(r.abs_dw.data(), dya.data(), xa.data(), s);
  } else {
    ds::cpu::conv2d_forward(r.y.data(), xd.data(), wd.data(), s);
    ds::cpu::conv2d_backward_data(r.dx.data(), dyd.data(), wd.data(), s);
    ds::cpu::conv2d_backward_filter(r.dw.data(), dyd.data(), xd.data(), s);
    ds::cpu::conv2d_forward(r.abs_y.data(), xa.data(), wa.data(), s);
    ds::cpu::conv2d_backward_data(r.abs_dx.data(), dya.data(), wa.data(), s);
    ds::cpu::conv2d_backward_filter(r.abs_dw.data(), dya.data(), xa.data(), s);
  }
  return r;
}

// The per-element bound of the header comment for one convolution output.
std::vector<double> conv_bound(const std::vector<double>& want, const std::vector<double>& abs_sum) {
  const double scale = *std::max_element(abs_sum.begin(), abs_sum.end());
  std::vector<double> b(want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const double before_store = (2 * kU + kU * kU) * abs_sum[i] + kConvFloatLevel * scale;
    b[i] = before_store + kU * (std::abs(want[i]) + before_store);
  }
  return b;
}

size_t count_beyond(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& bound) {
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(static_cast<double>(got[i]) - want[i]) <= bound[i])) ++bad;  // NaN counts
  return bad;
}

// Dimensions (n, c, h, w) of cuDNN's x and y and (out, in, R, S) of its filter, as CudnnConvDescriptors
// builds them (ConvTranspose2d: cuDNN's x is the layer's y).
struct CudnnDims {
  int x[4], y[4], f[4];
};
CudnnDims layer_dims(const ConvShape& s) {
  const int P = s.out_h(), Q = s.out_w();
  CudnnDims d{{s.N, s.C, s.H, s.W}, {s.N, s.K, P, Q}, {s.K, s.C, s.R, s.S}};
  if (s.transposed) d.f[0] = s.C, d.f[1] = s.K;  // C×K×R×S, the layer's weight as is
  return d;
}

void check_bf16_conv(const ConvShape& s, bool nhwc, unsigned seed) {
  INFO((s.transposed ? "ConvTranspose2d" : "Conv2d") << " N=" << s.N << " C=" << s.C << " " << s.H << "x" << s.W
                                                     << " K=" << s.K << (nhwc ? " NHWC" : " NCHW"));
  std::mt19937_64 rng(seed);
  const std::vector<float> x = ds::test::random_floats(s.x_size(), -1.0f, 1.0f, rng),
                           w = ds::test::random_floats(s.w_size(), -1.0f, 1.0f, rng),
                           dy = ds::test::random_floats(s.y_size(), -1.0f, 1.0f, rng);
  const ConvRef ref = reference(s, x, w, dy);
  const CudnnDims d = layer_dims(s);
  // Device layouts: the layer's x is N×C×H×W, y N×K×P×Q in either case.
  auto lay = [&](const std::vector<bf16>& v, const int* dims) { return nhwc ? to_nhwc(v, dims[0], dims[1], dims[2], dims[3]) : v; };
  auto unlay = [&](const std::vector<bf16>& v, const int* dims) { return nhwc ? from_nhwc(v, dims[0], dims[1], dims[2], dims[3]) : v; };

  ds::CudnnConvFormat format;
  format.bf16 = true;
  format.nhwc = nhwc;
  ds::CudnnConv conv(s, size_t(256) << 20, format);
  INFO("algorithms fwd " << int(conv.forward_algo()) << " bwd-data " << int(conv.backward_data_algo())
                         << " bwd-filter " << int(conv.backward_filter_algo()));
  DeviceBuffer<bf16> x_d = DeviceBuffer<bf16>::from_host(lay(to_bf16(x), d.x)),
                     w_d = DeviceBuffer<bf16>::from_host(lay(to_bf16(w), d.f)),
                     dy_d = DeviceBuffer<bf16>::from_host(lay(to_bf16(dy), d.y));
  DeviceBuffer<bf16> y_d(s.y_size()), dx_d(s.x_size()), dw_d(s.w_size());
  // Poisoned with 0xFFFF bytes (a bf16 NaN) on the context's stream, where cuDNN runs.
  DS_CUDA_CHECK(cudaMemsetAsync(y_d.get(), 0xFF, s.y_size() * sizeof(bf16), stream()));
  DS_CUDA_CHECK(cudaMemsetAsync(dx_d.get(), 0xFF, s.x_size() * sizeof(bf16), stream()));
  DS_CUDA_CHECK(cudaMemsetAsync(dw_d.get(), 0xFF, s.w_size() * sizeof(bf16), stream()));
  conv.forward(y_d.get(), x_d.get(), w_d.get());
  conv.backward_data(dx_d.get(), dy_d.get(), w_d.get());
  conv.backward_filter(dw_d.get(), dy_d.get(), x_d.get());  // written (beta = 0) over the poison
  ds::CudaContext::get().synchronize();

  CHECK(count_beyond(to_float(unlay(y_d.download(), d.y)), ref.y, conv_bound(ref.y, ref.abs_y)) == 0);
  CHECK(count_beyond(to_float(unlay(dx_d.download(), d.x)), ref.dx, conv_bound(ref.dx, ref.abs_dx)) == 0);
  const std::vector<float> dw_got = to_float(unlay(dw_d.download(), d.f));
  CHECK(count_beyond(dw_got, ref.dw, conv_bound(ref.dw, ref.abs_dw)) == 0);

  // The bf16 weight gradient added into a float32 master gradient (starting at 0.5): one float add,
  // ≤ 2^-24 relative more.
  DeviceBuffer<float> master = DeviceBuffer<float>::from_host(std::vector<float>(s.w_size(), 0.5f));
  ds::kcuda::accumulate_bf16_into_float(master.get(), dw_d.get(), static_cast<int64_t>(s.w_size()), stream());
  ds::CudaContext::get().synchronize();
  std::vector<float> master_got = master.download();
  if (nhwc) master_got = from_nhwc(master_got, d.f[0], d.f[1], d.f[2], d.f[3]);
  std::vector<double> want(s.w_size()), bound = conv_bound(ref.dw, ref.abs_dw);
  for (size_t i = 0; i < want.size(); ++i) {
    want[i] = 0.5 + ref.dw[i];
    bound[i] += std::abs(want[i]) * (1.0 / 16777216.0);
  }
  CHECK(count_beyond(master_got, want, bound) == 0);
}

}  // namespace

TEST_CASE("gpu bf16 conv: cuDNN on bf16 data, NCHW and NHWC, all three directions within the derived bound") {
  for (const bool nhwc : {false, true}) {
    check_bf16_conv(ds::conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1), nhwc, 71);
    check_bf16_conv(ds::conv2d_shape(4, 64, 16, 16, 128, 4, 4, 2, 2, 1, 1), nhwc, 72);  // a D layer
    check_bf16_conv(ds::conv2d_shape(8, 256, 4, 4, 1, 4, 4, 1, 1, 0, 0), nhwc, 73);     // D's last layer
    check_bf16_conv(ds::conv_transpose2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1), nhwc, 74);
    check_bf16_conv(ds::conv_transpose2d_shape(8, 100, 1, 1, 256, 4, 4, 1, 1, 0, 0), nhwc, 75);  // G's first
    check_bf16_conv(ds::conv_transpose2d_shape(4, 128, 8, 8, 64, 4, 4, 2, 2, 1, 1), nhwc, 76);   // a G layer
  }
}

TEST_CASE("gpu bf16 layer step: master weights to bf16, ConvTranspose2d, batch norm + ReLU on bf16, against float32") {
  const ConvShape s = ds::conv_transpose2d_shape(6, 32, 4, 4, 16, 4, 4, 2, 2, 1, 1);  // 6×32×4×4 → 6×16×8×8
  std::mt19937_64 rng(77);
  const std::vector<float> x = ds::test::random_floats(s.x_size(), -1.0f, 1.0f, rng);
  const std::vector<float> w_master = ds::test::random_floats(s.w_size(), -0.2f, 0.2f, rng);
  const size_t C = static_cast<size_t>(s.K);
  const std::vector<float> gamma = ds::test::random_floats(C, 0.5f, 1.5f, rng), beta = ds::test::random_floats(C, -0.5f, 0.5f, rng);
  const int64_t N = s.N, HW = int64_t(s.out_h()) * s.out_w();
  const size_t count = s.y_size();

  // float32 reference: conv (in double, then float as the fp32 path stores it), BN, ReLU.
  const ConvRef ref = reference(s, x, w_master, std::vector<float>(s.y_size(), 0.0f));
  std::vector<float> conv_y(count), y_ref(count), mean_ref(C), invstd_ref(C), rm(C, 0.0f), rv(C, 1.0f);
  for (size_t i = 0; i < count; ++i) conv_y[i] = static_cast<float>(ref.y[i]);
  ds::cpu::batchnorm_forward_train(y_ref.data(), mean_ref.data(), invstd_ref.data(), rm.data(), rv.data(),
                                   conv_y.data(), gamma.data(), beta.data(), N, s.K, HW, 0.1, 1e-5);
  ds::cpu::relu_forward(y_ref.data(), y_ref.data(), static_cast<int64_t>(count));

  // The bf16 path on the device.
  ds::CudnnConvFormat format;
  format.bf16 = true;
  ds::CudnnConv conv(s, size_t(256) << 20, format);
  DeviceBuffer<float> w_master_d = DeviceBuffer<float>::from_host(w_master);
  DeviceBuffer<bf16> w_copy(s.w_size()), x_d = DeviceBuffer<bf16>::from_host(to_bf16(x)), conv_d(count), y_d(count);
  ds::kcuda::cast_float_to_bf16(w_copy.get(), w_master_d.get(), static_cast<int64_t>(s.w_size()), stream());
  conv.forward(conv_d.get(), x_d.get(), w_copy.get());
  DeviceBuffer<float> gamma_d = DeviceBuffer<float>::from_host(gamma), beta_d = DeviceBuffer<float>::from_host(beta),
                      mean_d(C), invstd_d(C), rm_d = DeviceBuffer<float>::from_host(std::vector<float>(C, 0.0f)),
                      rv_d = DeviceBuffer<float>::from_host(std::vector<float>(C, 1.0f));
  DeviceBuffer<double> workspace(ds::batchnorm_workspace_bytes(s.K) / sizeof(double));
  DS_CUDA_CHECK(cudaMemsetAsync(y_d.get(), 0xFF, count * sizeof(bf16), stream()));
  ds::kcuda::batchnorm_act_forward_train(y_d.get(), mean_d.get(), invstd_d.get(), rm_d.get(), rv_d.get(),
                                         workspace.get(), conv_d.get(), gamma_d.get(), beta_d.get(), N, s.K, HW, 0.1,
                                         1e-5, ds::BnActivation::ReLU, 0.0f, 0, stream());
  ds::CudaContext::get().synchronize();
  const std::vector<float> y_got = to_float(y_d.download());

  // The bound of the header comment, per channel.
  const std::vector<double> cb = conv_bound(ref.y, ref.abs_y);
  double y_scale = 1.0;
  for (float v : y_ref) y_scale = std::max(y_scale, std::abs(static_cast<double>(v)));
  std::vector<double> want(count), bound(count);
  for (size_t c = 0; c < C; ++c) {
    double E = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) E = std::max(E, cb[static_cast<size_t>((n * s.K + int64_t(c)) * HW + i)]);
    const double sd = 1.0 / static_cast<double>(invstd_ref[c]);
    REQUIRE(E < sd);  // the bound needs the perturbation below one standard deviation
    const double moved = E / (sd - E);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const size_t k = static_cast<size_t>((n * s.K + int64_t(c)) * HW + i);
        const double xhat = std::abs((static_cast<double>(conv_y[k]) - mean_ref[c]) * invstd_ref[c]);
        const double before_store = std::abs(static_cast<double>(gamma[c])) * moved * (2 + xhat) + kBnFloatLevel * y_scale;
        want[k] = y_ref[k];
        bound[k] = before_store + kU * (std::abs(want[k]) + before_store);
      }
  }
  CHECK(count_beyond(y_got, want, bound) == 0);
}
