// The host side of darkstar's one random generator: ds::Philox, a position in a Philox4x32-10 stream
// (kernels/philox.h: key = seed, counter = (tuple, stream)), with the draws the engine needs and a
// state that checkpoints save and restore exactly.
//
// Position: `offset` is the tuple the next draw reads and `lane` how many of its four components are
// already used. Single draws (next_uint32, uniform, uniform_int, normal) use a tuple's components in
// order; a tuple serves one kind only (words or normals): switching kinds moves on to the next tuple,
// so a uniform and a normal never share bits. Bulk draws (next_uint4, fill_*, take_tuples_for)
// start at a tuple boundary, element i from component i % 4 of tuple offset + i / 4, exactly as the
// device kernels in kernels/rng.h, so the same (seed, stream, offset) gives the same numbers on both.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/philox.h"

namespace ds {

// Tuples used by a bulk draw of n elements.
inline uint64_t philox_tuples_for(int64_t n) { return n <= 0 ? 0 : static_cast<uint64_t>((n + 3) / 4); }

// Everything needed to resume a stream bit-exactly (what a checkpoint stores as "RNG counters").
struct PhiloxState {
  enum Kind : uint32_t { kNone = 0, kWords = 1, kNormals = 2 };
  uint64_t seed = 0;
  uint32_t stream = 0;
  uint64_t offset = 0;    // tuple the next draw reads
  uint32_t lane = 0;      // components of tuple `offset` already used, 0..3
  uint32_t kind = kNone;  // what the used components of tuple `offset` served (kNone iff lane == 0)
  bool operator==(const PhiloxState& o) const {
    return seed == o.seed && stream == o.stream && offset == o.offset && lane == o.lane && kind == o.kind;
  }
  bool operator!=(const PhiloxState& o) const { return !(*this == o); }
};

class Philox {
 public:
  Philox(uint64_t seed, uint32_t stream, uint64_t offset = 0);
  explicit Philox(const PhiloxState& state) { restore(state); }

  PhiloxState state() const { return state_; }
  // Throws std::invalid_argument for a state no Philox can be in (lane > 3, kind/lane mismatch).
  void restore(const PhiloxState& state);
  uint64_t seed() const { return state_.seed; }
  uint32_t stream() const { return state_.stream; }
  // Tuples consumed or started so far; the next bulk draw starts here.
  uint64_t tuples_used() const { return state_.offset + (state_.lane > 0 ? 1 : 0); }

  // The next whole tuple (skips the rest of a partly used one).
  PhiloxWords next_uint4();
  uint32_t next_uint32();
  // [0, 1), a multiple of 2^-24.
  float uniform();
  // Uniform on [0, bound), unbiased (rejection of the 2^32 mod bound lowest words). bound > 0.
  uint32_t uniform_int(uint32_t bound);
  // Standard normal (Box-Muller; the four normals of a tuple are handed out in order).
  float normal();

  // out[i] = uniform in [0, 1) (same values as kernels' uniform_fill at offset tuples_used()).
  void fill_uniform(float* out, int64_t n);
  // out[i] = mean + stddev * N(0, 1) (same values as kernels' normal_fill at offset tuples_used()).
  void fill_normal(float* out, float mean, float stddev, int64_t n);
  // Reserves the tuples of a device bulk draw of n elements: returns the offset to pass to
  // normal_fill/uniform_fill and moves past them, so host and device draws never overlap.
  uint64_t take_tuples_for(int64_t n);

  // A uniformly random permutation of 0..n-1 (Fisher-Yates with unbiased uniform_int); 0 <= n < 2^32.
  std::vector<int64_t> permutation(int64_t n);

 private:
  void align_to_tuple();
  const PhiloxWords& current_words();
  PhiloxState state_;
  // The words/normals of tuple state_.offset, valid while cache_valid_ (recomputed after restore).
  PhiloxWords words_{};
  PhiloxFloats normals_{};
  bool cache_valid_ = false;
};

}  // namespace ds
