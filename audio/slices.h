// Cutting a decoded signal into fixed-length slices, and the loudness measure that drops silent ones.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace ds {

// One slice of a signal: samples [start, start + length). length < slice_len only for a padded tail,
// whose remaining slice_len − length samples are zeros (see copy_slice_padded).
struct SliceRef {
  int64_t start = 0;
  int64_t length = 0;
};

// Slices of slice_len samples every hop samples (hop < slice_len overlaps, hop > slice_len skips).
// Every slice that fits whole is returned. If pad_tail and samples past the last whole slice remain,
// the next slice (which runs past the end) is added too, shorter, to be zero-padded; later partial
// slices would add no new samples, so there is at most one.
// Throws std::invalid_argument unless slice_len > 0, hop > 0, n_samples >= 0.
std::vector<SliceRef> cut_slices(int64_t n_samples, int64_t slice_len, int64_t hop, bool pad_tail);

// out[slice_len] = signal[ref.start .. ref.start + ref.length) followed by zeros.
void copy_slice_padded(float* out, const float* signal, const SliceRef& ref, int64_t slice_len);

// 20·log10(rms(x)) in dBFS (a full-scale sine is −3.01 dB); −infinity for silence or n == 0.
double rms_db(const float* x, int64_t n);

// cut_slices() on a signal that arrives in blocks: push() the samples as they come, finish() at the
// end, and each slice is handed to emit(ref, samples) as soon as it is complete (samples: slice_len
// values, a padded tail's zeros included). The slices, their order and their samples equal
// cut_slices() + copy_slice_padded() on the whole signal; only about one slice is held.
class StreamSlicer {
 public:
  using Emit = std::function<void(const SliceRef& ref, const float* samples)>;
  StreamSlicer(int64_t slice_len, int64_t hop, bool pad_tail);  // throws like cut_slices
  void push(const float* x, size_t n, const Emit& emit);
  void finish(const Emit& emit);
  int64_t samples_seen() const { return seen_; }
  int64_t slices_emitted() const { return emitted_; }

 private:
  void compact();
  int64_t slice_len_, hop_;
  bool pad_tail_;
  std::vector<float> buf_;   // samples [buf_start_, buf_start_ + buf_.size())
  int64_t buf_start_ = 0, seen_ = 0, next_ = 0, covered_end_ = 0, emitted_ = 0;
};

}  // namespace ds
