// The fast CPU Conv2d / ConvTranspose2d: im2col/col2im + OpenBLAS sgemm over groups of the batch.
//
// All six ops are one of three products on a common "image ⇄ columns" geometry:
//   Conv2d:          image = x (C×H×W),  positions = P×Q,  filter matrix w K×(C·R·S)
//   ConvTranspose2d: image = y (K×P×Q),  positions = H×W,  filter matrix w C×(K·R·S)
// (the transposed conv is the adjoint of the Conv2d from its output back to its input, so it reuses
// that Conv2d's columns). With cols = im2col(image) of shape (channels·R·S)×positions:
//   gemm_forward:  out  = w · cols(image)          Conv2d forward,  ConvTranspose2d backward-data
//   gemm_adjoint:  image = col2im(wᵀ · in)         Conv2d backward-data, ConvTranspose2d forward
//   gemm_filter:   dw  += in · cols(image)ᵀ        both backward-filters (in = dy resp. x)
//
// Groups: the batch is cut into groups of images (chunk_images: the size depends only on N and the layer),
// each with enough columns that re-packing the weights per group stays cheap and otherwise small enough
// that its column matrix stays in cache between im2col and the GEMM (or the GEMM and col2im). The groups run one after
// another; inside a group every phase is parallel: the im2col/col2im and layout copies over rows or
// planes, and the GEMM cut into a fixed number of pieces along its longer side (parallel_sgemm), each
// piece a single-threaded sgemm on an OpenMP thread. Why not one group per thread, as before: the deep
// layers have 4×4 to 8×32 maps, so a group of one or a few images gave a GEMM of 16–256 columns against a
// weight matrix of up to 1024×8192 that OpenBLAS re-packed for every group (callgrind at mel128x512,
// batch 2: see README "Where the CPU step's time goes"); and backward-weight needed one partial dw per
// group (up to 8 × 32 MB) summed afterwards. Now backward-weight accumulates straight into dw, group after
// group (beta 1), so no partials exist.
// Three shortcuts where the general column path spent its time in copies (perf, dcgan64 at one thread:
// col2im 13 %, im2col 9 % of the step): col2im for 4×4/stride 2/pad 1 gathers each pixel's four entries
// instead of sixteen read-modify-write passes over the plane; im2col for output widths under 16 gathers
// from zero-bordered copies (split into their four even/odd phases when both strides are 2, so each output
// row is one contiguous copy; otherwise through an offset table); a kernel that covers the whole image (D's last
// layer, G's first) is a single GEMM on the tensors as they lie. All three give the same values in the
// same order of operations as the general path, except the last (a GEMM of another shape; its own
// summation order, fixed by the shapes).
// OpenBLAS is held at one thread inside these calls: a second pool of spinning BLAS threads would fight
// OpenMP's for the cores (measured earlier: 1.8 s with OpenMP copies around a threaded BLAS against 0.86 s
// without, for one pass of every 64×64 DCGAN layer at batch 64 on 2 cores).
// Determinism: the group sizes and the GEMM pieces depend only on the shapes, never on the thread count,
// and each output element is summed in the same order whichever thread computes its piece, so results
// do not depend on the thread count (CPU resume stays bit-exact).
#include "engine/nn/conv_cpu_fast.h"

#include <cblas.h>
#include <omp.h>

