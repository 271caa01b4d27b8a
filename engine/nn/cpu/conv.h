// Conv2d and ConvTranspose2d CPU reference (PyTorch semantics, NCHW, no bias, groups 1, dilation 1):
// forward, backward-data and backward-filter of each, as plain loops written to be obviously right.
// They are the spec the fast CPU path (engine/nn/conv_cpu_fast.h) and cuDNN (engine/nn/cudnn_conv.h) are
// judged against, and are themselves checked against finite differences in double.
//
// Shapes (ConvShape in engine/nn/conv_shape.h): x N×C×H×W, y N×K×P×Q with P = shape.out_h(), Q = out_w().
//   Conv2d:          w K×C×R×S,  y[n,k,p,q] = Σ_{c,r,s} x[n,c, p·sh−ph+r, q·sw−pw+s] · w[k,c,r,s]
//   ConvTranspose2d: w C×K×R×S,  y[n,k, h·sh−ph+r, w·sw−pw+s] += x[n,c,h,w] · w[c,k,r,s]  (y starts at 0)
// Out-of-range input positions are the zero padding. ConvTranspose2d is by definition the adjoint
// (backward-data) of the Conv2d that maps its output shape back to its input shape with the same
// weights, which is why PyTorch stores its weight in×out rather than out×in.
//
// Gradients of activations (dx) are WRITTEN; gradients of parameters (dw) ACCUMULATE (+=).
// Sums run in T: the fast-path and cuDNN tests run this reference in double.
#pragma once
#include <algorithm>
#include <cstddef>

#include "engine/nn/conv_shape.h"

namespace ds::cpu {

namespace conv_detail {
inline size_t at4(int a, int b, int c, int d, int B, int C, int D) {
  return ((size_t(a) * B + b) * C + c) * D + d;
}
}  // namespace conv_detail

// ---- Conv2d ------------------------------------------------------------------------------------

template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const ConvShape& s) {
  using conv_detail::at4;
  const int P = s.out_h(), Q = s.out_w();
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          T acc = 0;
          for (int c = 0; c < s.C; ++c)
            for (int r = 0; r < s.R; ++r)
              for (int t = 0; t < s.S; ++t) {
                const int ih = p * s.stride_h - s.pad_h + r, iw = q * s.stride_w - s.pad_w + t;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                acc += x[at4(n, c, ih, iw, s.C, s.H, s.W)] * w[at4(k, c, r, t, s.C, s.R, s.S)];
              }
          y[at4(n, k, p, q, s.K, P, Q)] = acc;
        }
}

// dx = ∂L/∂x given dy = ∂L/∂y: every product x·w of the forward sends dy·w back to that x.
template <class T>
void conv2d_backward_data(T* dx, const T* dy, const T* w, const ConvShape& s) {
  using conv_detail::at4;
  const int P = s.out_h(), Q = s.out_w();
  std::fill(dx, dx + s.x_size(), T(0));
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          const T g = dy[at4(n, k, p, q, s.K, P, Q)];
          for (int c = 0; c < s.C; ++c)
            for (int r = 0; r < s.R; ++r)
              for (int t = 0; t < s.S; ++t) {
                const int ih = p * s.stride_h - s.pad_h + r, iw = q * s.stride_w - s.pad_w + t;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                dx[at4(n, c, ih, iw, s.C, s.H, s.W)] += g * w[at4(k, c, r, t, s.C, s.R, s.S)];
              }
        }
}

// dw += ∂L/∂w: every product x·w of the forward sends dy·x to that w.
template <class T>
void conv2d_backward_filter(T* dw, const T* dy, const T* x, const ConvShape& s) {
  using conv_detail::at4;
  const int P = s.out_h(), Q = s.out_w();
  for (int k = 0; k < s.K; ++k)
    for (int c = 0; c < s.C; ++c)
      for (int r = 0; r < s.R; ++r)
        for (int t = 0; t < s.S; ++t) {
          T acc = 0;
          for (int n = 0; n < s.N; ++n)
            for (int p = 0; p < P; ++p)
              for (int q = 0; q < Q; ++q) {
                const int ih = p * s.stride_h - s.pad_h + r, iw = q * s.stride_w - s.pad_w + t;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                acc += dy[at4(n, k, p, q, s.K, P, Q)] * x[at4(n, c, ih, iw, s.C, s.H, s.W)];
              }
          dw[at4(k, c, r, t, s.C, s.R, s.S)] += acc;
        }
}

// ---- ConvTranspose2d (s.transposed; output_padding 0) -------------------------------------------

