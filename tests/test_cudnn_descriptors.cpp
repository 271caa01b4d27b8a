// cuDNN's descriptor and shape functions (no GPU needed) against the CPU shape helper: for every
// layer of the DCGAN generator and discriminator at 32×32, 64×64 and 128×512, the descriptors that
// engine/nn/cudnn_conv.cpp builds hold the shapes the CPU reference computes, ConvTranspose2d included;
// and for bf16 data (NCHW and NHWC) the data type, compute type, math type, layout and strides the
// bf16 configuration in cudnn_conv.cpp states.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/nn/conv_shape.h"
#include "engine/nn/cudnn_conv.h"

namespace {

using ds::ConvShape;

// PyTorch's examples/dcgan generalised to H×W with each side 4·2^k: k stride-2 layers, G starting from
// a (H>>k)×(W>>k) map made by a stride-1 transposed conv whose kernel is that map, D ending with a
// stride-1 conv whose kernel is that map. Channels double per stride-2 layer (G's first has ngf·2^(k-1)).
std::vector<ConvShape> dcgan_layers(int height, int width, int nc, int nz, int ngf, int ndf, int batch) {
  int k = 0;
  while ((std::min(height, width) >> k) > 4) ++k;
  const int start_h = height >> k, start_w = width >> k;
  std::vector<ConvShape> layers;
  // Generator.
  int channels = ngf << (k - 1);
  layers.push_back(ds::conv_transpose2d_shape(batch, nz, 1, 1, channels, start_h, start_w, 1, 1, 0, 0));
  int h = start_h, w = start_w;
  for (int i = 0; i < k; ++i) {
    const int out_channels = i == k - 1 ? nc : channels / 2;
    layers.push_back(ds::conv_transpose2d_shape(batch, channels, h, w, out_channels, 4, 4, 2, 2, 1, 1));
    channels = out_channels;
    h *= 2;
    w *= 2;
  }
  REQUIRE(h == height);
  REQUIRE(w == width);
  // Discriminator.
  channels = nc;
  for (int i = 0; i < k; ++i) {
    const int out_channels = ndf << i;
    layers.push_back(ds::conv2d_shape(batch, channels, h, w, out_channels, 4, 4, 2, 2, 1, 1));
    channels = out_channels;
    h /= 2;
    w /= 2;
  }
  REQUIRE(h == start_h);
  REQUIRE(w == start_w);
  layers.push_back(ds::conv2d_shape(batch, channels, h, w, 1, start_h, start_w, 1, 1, 0, 0));
  return layers;
}

std::string cudnn_describe(const ConvShape& s) {
  return std::string(s.transposed ? "ConvTranspose2d" : "Conv2d") + " N=" + std::to_string(s.N) + " " +
         std::to_string(s.C) + "x" + std::to_string(s.H) + "x" + std::to_string(s.W) + " -> " +
         std::to_string(s.K) + "x" + std::to_string(s.out_h()) + "x" + std::to_string(s.out_w()) + " kernel " +
         std::to_string(s.R) + "x" + std::to_string(s.S) + " stride " + std::to_string(s.stride_h) + " pad " +
         std::to_string(s.pad_h);
}

// Packed strides (n, c, h, w) of an N×C×H×W tensor in NCHW or NHWC memory order.
std::array<int, 4> packed_strides(const std::array<int, 4>& d, bool nhwc) {
  if (nhwc) return {d[1] * d[2] * d[3], 1, d[3] * d[1], d[1]};
  return {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1};
}

void check_descriptors(const ConvShape& s, ds::CudnnConvFormat format = {}) {
  INFO(cudnn_describe(s) << (format.bf16 ? " bf16" : " float") << (format.nhwc ? " NHWC" : " NCHW"));
  const ds::CudnnConvLayerDims d = ds::cudnn_conv_layer_dims(s, format);
  const std::array<int, 4> input{s.N, s.C, s.H, s.W}, output{s.N, s.K, s.out_h(), s.out_w()};
  CHECK(d.input == input);
  CHECK(d.output == output);
  // cuDNN's filter is out×in×R×S of its forward conv: the Conv2d's K×C, the transposed conv's C×K
  // (PyTorch's ConvTranspose2d weight layout, used as is).
  const std::array<int, 4> filter =
      s.transposed ? std::array<int, 4>{s.C, s.K, s.R, s.S} : std::array<int, 4>{s.K, s.C, s.R, s.S};
  CHECK(d.filter == filter);
  CHECK(d.conv == std::array<int, 6>{s.pad_h, s.pad_w, s.stride_h, s.stride_w, 1, 1});
  CHECK(d.mode == CUDNN_CROSS_CORRELATION);
  CHECK(d.compute_type == CUDNN_DATA_FLOAT);
  // cuDNN's own output-size arithmetic: the Conv2d's output, or for the transposed conv the input it
  // maps back to (its output size is (H−1)·stride − 2·pad + R exactly when this holds).
  CHECK(d.forward_output == (s.transposed ? input : output));
  // Data type, layout and math: float NCHW with the descriptor's initial CUDNN_DEFAULT_MATH (the
  // precision's math type is set when a CudnnConv is built), or bf16 data with float compute and
  // CUDNN_TENSOR_OP_MATH (PyTorch's bfloat16 configuration, cited in cudnn_conv.cpp).
  CHECK(d.data_type == (format.bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT));
  CHECK(d.math_type == (format.bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH));
  CHECK(d.filter_format == (format.nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW));
  CHECK(d.input_strides == packed_strides(input, format.nhwc));
  CHECK(d.output_strides == packed_strides(output, format.nhwc));
}

}  // namespace

