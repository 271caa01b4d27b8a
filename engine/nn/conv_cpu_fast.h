// The fast CPU Conv2d / ConvTranspose2d for float: im2col/col2im + OpenBLAS sgemm over chunks of the
// batch. Same shapes, layouts and accumulation semantics as the reference in engine/nn/cpu/conv.h (which
// tests/test_unit_conv_fast.cpp checks it against); it is what the trainer runs on the CPU.
//
// Shapes: x N×C×H×W, y N×K×P×Q (P, Q = shape.out_h(), out_w()); w K×C×R×S for Conv2d, C×K×R×S for
// ConvTranspose2d (shape.transposed). dx WRITTEN, dw ACCUMULATES (+=).
#pragma once
#include <cstddef>

#include "engine/nn/conv_shape.h"

namespace ds::cpu_fast {

void conv2d_forward(float* y, const float* x, const float* w, const ConvShape& shape);
void conv2d_backward_data(float* dx, const float* dy, const float* w, const ConvShape& shape);
void conv2d_backward_filter(float* dw, const float* dy, const float* x, const ConvShape& shape);

void conv_transpose2d_forward(float* y, const float* x, const float* w, const ConvShape& shape);
void conv_transpose2d_backward_data(float* dx, const float* dy, const float* w, const ConvShape& shape);
void conv_transpose2d_backward_filter(float* dw, const float* dy, const float* x, const ConvShape& shape);

// Replaces the rule that sizes the groups of the batch by a plain budget: each group takes as many images
// as fit in `floats` floats of column matrix and matrix copy (at least one); 0 restores the rule. Returns
// the previous value. Only tests set it, to force several groups with a remainder and the
// one-image-per-group path on small shapes.
size_t set_chunk_budget_floats(size_t floats);

// The same six with the sizes spelled out, in the reference's argument order.
inline void conv2d_forward(float* y, const float* x, const float* w, int N, int C, int H, int W, int K, int R, int S,
                           int stride_h, int stride_w, int pad_h, int pad_w) {
  conv2d_forward(y, x, w, conv2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
inline void conv2d_backward_data(float* dx, const float* dy, const float* w, int N, int C, int H, int W, int K, int R,
                                 int S, int stride_h, int stride_w, int pad_h, int pad_w) {
  conv2d_backward_data(dx, dy, w, conv2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
inline void conv2d_backward_filter(float* dw, const float* dy, const float* x, int N, int C, int H, int W, int K,
                                   int R, int S, int stride_h, int stride_w, int pad_h, int pad_w) {
  conv2d_backward_filter(dw, dy, x, conv2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
inline void conv_transpose2d_forward(float* y, const float* x, const float* w, int N, int C, int H, int W, int K,
                                     int R, int S, int stride_h, int stride_w, int pad_h, int pad_w) {
  conv_transpose2d_forward(y, x, w, conv_transpose2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
inline void conv_transpose2d_backward_data(float* dx, const float* dy, const float* w, int N, int C, int H, int W,
                                           int K, int R, int S, int stride_h, int stride_w, int pad_h, int pad_w) {
  conv_transpose2d_backward_data(dx, dy, w,
                                 conv_transpose2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}
inline void conv_transpose2d_backward_filter(float* dw, const float* dy, const float* x, int N, int C, int H, int W,
                                             int K, int R, int S, int stride_h, int stride_w, int pad_h, int pad_w) {
  conv_transpose2d_backward_filter(dw, dy, x,
                                   conv_transpose2d_shape(N, C, H, W, K, R, S, stride_h, stride_w, pad_h, pad_w));
}

}  // namespace ds::cpu_fast
