// Slicing a signal and measuring a slice's loudness (see slices.h).
#include "audio/slices.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace ds {

std::vector<SliceRef> cut_slices(int64_t n_samples, int64_t slice_len, int64_t hop, bool pad_tail) {
  if (slice_len <= 0) throw std::invalid_argument("cut_slices: slice length must be > 0, got " + std::to_string(slice_len));
  if (hop <= 0) throw std::invalid_argument("cut_slices: hop must be > 0, got " + std::to_string(hop));
  if (n_samples < 0) throw std::invalid_argument("cut_slices: negative sample count " + std::to_string(n_samples));
  std::vector<SliceRef> slices;
  int64_t start = 0;
  for (; start + slice_len <= n_samples; start += hop) slices.push_back({start, slice_len});
  const int64_t covered_end = slices.empty() ? 0 : slices.back().start + slice_len;
  // With overlap the last whole slice may already reach the end; a padded copy of it adds nothing.
  if (pad_tail && start < n_samples && covered_end < n_samples) slices.push_back({start, n_samples - start});
  return slices;
}

void copy_slice_padded(float* out, const float* signal, const SliceRef& ref, int64_t slice_len) {
  const int64_t kept = std::min(ref.length, slice_len);
  std::copy(signal + ref.start, signal + ref.start + kept, out);
  std::fill(out + kept, out + slice_len, 0.0f);
}

double rms_db(const float* x, int64_t n) {
  double sum_sq = 0.0;  // double: a 10 s slice sums 220500 squares, float would lose ~3 digits
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  if (n <= 0 || sum_sq <= 0.0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(sum_sq / static_cast<double>(n));  // 20·log10(sqrt(m)) == 10·log10(m)
}

}  // namespace ds