TEST_CASE("cudnn descriptors of every DCGAN layer match the CPU shapes (32x32, 64x64, 128x512, no GPU needed)") {
  struct Size {
    int height, width;
  };
  for (const Size size : {Size{32, 32}, Size{64, 64}, Size{128, 512}}) {
    INFO("images " << size.height << "x" << size.width);
    const std::vector<ConvShape> layers = dcgan_layers(size.height, size.width, 3, 100, 64, 64, 64);
    for (const ConvShape& s : layers) check_descriptors(s);
    // The ends the DCGAN relies on: G from 1×1 noise to a (H>>k)×(W>>k) map, D down to one logit.
    const ConvShape& g_first = layers.front();
    const ConvShape& d_last = layers.back();
    CHECK(g_first.out_h() == 4);
    CHECK(g_first.out_w() == 4 * size.width / size.height);
    CHECK(d_last.out_h() == 1);
    CHECK(d_last.out_w() == 1);
  }
}

TEST_CASE("cudnn descriptors: the 128x512 generator starts with a 4x16 kernel from 1x1 to 4x16") {
  const ConvShape s = ds::conv_transpose2d_shape(64, 100, 1, 1, 512, 4, 16, 1, 1, 0, 0);
  const ds::CudnnConvLayerDims d = ds::cudnn_conv_layer_dims(s);
  CHECK(d.output == std::array<int, 4>{64, 512, 4, 16});
  CHECK(d.forward_output == std::array<int, 4>{64, 100, 1, 1});
}

TEST_CASE("cudnn descriptors: odd shapes match too, and shapes the CPU helper refuses never reach cuDNN") {
  for (const ConvShape& s : {ds::conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1),
                             ds::conv2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0),
                             ds::conv2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 0, 0),  // floor in the output size
                             ds::conv2d_shape(2, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0),
                             ds::conv_transpose2d_shape(3, 3, 5, 7, 2, 4, 4, 2, 2, 1, 1),
                             ds::conv_transpose2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0),
                             ds::conv_transpose2d_shape(2, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0)})
    check_descriptors(s);
  // A shape the CPU helper refuses never reaches cuDNN.
  CHECK_THROWS_AS(ds::cudnn_conv_layer_dims(ds::conv2d_shape(1, 3, 2, 2, 1, 4, 4, 1, 1, 0, 0)), std::invalid_argument);
}

TEST_CASE("cudnn descriptors for bf16 data, NCHW and NHWC: every DCGAN layer at 64x64 and 128x512, and odd shapes") {
  for (const bool nhwc : {false, true}) {
    ds::CudnnConvFormat format;
    format.bf16 = true;
    format.nhwc = nhwc;
    for (const ConvShape& s : dcgan_layers(64, 64, 3, 100, 64, 64, 128)) check_descriptors(s, format);
    for (const ConvShape& s : dcgan_layers(128, 512, 1, 100, 64, 64, 16)) check_descriptors(s, format);
    check_descriptors(ds::conv2d_shape(3, 3, 5, 7, 2, 3, 2, 1, 1, 0, 0), format);
    check_descriptors(ds::conv_transpose2d_shape(2, 3, 5, 7, 4, 3, 2, 2, 1, 1, 0), format);
  }
  // Float data in NHWC is refused (the float path is NCHW throughout).
  ds::CudnnConvFormat float_nhwc;
  float_nhwc.nhwc = true;
  CHECK_THROWS_AS(ds::cudnn_conv_layer_dims(ds::conv2d_shape(1, 3, 8, 8, 4, 4, 4, 2, 2, 1, 1), float_nhwc),
                  std::invalid_argument);
}