template <class T>
void conv_transpose2d_forward(T* y, const T* x, const T* w, const ConvShape& s) {
  using conv_detail::at4;
  const int P = s.out_h(), Q = s.out_w();
  std::fill(y, y + s.y_size(), T(0));
  for (int n = 0; n < s.N; ++n)
    for (int c = 0; c < s.C; ++c)
      for (int h = 0; h < s.H; ++h)
        for (int v = 0; v < s.W; ++v) {
          const T a = x[at4(n, c, h, v, s.C, s.H, s.W)];
          for (int k = 0; k < s.K; ++k)
            for (int r = 0; r < s.R; ++r)
              for (int t = 0; t < s.S; ++t) {
                const int oh = h * s.stride_h - s.pad_h + r, ow = v * s.stride_w - s.pad_w + t;
                if (oh < 0 || oh >= P || ow < 0 || ow >= Q) continue;
                y[at4(n, k, oh, ow, s.K, P, Q)] += a * w[at4(c, k, r, t, s.K, s.R, s.S)];
              }
        }
}

// dx[n,c,h,w] = Σ_{k,r,s} dy[n,k, h·sh−ph+r, w·sw−pw+s] · w[c,k,r,s]: a Conv2d of dy with the same w.
template <class T>
void conv_transpose2d_backward_data(T* dx, const T* dy, const T* w, const ConvShape& s) {
  using conv_detail::at4;
  const int P = s.out_h(), Q = s.out_w();
  for (int n = 0; n < s.N; ++n)
    for (int c = 0; c < s.C; ++c)
      for (int h = 0; h < s.H; ++h)
        for (int v = 0; v < s.W; ++v) {
          T acc = 0;
          for (int k = 0; k < s.K; ++k)
            for (int r = 0; r < s.R; ++r)
              for (int t = 0; t < s.S; ++t) {
                const int oh = h * s.stride_h - s.pad_h + r, ow = v * s.stride_w - s.pad_w + t;
                if (oh < 0 || oh >= P || ow < 0 || ow >= Q) continue;
                acc += dy[at4(n, k, oh, ow, s.K, P, Q)] * w[at4(c, k, r, t, s.K, s.R, s.S)];
              }
          dx[at4(n, c, h, v, s.C, s.H, s.W)] = acc;
        }
}

// dw[c,k,r,s] += Σ_{n,h,w} x[n,c,h,w] · dy[n,k, h·sh−ph+r, w·sw−pw+s].
template <class T>
void conv_transpose2d_backward_filter(T* dw, const T* dy, const T* x, const ConvShape& s) {
  using conv_detail::at4;
  const int P = s.out_h(), Q = s.out_w();
  for (int c = 0; c < s.C; ++c)
    for (int k = 0; k < s.K; ++k)
      for (int r = 0; r < s.R; ++r)
        for (int t = 0; t < s.S; ++t) {
          T acc = 0;
          for (int n = 0; n < s.N; ++n)
            for (int h = 0; h < s.H; ++h)
              for (int v = 0; v < s.W; ++v) {
                const int oh = h * s.stride_h - s.pad_h + r, ow = v * s.stride_w - s.pad_w + t;
                if (oh < 0 || oh >= P || ow < 0 || ow >= Q) continue;
                acc += x[at4(n, c, h, v, s.C, s.H, s.W)] * dy[at4(n, k, oh, ow, s.K, P, Q)];
              }
          dw[at4(c, k, r, t, s.K, s.R, s.S)] += acc;
        }
}

// ---- the same six with the sizes spelled out (PyTorch's argument order) --------------------------

template <class T>
void conv2d_forward(T* y, const T* x, const T* w, int N, int C, int H, int W, int K, int R, int S, int stride_h,
                    int stride_w, int pad_h, int pad_w) {
  conv2d_forward(y, x, w, conv2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
template <class T>
void conv2d_backward_data(T* dx, const T* dy, const T* w, int N, int C, int H, int W, int K, int R, int S,
                          int stride_h, int stride_w, int pad_h, int pad_w) {
  conv2d_backward_data(dx, dy, w, conv2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
template <class T>
void conv2d_backward_filter(T* dw, const T* dy, const T* x, int N, int C, int H, int W, int K, int R, int S,
                            int stride_h, int stride_w, int pad_h, int pad_w) {
  conv2d_backward_filter(dw, dy, x, conv2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
template <class T>
void conv_transpose2d_forward(T* y, const T* x, const T* w, int N, int C, int H, int W, int K, int R, int S,
                              int stride_h, int stride_w, int pad_h, int pad_w) {
  conv_transpose2d_forward(y, x, w, conv_transpose2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
template <class T>
void conv_transpose2d_backward_data(T* dx, const T* dy, const T* w, int N, int C, int H, int W, int K, int R, int S,
                                    int stride_h, int stride_w, int pad_h, int pad_w) {
  conv_transpose2d_backward_data(dx, dy, w,
                                 conv_transpose2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
template <class T>
void conv_transpose2d_backward_filter(T* dw, const T* dy, const T* x, int N, int C, int H, int W, int K, int R,
                                      int S, int stride_h, int stride_w, int pad_h, int pad_w) {
  conv_transpose2d_backward_filter(dw, dy, x,
                                   conv_transpose2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}

}  // namespace ds::cpu
