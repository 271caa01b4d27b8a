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

StreamSlicer::StreamSlicer(int64_t slice_len, int64_t hop, bool pad_tail)
    : slice_len_(slice_len), hop_(hop), pad_tail_(pad_tail) {
  cut_slices(0, slice_len, hop, pad_tail);  // the same checks
  buf_.reserve(static_cast<size_t>(2 * slice_len));
}

void StreamSlicer::push(const float* x, size_t n, const Emit& emit) {
  // Samples before next_ (a gap when hop > slice_len) are never needed.
  const int64_t skip = std::clamp<int64_t>(next_ - seen_, 0, static_cast<int64_t>(n));
  if (buf_.empty()) buf_start_ = seen_ + skip;
  buf_.insert(buf_.end(), x + skip, x + n);
  seen_ += static_cast<int64_t>(n);
  while (next_ + slice_len_ <= seen_) {
    emit(SliceRef{next_, slice_len_}, buf_.data() + (next_ - buf_start_));
    covered_end_ = next_ + slice_len_;
    next_ += hop_;
    ++emitted_;
    compact();
  }
}

void StreamSlicer::compact() {
  const int64_t drop = std::min<int64_t>(next_ - buf_start_, static_cast<int64_t>(buf_.size()));
  if (drop <= 0) return;
  // Moving the kept samples (< one slice) per slice keeps the whole linear in the signal's length.
  buf_.erase(buf_.begin(), buf_.begin() + drop);
  buf_start_ += drop;
}

void StreamSlicer::finish(const Emit& emit) {
  // cut_slices: a padded tail only if samples remain past the last whole slice.
  if (!(pad_tail_ && next_ < seen_ && covered_end_ < seen_)) return;
  std::vector<float> tail(static_cast<size_t>(slice_len_), 0.0f);
  const int64_t length = seen_ - next_;
  std::copy(buf_.begin() + (next_ - buf_start_), buf_.begin() + (next_ - buf_start_) + length, tail.begin());
  emit(SliceRef{next_, length}, tail.data());
  ++emitted_;
}

}  // namespace ds
