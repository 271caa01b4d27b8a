// ConvShape: the geometry of one Conv2d or ConvTranspose2d layer (NCHW, no bias, groups 1, dilation 1),
// shared by the CPU reference, the fast CPU path and the cuDNN wrappers so all three agree on sizes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace ds {

// x: N×C×H×W (the layer's input), y: N×K×out_h()×out_w() (the layer's output).
// Conv2d weight: K×C×R×S (PyTorch Conv2d layout, out × in × kh × kw).
// ConvTranspose2d weight: C×K×R×S (PyTorch ConvTranspose2d layout, in × out × kh × kw).
struct ConvShape {
  int N = 0, C = 0, H = 0, W = 0;  // input batch, channels, height, width
  int K = 0;                       // output channels
  int R = 0, S = 0;                // kernel height, width
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  bool transposed = false;  // ConvTranspose2d (output_padding 0) rather than Conv2d

  // Conv2d: floor((H + 2·pad − R)/stride) + 1, as PyTorch; ConvTranspose2d: (H − 1)·stride − 2·pad + R.
  int out_h() const { return transposed ? (H - 1) * stride_h - 2 * pad_h + R : (H + 2 * pad_h - R) / stride_h + 1; }
  int out_w() const { return transposed ? (W - 1) * stride_w - 2 * pad_w + S : (W + 2 * pad_w - S) / stride_w + 1; }

  size_t x_size() const { return size_t(N) * C * H * W; }
  size_t y_size() const { return size_t(N) * K * out_h() * out_w(); }
  size_t w_size() const { return size_t(K) * C * R * S; }  // same count in both layouts

  // Throws std::invalid_argument naming the offending size; a layer calls this once when it is built.
  void validate() const {
    auto fail = [this](const char* why) {
      throw std::invalid_argument(std::string(transposed ? "ConvTranspose2d" : "Conv2d") + " shape N=" +
                                  std::to_string(N) + " C=" + std::to_string(C) + " H=" + std::to_string(H) +
                                  " W=" + std::to_string(W) + " K=" + std::to_string(K) + " kernel " +
                                  std::to_string(R) + "x" + std::to_string(S) + " stride " +
                                  std::to_string(stride_h) + "x" + std::to_string(stride_w) + " pad " +
                                  std::to_string(pad_h) + "x" + std::to_string(pad_w) + ": " + why);
    };
    if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0) fail("every size must be positive");
    if (stride_h <= 0 || stride_w <= 0) fail("stride must be positive");
    if (pad_h < 0 || pad_w < 0) fail("padding must be non-negative");
    if (!transposed && (H + 2 * pad_h < R || W + 2 * pad_w < S)) fail("kernel larger than the padded input");
    // cuDNN's legacy API takes int sizes; larger tensors would need splitting along the batch.
    if (x_size() > size_t(INT32_MAX) || y_size() > size_t(INT32_MAX)) fail("tensor larger than 2^31 elements");
    if (out_h() <= 0 || out_w() <= 0) fail("output would be empty");
  }
};

inline ConvShape conv2d_shape(int N, int C, int H, int W, int K, int R, int S, int stride_h, int stride_w, int pad_h,
                              int pad_w) {
  return ConvShape{N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w, false};
}
inline ConvShape conv_transpose2d_shape(int N, int C, int H, int W, int K, int R, int S, int stride_h, int stride_w,
                                        int pad_h, int pad_w) {
  return ConvShape{N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w, true};
}

}  // namespace ds
