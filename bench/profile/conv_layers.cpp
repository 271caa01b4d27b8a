// Callgrind driver for the fast CPU conv (README "Where the CPU step's time goes"): one forward, backward-data and
// backward-filter of the mel128x512 layers whose GEMMs differ in kind. Not part of the CMake build (bench/*.cpp is
// globbed into darkstar-bench; this is a folder below). Build and count:
//   g++ -O3 -DNDEBUG -fopenmp -std=gnu++17 -g -I. -isystem /usr/include/x86_64-linux-gnu/openblas-pthread \
//       bench/profile/conv_layers.cpp engine/nn/conv_cpu_fast.cpp -o /tmp/conv_layers -lopenblas
//   OMP_NUM_THREADS=1 valgrind --tool=callgrind /tmp/conv_layers            (the mel128x512 layers above)
//   OMP_NUM_THREADS=1 valgrind --tool=callgrind /tmp/conv_layers dcgan64    (every dcgan64 layer, batch 2)
#include <vector>
#include <cstdio>
#include <cstring>
#include "engine/nn/conv_cpu_fast.h"
using namespace ds;
static void run(const ConvShape& s) {
  std::vector<float> x(s.x_size(), 0.5f), w(s.w_size(), 0.01f), y(s.y_size(), 0.f), dy(s.y_size(), 0.1f), dx(s.x_size()), dw(s.w_size(), 0.f);
  if (s.transposed) {
    cpu_fast::conv_transpose2d_forward(y.data(), x.data(), w.data(), s);
    cpu_fast::conv_transpose2d_backward_data(dx.data(), dy.data(), w.data(), s);
    cpu_fast::conv_transpose2d_backward_filter(dw.data(), dy.data(), x.data(), s);
  } else {
    cpu_fast::conv2d_forward(y.data(), x.data(), w.data(), s);
    cpu_fast::conv2d_backward_data(dx.data(), dy.data(), w.data(), s);
    cpu_fast::conv2d_backward_filter(dw.data(), dy.data(), x.data(), s);
  }
  std::printf("%g %g %g\n", y[7 % y.size()], dx[7 % dx.size()], dw[7 % dw.size()]);
}
int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "dcgan64") == 0) {
    const int N = 2;
    run(conv2d_shape(N, 3, 64, 64, 64, 4, 4, 2, 2, 1, 1));
    run(conv2d_shape(N, 64, 32, 32, 128, 4, 4, 2, 2, 1, 1));
    run(conv2d_shape(N, 128, 16, 16, 256, 4, 4, 2, 2, 1, 1));
    run(conv2d_shape(N, 256, 8, 8, 512, 4, 4, 2, 2, 1, 1));
    run(conv2d_shape(N, 512, 4, 4, 1, 4, 4, 1, 1, 0, 0));
    run(conv_transpose2d_shape(N, 100, 1, 1, 512, 4, 4, 1, 1, 0, 0));
    run(conv_transpose2d_shape(N, 512, 4, 4, 256, 4, 4, 2, 2, 1, 1));
    run(conv_transpose2d_shape(N, 256, 8, 8, 128, 4, 4, 2, 2, 1, 1));
    run(conv_transpose2d_shape(N, 128, 16, 16, 64, 4, 4, 2, 2, 1, 1));
    run(conv_transpose2d_shape(N, 64, 32, 32, 3, 4, 4, 2, 2, 1, 1));
    return 0;
  }
  run(conv2d_shape(1, 64, 64, 256, 128, 4, 4, 2, 2, 1, 1));            // D1, one image
  run(conv2d_shape(4, 512, 8, 32, 1024, 4, 4, 2, 2, 1, 1));            // D4, batch 4
  run(conv_transpose2d_shape(4, 1024, 4, 16, 512, 4, 4, 2, 2, 1, 1));  // G1, batch 4
  run(conv_transpose2d_shape(8, 100, 1, 1, 1024, 4, 16, 1, 1, 0, 0));  // G0, batch 8
  run(conv2d_shape(8, 1024, 4, 16, 1, 4, 16, 1, 1, 0, 0));             // D5, batch 8
}