#include "engine/nn/cpu/parallel.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace ds::cpu_fast {
namespace {

// The image side of the product: `channels` planes of height×width, seen through an R×S window
// at out_h×out_w positions (i = p·stride − pad + r).
struct ColumnGeometry {
  int channels, height, width;
  int R, S, stride_h, stride_w, pad_h, pad_w;
  int out_h, out_w;
  int rows() const { return channels * R * S; }
  int positions() const { return out_h * out_w; }
  size_t image_size() const { return size_t(channels) * height * width; }
};

ColumnGeometry conv_geometry(const ConvShape& s) {  // Conv2d: image = x
  return {s.C, s.H, s.W, s.R, s.S, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.out_h(), s.out_w()};
}
ColumnGeometry transpose_geometry(const ConvShape& s) {  // ConvTranspose2d: image = y
  return {s.K, s.out_h(), s.out_w(), s.R, s.S, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.H, s.W};
}

// Scratch that grows to the largest layer once and is then reused: a step allocates nothing.
struct Scratch {
  std::vector<float> cols, matrix, plane, padded, partial;
  std::vector<int> offsets;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}
float* grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
int* grow_offsets(std::vector<int>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// How many images a group takes: as few as keep OpenBLAS's re-packing of the weight side cheap, and
// otherwise as many as stay in a core's L2. A group's GEMM reads (or, for the adjoint, writes) a column
// matrix of rows × (images·positions) floats, which im2col wrote just before (or col2im reads just after),
// and re-packs the weight side (matrix_rows × rows floats) once per group. Against the column side that
// re-pack costs matrix_rows / columns, so kMinColumnsPerMatrixRow = 4 columns per matrix row keep it at a
// quarter of the column traffic; more images than that only made the column matrix fall out of the caches
// between the two passes (measured, dcgan64 batch 64, one thread, every layer's three products summed,
// interleaved in one process on the loaded shared machine: groups of up to 8 Mi floats 4.0–4.8 s, L2-sized
// groups with ≥ 4 columns per matrix row 3.6–4.0 s; 2 or 8 columns per row were no better). kCapFloats bounds a group that the weight rule
// alone would make huge (mel128x512's deep layers: 8192 rows × 64 positions × 64 images = 128 MB).
constexpr size_t kCacheFloats = size_t(128) << 10;  // 512 KB
constexpr size_t kCapFloats = size_t(8) << 20;      // 32 MB
constexpr size_t kMinColumnsPerMatrixRow = 4;
size_t chunk_budget_override = 0;  // set_chunk_budget_floats: tests only; 0 = the rule above

// `accumulating`: backward-weight, whose groups add onto one dw in turn and so run one after another, each
// spread over the threads (a few barriers per group): it keeps the large groups, so that at 2 threads on
// a loaded machine the barriers do not multiply (measured: small groups there took dcgan64 from 7.5 to
// 2.8 images/s while forward and backward-data, run group-parallel, do not need barriers per group).
int chunk_images(int N, const ColumnGeometry& g, int matrix_rows, bool accumulating = false) {
  const size_t per_image = std::max<size_t>((size_t(g.rows()) + size_t(matrix_rows)) * g.positions(), 1);
  if (chunk_budget_override) return int(std::clamp<size_t>(chunk_budget_override / per_image, 1, size_t(N)));
  if (accumulating) return int(std::clamp<size_t>(kCapFloats / per_image, 1, size_t(N)));
  const size_t for_weights = (kMinColumnsPerMatrixRow * size_t(matrix_rows) + g.positions() - 1) / g.positions();
  const size_t images = std::max(kCacheFloats / per_image, std::min(for_weights, kCapFloats / per_image));
  return int(std::clamp<size_t>(images, 1, size_t(N)));
}

// Element count above which a copy loop runs on several threads (below, a parallel region costs more).
using ds::cpu::kParallelElements;

// OpenBLAS at one thread for the lifetime of the guard (restored after): the groups are the parallelism.
struct SingleThreadedBlas {
  int previous = openblas_get_num_threads();
  SingleThreadedBlas() {
    if (previous != 1) openblas_set_num_threads(1);
  }
  ~SingleThreadedBlas() {
    if (previous != 1) openblas_set_num_threads(previous);
  }
};

// The output columns q whose input column q·stride_w − pad_w + t lies inside the image: [q_begin, q_end).
// Computed once per kernel column so the copy loops need no bounds test.
void valid_columns(int& q_begin, int& q_end, const ColumnGeometry& g, int t) {
  const int offset = t - g.pad_w;  // input column of q = 0
  q_begin = offset >= 0 ? 0 : (-offset + g.stride_w - 1) / g.stride_w;
  // last valid q: q·stride + offset ≤ width − 1
  q_end = g.width - 1 - offset < 0 ? 0 : std::min(g.out_w, (g.width - 1 - offset) / g.stride_w + 1);
  q_begin = std::min(q_begin, q_end);
}

// The chunk's images copied into zero-bordered planes, so im2col reads every tap without a bounds test:
// padded[j][c][ih + pad_h][iw + pad_w] = image_j[c][ih][iw], zero elsewhere. The padded extents cover every
// row and column a tap reads ((out − 1)·stride + kernel) and the whole image.
struct PaddedExtent {
  int height, width;
  size_t plane() const { return size_t(height) * width; }
};
PaddedExtent padded_extent(const ColumnGeometry& g) {
  return {std::max((g.out_h - 1) * g.stride_h + g.R, g.pad_h + g.height),
          std::max((g.out_w - 1) * g.stride_w + g.S, g.pad_w + g.width)};
}
void pad_images(float* padded, const float* images, int count, const ColumnGeometry& g, const PaddedExtent& e) {
  const int planes = count * g.channels;
#pragma omp parallel for schedule(static) if (size_t(planes) * e.plane() > size_t(kParallelElements))
  for (int jc = 0; jc < planes; ++jc) {
    const float* src = images + size_t(jc) * g.height * g.width;
    float* dst = padded + size_t(jc) * e.plane();
    std::fill(dst, dst + size_t(g.pad_h) * e.width, 0.0f);
    for (int h = 0; h < g.height; ++h) {
      float* row = dst + size_t(h + g.pad_h) * e.width;
      std::fill(row, row + g.pad_w, 0.0f);
      std::memcpy(row + g.pad_w, src + size_t(h) * g.width, sizeof(float) * g.width);
      std::fill(row + g.pad_w + g.width, row + e.width, 0.0f);
    }
    std::fill(dst + size_t(g.pad_h + g.height) * e.width, dst + e.plane(), 0.0f);
  }
}

// Stride 2 along both axes: the zero-bordered planes of pad_images, each split into its four phases
// (even/odd row × even/odd column), phases[jc][a][b][i][j] = padded[jc][2i + a][2j + b] on a PhaseExtent
// grid. Tap (r, t) of position (p, q) reads padded row 2p + r, column 2q + t, which is phase
// (r & 1, t & 1) at (p + r/2, q + t/2): for a fixed tap, an output row is a contiguous run of its phase,
// so im2col copies runs instead of gathering element by element through the offset table.
struct PhaseExtent {
  int height, width;  // of one phase
  size_t plane() const { return size_t(height) * width; }
};
PhaseExtent phase_extent(const PaddedExtent& e) { return {(e.height + 1) / 2, (e.width + 1) / 2}; }
bool stride2_both(const ColumnGeometry& g) { return g.stride_h == 2 && g.stride_w == 2; }
void split_phases(float* phases, const float* images, int count, const ColumnGeometry& g, const PhaseExtent& e) {
  const int planes = count * g.channels;
  const size_t phase = e.plane();
#pragma omp parallel for schedule(static) if (size_t(planes) * 4 * phase > size_t(kParallelElements))
  for (int jc = 0; jc < planes; ++jc) {
    const float* src = images + size_t(jc) * g.height * g.width;
    float* dst = phases + size_t(jc) * 4 * phase;
    std::fill(dst, dst + 4 * phase, 0.0f);
    for (int h = 0; h < g.height; ++h) {
      const int ph = h + g.pad_h;
      // image column w lies at padded column w + pad_w: phase (w + pad_w) & 1, index (w + pad_w) >> 1
      float* even_w = dst + size_t((ph & 1) * 2 + (g.pad_w & 1)) * phase + size_t(ph >> 1) * e.width;
      float* odd_w = dst + size_t((ph & 1) * 2 + ((g.pad_w + 1) & 1)) * phase + size_t(ph >> 1) * e.width;
      const float* row = src + size_t(h) * g.width;
      int w = 0;
      for (; w + 1 < g.width; w += 2) {
        even_w[(w + g.pad_w) >> 1] = row[w];
        odd_w[(w + 1 + g.pad_w) >> 1] = row[w + 1];
      }
      if (w < g.width) even_w[(w + g.pad_w) >> 1] = row[w];
    }
  }
}

// Below this output width im2col gathers each row of the column matrix from zero-bordered copies of the
// images through a table of source offsets (one loop over all positions of an image, no bounds test)
// instead of a loop per output row: the deep DCGAN layers have 4×4 to 8×32 maps, where per-row loops of
// 4–8 elements with their border fills were mostly loop overhead (perf, dcgan64 at one thread: im2col
// 8.8 % of the step). From this width on the row loops are long and the bordered copy would be an
// extra pass over the images, so they stay.
constexpr int kTableBelowWidth = 16;

// cols[(c·R + r)·S + t][j·positions + p·out_w + q] = image_j[c][p·sh − ph + r][q·sw − pw + t] (0 outside).
// For output widths under kTableBelowWidth, `padded` is scratch for the zero-bordered copy
// (padded_extent(g).plane() floats per plane) and `offsets` for the gather table (positions ints).
// Every value is a copy, so the result does not depend on the path.
void im2col(float* cols, float* padded, int* offsets, const float* images, int count, const ColumnGeometry& g) {
  const int rows = g.rows(), PQ = g.positions();
  const size_t ld = size_t(count) * PQ;
  if (g.out_w < kTableBelowWidth && stride2_both(g)) {
    const PhaseExtent e = phase_extent(padded_extent(g));
    split_phases(padded, images, count, g, e);
    // Rows are independent (each written once, from the phases): parallel.
#pragma omp parallel for schedule(static) if (size_t(rows) * ld > size_t(kParallelElements))
    for (int row = 0; row < rows; ++row) {
      const int c = row / (g.R * g.S), r = (row / g.S) % g.R, t = row % g.S;
      for (int j = 0; j < count; ++j) {
        const float* phase = padded + ((size_t(j) * g.channels + c) * 4 + (r & 1) * 2 + (t & 1)) * e.plane() +
                             size_t(r >> 1) * e.width + (t >> 1);
        float* dst = cols + row * ld + size_t(j) * PQ;
        for (int p = 0; p < g.out_h; ++p, dst += g.out_w, phase += e.width)
          if (g.out_w == 4)  // the DCGAN's 4×4 and 4×16 maps: a constant trip count, one vector copy
            std::memcpy(dst, phase, 4 * sizeof(float));
          else if (g.out_w == 8)
            std::memcpy(dst, phase, 8 * sizeof(float));
          else
            std::memcpy(dst, phase, size_t(g.out_w) * sizeof(float));
      }
    }
    return;
  }
  if (g.out_w < kTableBelowWidth) {
    const PaddedExtent e = padded_extent(g);
    pad_images(padded, images, count, g, e);
    for (int p = 0; p < g.out_h; ++p)
      for (int q = 0; q < g.out_w; ++q) offsets[p * g.out_w + q] = p * g.stride_h * e.width + q * g.stride_w;
    // Rows are independent (each written once, from the padded images): parallel.
#pragma omp parallel for schedule(static) if (size_t(rows) * ld > size_t(kParallelElements))
    for (int row = 0; row < rows; ++row) {
      const int c = row / (g.R * g.S), r = (row / g.S) % g.R, t = row % g.S;
      for (int j = 0; j < count; ++j) {
        // tap (r, t) of position (p, q) reads padded row p·sh + r, column q·sw + t
        const float* plane = padded + (size_t(j) * g.channels + c) * e.plane() + size_t(r) * e.width + t;
        float* dst = cols + row * ld + size_t(j) * PQ;
        for (int k = 0; k < PQ; ++k) dst[k] = plane[offsets[k]];
      }
    }
    return;
  }
  // Rows are independent (each written once, from the image): parallel.
#pragma omp parallel for schedule(static) if (size_t(rows) * ld > size_t(kParallelElements))
  for (int row = 0; row < rows; ++row) {
    const int c = row / (g.R * g.S), r = (row / g.S) % g.R, t = row % g.S;
    int q_begin, q_end;
    valid_columns(q_begin, q_end, g, t);
    const int offset = t - g.pad_w;
    for (int j = 0; j < count; ++j) {
      const float* plane = images + size_t(j) * g.image_size() + size_t(c) * g.height * g.width;
      float* dst = cols + row * ld + size_t(j) * PQ;
      for (int p = 0; p < g.out_h; ++p) {
        const int ih = p * g.stride_h - g.pad_h + r;
        float* d = dst + size_t(p) * g.out_w;
        if (ih < 0 || ih >= g.height) {
          std::fill(d, d + g.out_w, 0.0f);
          continue;
        }
        const float* src = plane + size_t(ih) * g.width;
        std::fill(d, d + q_begin, 0.0f);
        // No bounds test inside. Stride 2 (every DCGAN layer but the first of G and the last of D) with the
        // stride a constant: the compiler turns the gather into vector loads and shuffles.
        if (g.stride_w == 2)
          for (int q = q_begin; q < q_end; ++q) d[q] = src[2 * q + offset];
        else
          for (int q = q_begin; q < q_end; ++q) d[q] = src[q * g.stride_w + offset];
        std::fill(d + q_end, d + g.out_w, 0.0f);
      }
    }
  }
}

// The bordered-copy scratch im2col needs for a chunk of up to nb images (none from kTableBelowWidth on).
float* padded_scratch(Scratch& sc, const ColumnGeometry& g, int nb) {
  if (g.out_w >= kTableBelowWidth) return nullptr;
  const size_t plane = stride2_both(g) ? 4 * phase_extent(padded_extent(g)).plane() : padded_extent(g).plane();
  return grow(sc.padded, plane * g.channels * size_t(nb));
}

// col2im for stride_w 2: the plane is accumulated with each row split into its even columns followed
// by its odd columns, so every (r, t) pass adds a contiguous run of the column matrix onto a contiguous
// run of the plane (a vector add; interleaved, the same adds were a scalar read-modify-write at every
// other address), and the rows are interleaved into the image at the end. The same additions in the
// same order as the general loop below, so the result is bit-identical to it.
void col2im_stride2(float* plane, float* split, const float* cols, size_t ld, const ColumnGeometry& g) {
  const int even_width = (g.width + 1) / 2;
  std::fill(split, split + size_t(g.height) * g.width, 0.0f);
  for (int r = 0; r < g.R; ++r)
    for (int t = 0; t < g.S; ++t) {
      int q_begin, q_end;
      valid_columns(q_begin, q_end, g, t);
      const int offset = t - g.pad_w;               // image column of q is 2q + offset
      const int parity = offset & 1;                // of every column this tap writes (two's complement)
      const int shift = (offset - parity) / 2;      // its index within that parity's half-row is q + shift
      const float* src = cols + size_t(r * g.S + t) * ld;
      for (int p = 0; p < g.out_h; ++p) {
        const int ih = p * g.stride_h - g.pad_h + r;
        if (ih < 0 || ih >= g.height) continue;
        const float* s = src + size_t(p) * g.out_w;
        float* half_row = split + size_t(ih) * g.width + (parity ? even_width : 0);
        for (int q = q_begin; q < q_end; ++q) half_row[q + shift] += s[q];
      }
    }
  for (int h = 0; h < g.height; ++h) {
    const float* even = split + size_t(h) * g.width;
    const float* odd = even + even_width;
    float* row = plane + size_t(h) * g.width;
    for (int k = 0; k < g.width / 2; ++k) {
      row[2 * k] = even[k];
      row[2 * k + 1] = odd[k];
    }
    if (g.width % 2) row[g.width - 1] = even[even_width - 1];
  }
}

// col2im for the DCGAN's 4×4 kernel, stride 2, pad 1 with the image exactly twice the position grid
// (every layer between the first and the last): image row ih = 2p − 1 + r is reached by exactly two
// kernel rows (r = 1, 3 at p = ih/2, ih/2 − 1 for even ih; r = 0, 2 at p = (ih+1)/2, (ih−1)/2 for odd ih),
// and likewise each column by two kernel columns, so every pixel is a sum of at most four column entries.
// Each image row is gathered once into its even and odd half-rows (contiguous runs of the column matrix,
// in L1) and interleaved into the plane: no pass over the plane per tap and no clearing of it (perf,
// dcgan64 at one thread: the general stride-2 col2im, 16 read-modify-write passes over a split copy of
// the plane, was 13 % of the step). Each pixel adds its entries in the general loop's order (r, then t,
// ascending, from 0), so the result is bit-identical to it.
bool is_k4_s2_p1_double(const ColumnGeometry& g) {
  return g.R == 4 && g.S == 4 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 1 && g.pad_w == 1 &&
         g.height == 2 * g.out_h && g.width == 2 * g.out_w;
}
void col2im_k4_s2_p1(float* plane, float* half_rows, const float* cols, size_t ld, const ColumnGeometry& g) {
  const int OH = g.out_h, OW = g.out_w;
  float* even = half_rows;     // image columns 2q
  float* odd = half_rows + OW;  // image columns 2q + 1
  for (int ih = 0; ih < g.height; ++ih) {
    std::fill(even, even + 2 * OW, 0.0f);
    for (int r = (ih % 2 == 0) ? 1 : 0; r < 4; r += 2) {
      const int twice_p = ih + 1 - r;  // even
      if (twice_p < 0 || twice_p / 2 >= OH) continue;
      const float* tap = cols + size_t(r * 4) * ld + size_t(twice_p / 2) * OW;  // t = 0 of kernel row r
      const float *x0 = tap, *x1 = tap + ld, *x2 = tap + 2 * ld, *x3 = tap + 3 * ld;
      // column 2q: t = 1 at q, then t = 3 at q − 1
      even[0] += x1[0];
      for (int q = 1; q < OW; ++q) even[q] = (even[q] + x1[q]) + x3[q - 1];
      // column 2q + 1: t = 0 at q + 1, then t = 2 at q
      for (int q = 0; q + 1 < OW; ++q) odd[q] = (odd[q] + x0[q + 1]) + x2[q];
      odd[OW - 1] += x2[OW - 1];
    }
    float* row = plane + size_t(ih) * g.width;
    for (int q = 0; q < OW; ++q) {
      row[2 * q] = even[q];
      row[2 * q + 1] = odd[q];
    }
  }
}

// The adjoint of im2col: images are WRITTEN with the sum of every column entry that im2col would read
// from each pixel. Planes are independent (each sums its own taps in a fixed order): parallel, each
// thread with its own `split` scratch of one plane (height·width floats) for stride_w 2.
void col2im(float* images, const float* cols, int count, const ColumnGeometry& g) {
  const int PQ = g.positions();
  const size_t ld = size_t(count) * PQ;
  const int planes = count * g.channels;
  const bool k4_s2_p1 = is_k4_s2_p1_double(g);
#pragma omp parallel for schedule(static) if (size_t(g.rows()) * ld > size_t(kParallelElements))
  for (int jc = 0; jc < planes; ++jc) {
    const int j = jc / g.channels, c = jc % g.channels;
    float* plane = images + size_t(j) * g.image_size() + size_t(c) * g.height * g.width;
    if (k4_s2_p1) {
      float* half_rows = grow(scratch().plane, 2 * size_t(g.out_w));
      col2im_k4_s2_p1(plane, half_rows, cols + size_t(c) * 16 * ld + size_t(j) * PQ, ld, g);
      continue;
    }
    if (g.stride_w == 2) {
      float* split = grow(scratch().plane, size_t(g.height) * g.width);
      col2im_stride2(plane, split, cols + size_t(c) * g.R * g.S * ld + size_t(j) * PQ, ld, g);
      continue;
    }
    std::fill(plane, plane + size_t(g.height) * g.width, 0.0f);
    for (int r = 0; r < g.R; ++r)
      for (int t = 0; t < g.S; ++t) {
        int q_begin, q_end;
        valid_columns(q_begin, q_end, g, t);
        const float* src = cols + (size_t(c * g.R + r) * g.S + t) * ld + size_t(j) * PQ;
        for (int p = 0; p < g.out_h; ++p) {
          const int ih = p * g.stride_h - g.pad_h + r;
          if (ih < 0 || ih >= g.height) continue;
          const float* s = src + size_t(p) * g.out_w;
          float* dst = plane + size_t(ih) * g.width;
          const int offset = t - g.pad_w;
          for (int q = q_begin; q < q_end; ++q) dst[q * g.stride_w + offset] += s[q];
        }
      }
  }
}

// NCHW chunk (count × rows × positions) ⇄ matrix rows × (count·positions), image j in column block j.
// Plain copies, parallel over the matrix rows.
void nchw_to_matrix(float* matrix, const float* t, int count, int rows, int positions) {
#pragma omp parallel for schedule(static) if (size_t(rows) * count * positions > size_t(kParallelElements))
  for (int m = 0; m < rows; ++m)
    for (int j = 0; j < count; ++j)
      std::memcpy(matrix + (size_t(m) * count + j) * positions, t + (size_t(j) * rows + m) * positions,
                  sizeof(float) * positions);
}
void matrix_to_nchw(float* t, const float* matrix, int count, int rows, int positions) {
#pragma omp parallel for schedule(static) if (size_t(rows) * count * positions > size_t(kParallelElements))
  for (int m = 0; m < rows; ++m)
    for (int j = 0; j < count; ++j)
      std::memcpy(t + (size_t(j) * rows + m) * positions, matrix + (size_t(m) * count + j) * positions,
                  sizeof(float) * positions);
}
// A group's b images of `in` (N × in_rows × positions, starting at image n0) as the GEMM's
// in_rows × (b·positions) operand: the tensor itself for one image, else staged in sc.matrix
// (room for nb images, so the buffer is sized once per op).
const float* group_as_matrix(Scratch& sc, const float* in, int n0, int b, int nb, int in_rows, int positions) {
  const float* chunk = in + size_t(n0) * in_rows * positions;
  if (b == 1) return chunk;
  float* matrix = grow(sc.matrix, size_t(in_rows) * nb * positions);
  nchw_to_matrix(matrix, chunk, b, in_rows, positions);
  return matrix;
}

// The GEMM pieces: along its longer side (so the operand every piece re-packs is the smaller one: split
// along N, each piece packs all of A, M·K floats; along M, all of B, K·N), a power of two up to 8 pieces
// (equal shares for 1, 2, 4 and 8 threads), each at least kMinPiece rows or columns long: a piece re-packs
// min(M·K, K·N) floats, so all pieces together copy pieces / (2·max(M, N)) floats per flop of the GEMM:
// at ≥ 256 that stays under one float per 512 flops, and no piece is a narrow GEMM. Boundaries on
// multiples of 16 (whole register tiles).
constexpr int kMaxPieces = 8, kMinPiece = 256, kPieceAlign = 16;

// C (M×N, row-major, ldc) = alpha·op(A)·op(B) + beta·C on OpenMP threads, cut into pieces that depend only on
// M, N and K. Every C element is computed by exactly one piece with the same K loop as an uncut sgemm, so the
// cut changes which thread computes it, not its value.
void parallel_sgemm(CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int M, int N, int K, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  const bool along_n = N >= M;
  const int extent = along_n ? N : M;
  int pieces = 1;
  while (pieces < kMaxPieces && extent / (2 * pieces) >= kMinPiece) pieces *= 2;
  const int step = (extent / pieces + kPieceAlign - 1) / kPieceAlign * kPieceAlign;
#pragma omp parallel for schedule(static) if (pieces > 1)
  for (int piece = 0; piece < pieces; ++piece) {
    const int begin = std::min(extent, piece * step), end = piece + 1 == pieces ? extent : std::min(extent, begin + step);
    if (begin >= end) continue;
    if (along_n) {  // columns [begin, end) of C and of op(B)
      const float* b = trans_b == CblasNoTrans ? B + begin : B + size_t(begin) * ldb;
      cblas_sgemm(CblasRowMajor, trans_a, trans_b, M, end - begin, K, 1.0f, A, lda, b, ldb, beta, C + begin, ldc);
    } else {  // rows [begin, end) of C and of op(A)
      const float* a = trans_a == CblasNoTrans ? A + size_t(begin) * lda : A + begin;
      cblas_sgemm(CblasRowMajor, trans_a, trans_b, end - begin, N, K, 1.0f, a, lda, B, ldb, beta,
                  C + size_t(begin) * ldc, ldc);
    }
  }
}

// A kernel that covers the whole unpadded image at one position (D's last layer, G's first: 4×4 on 4×4,
// 4×16 on 4×16 at 128×512): then the column matrix is the images transposed, cols[row][j] = image_j[row],
// and each product is one GEMM on the tensors as they lie (images N × rows, the other side N × matrix
// rows, both row-major): no im2col, col2im or layout copy. Before, these layers (8 192 to 1·10⁶ MACs per
// image) spent their time in those copies and in col2im's per-tap loops over 4×4 planes.
bool kernel_covers_image(const ColumnGeometry& g) {
  return g.out_h == 1 && g.out_w == 1 && g.pad_h == 0 && g.pad_w == 0 && g.R == g.height && g.S == g.width;
}

// out (N × out_rows × positions) = w (out_rows × g.rows()) · im2col(images).
void gemm_forward(float* out, const float* images, const float* w, int N, int out_rows, const ColumnGeometry& g) {
  const int nb = chunk_images(N, g, out_rows), PQ = g.positions(), rows = g.rows();
  SingleThreadedBlas one_thread;
  if (kernel_covers_image(g)) {  // out (N × out_rows) = images (N × rows) · wᵀ
    parallel_sgemm(CblasNoTrans, CblasTrans, N, out_rows, rows, images, rows, w, rows, 0.0f, out, out_rows);
    return;
  }
  // Groups write disjoint outputs: with several, they run on the OpenMP threads, each group's phases on
  // its thread alone (nested regions stay inactive), so a thread takes a barrier per op, not per group;
  // each group's arithmetic is the same whichever thread runs it.
  const int groups = (N + nb - 1) / nb;
#pragma omp parallel for schedule(static) if (groups > 1)
  for (int group = 0; group < groups; ++group) {
    Scratch& sc = scratch();
    const int n0 = group * nb, b = std::min(nb, N - n0);
    float* cols = grow(sc.cols, size_t(rows) * nb * PQ);
    float* out_chunk = out + size_t(n0) * out_rows * PQ;
    im2col(cols, padded_scratch(sc, g, nb), grow_offsets(sc.offsets, PQ),
           images + size_t(n0) * g.image_size(), b, g);
    float* dst = b == 1 ? out_chunk : grow(sc.matrix, size_t(out_rows) * nb * PQ);  // one image: already NCHW
    parallel_sgemm(CblasNoTrans, CblasNoTrans, out_rows, b * PQ, rows, w, rows, cols, b * PQ, 0.0f, dst, b * PQ);
    if (b > 1) matrix_to_nchw(out_chunk, dst, b, out_rows, PQ);
  }
}

// images (N × g.image_size()) = col2im(wᵀ · in), in N × in_rows × positions, w in_rows × g.rows().
void gemm_adjoint(float* images, const float* in, const float* w, int N, int in_rows, const ColumnGeometry& g) {
  const int nb = chunk_images(N, g, in_rows), PQ = g.positions(), rows = g.rows();
  SingleThreadedBlas one_thread;
  if (kernel_covers_image(g)) {  // images (N × rows) = in (N × in_rows) · w
    parallel_sgemm(CblasNoTrans, CblasNoTrans, N, rows, in_rows, in, in_rows, w, rows, 0.0f, images, rows);
    return;
  }
  const int groups = (N + nb - 1) / nb;  // disjoint outputs: on the threads, as in gemm_forward
#pragma omp parallel for schedule(static) if (groups > 1)
  for (int group = 0; group < groups; ++group) {
    Scratch& sc = scratch();
    const int n0 = group * nb, b = std::min(nb, N - n0);
    float* cols = grow(sc.cols, size_t(rows) * nb * PQ);
    const float* src = group_as_matrix(sc, in, n0, b, nb, in_rows, PQ);
    parallel_sgemm(CblasTrans, CblasNoTrans, rows, b * PQ, in_rows, w, rows, src, b * PQ, 0.0f, cols, b * PQ);
    col2im(images + size_t(n0) * g.image_size(), cols, b, g);
  }
}

// dw (in_rows × g.rows()) += in · im2col(images)ᵀ, in N × in_rows × positions. Each group adds its
// product onto dw (beta 1), groups in batch order.
// Backward-weight's groups all add onto dw, so they are dealt to two fixed lanes (groups 0, 2, 4, … onto
// dw itself, groups 1, 3, 5, … onto a zeroed partial, each lane in group order) and the partial is added
// to dw at the end: the sums depend only on the shapes. At 2 threads the lanes run side by side (each
// group on its thread alone: no barriers per group, which on a loaded machine waited for descheduled
// threads); at 1 thread or more than 2 they run one after the other with every phase spread over the
// threads. Same arithmetic either way.
constexpr int kFilterLanes = 2;
void gemm_filter(float* dw, const float* in, const float* images, int N, int in_rows, const ColumnGeometry& g) {
  const int nb = chunk_images(N, g, in_rows), PQ = g.positions(), rows = g.rows();
  SingleThreadedBlas one_thread;
  if (kernel_covers_image(g)) {  // dw (in_rows × rows) += inᵀ (in_rows × N) · images (N × rows)
    parallel_sgemm(CblasTrans, CblasNoTrans, in_rows, rows, N, in, in_rows, images, rows, 1.0f, dw, rows);
    return;
  }
  const int groups = (N + nb - 1) / nb;
  const size_t dw_size = size_t(in_rows) * rows;
  float* partial = nullptr;
  if (groups > 1) {
    partial = grow(scratch().partial, dw_size);
    std::fill(partial, partial + dw_size, 0.0f);
  }
  auto lane = [&](int l) {
    Scratch& sc = scratch();
    float* target = l == 0 ? dw : partial;
    for (int group = l; group < groups; group += kFilterLanes) {
      const int n0 = group * nb, b = std::min(nb, N - n0);
      float* cols = grow(sc.cols, size_t(rows) * nb * PQ);
      const float* src = group_as_matrix(sc, in, n0, b, nb, in_rows, PQ);
      im2col(cols, padded_scratch(sc, g, nb), grow_offsets(sc.offsets, PQ),
             images + size_t(n0) * g.image_size(), b, g);
      parallel_sgemm(CblasNoTrans, CblasTrans, in_rows, rows, b * PQ, src, b * PQ, cols, b * PQ, 1.0f, target, rows);
    }
  };
  const int lanes = std::min(groups, kFilterLanes);
  if (lanes == kFilterLanes && omp_get_max_threads() == kFilterLanes && !omp_in_parallel()) {
#pragma omp parallel for schedule(static) num_threads(kFilterLanes)
    for (int l = 0; l < kFilterLanes; ++l) lane(l);
  } else {
    for (int l = 0; l < lanes; ++l) lane(l);
  }
  if (groups > 1) {
#pragma omp parallel for schedule(static) if (dw_size > size_t(kParallelElements))
    for (size_t i = 0; i < dw_size; ++i) dw[i] += partial[i];
  }
}

}  // namespace

size_t set_chunk_budget_floats(size_t floats) {
  const size_t previous = chunk_budget_override;
  chunk_budget_override = floats;
  return previous;
}

void conv2d_forward(float* y, const float* x, const float* w, const ConvShape& s) {
  gemm_forward(y, x, w, s.N, s.K, conv_geometry(s));
}
void conv2d_backward_data(float* dx, const float* dy, const float* w, const ConvShape& s) {
  gemm_adjoint(dx, dy, w, s.N, s.K, conv_geometry(s));
}
void conv2d_backward_filter(float* dw, const float* dy, const float* x, const ConvShape& s) {
  gemm_filter(dw, dy, x, s.N, s.K, conv_geometry(s));
}

void conv_transpose2d_forward(float* y, const float* x, const float* w, const ConvShape& s) {
  gemm_adjoint(y, x, w, s.N, s.C, transpose_geometry(s));
}
void conv_transpose2d_backward_data(float* dx, const float* dy, const float* w, const ConvShape& s) {
  gemm_forward(dx, dy, w, s.N, s.C, transpose_geometry(s));
}
void conv_transpose2d_backward_filter(float* dw, const float* dy, const float* x, const ConvShape& s) {
  gemm_filter(dw, x, dy, s.N, s.C, transpose_geometry(s));
}

}  // namespace ds::cpu_fast
