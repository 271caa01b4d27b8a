// ds::Philox: host draws from the Philox4x32-10 streams of kernels/philox.h.
#include "engine/core/rng.h"

#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

namespace ds {

Philox::Philox(uint64_t seed, uint32_t stream, uint64_t offset) {
  state_.seed = seed;
  state_.stream = stream;
  state_.offset = offset;
}

void Philox::restore(const PhiloxState& state) {
  const bool lane_ok = state.lane < 4 && (state.lane == 0) == (state.kind == PhiloxState::kNone) &&
                       state.kind <= PhiloxState::kNormals;
  if (!lane_ok)
    throw std::invalid_argument("Philox state: lane " + std::to_string(state.lane) + " with kind " +
                                std::to_string(state.kind) + " is impossible (expected lane 0..3, kind 0 iff lane 0)");
  state_ = state;
  cache_valid_ = false;
}

void Philox::align_to_tuple() {
  if (state_.lane > 0) {
    ++state_.offset;
    state_.lane = 0;
    state_.kind = PhiloxState::kNone;
    cache_valid_ = false;
  }
}

const PhiloxWords& Philox::current_words() {
  if (!cache_valid_) {
    words_ = philox_tuple(state_.seed, state_.stream, state_.offset);
    normals_ = normals_from_words(words_);
    cache_valid_ = true;
  }
  return words_;
}

PhiloxWords Philox::next_uint4() {
  align_to_tuple();
  const PhiloxWords bits = philox_tuple(state_.seed, state_.stream, state_.offset);
  ++state_.offset;
  cache_valid_ = false;
  return bits;
}

uint32_t Philox::next_uint32() {
  if (state_.kind != PhiloxState::kWords) align_to_tuple();
  const uint32_t bits = current_words().w[state_.lane];
  state_.kind = PhiloxState::kWords;
  if (++state_.lane == 4) {
    state_.lane = 0;
    state_.kind = PhiloxState::kNone;
    ++state_.offset;
    cache_valid_ = false;
  }
  return bits;
}

float Philox::uniform() { return uniform_closed_open(next_uint32()); }

uint32_t Philox::uniform_int(uint32_t bound) {
  if (bound == 0) throw std::invalid_argument("Philox::uniform_int: bound must be > 0");
  // [2^32 mod bound, 2^32) holds a whole number of copies of every residue.
  const uint32_t reject_below = (0u - bound) % bound;
  for (;;) {
    const uint32_t bits = next_uint32();
    if (bits >= reject_below) return bits % bound;
  }
}

float Philox::normal() {
  if (state_.kind != PhiloxState::kNormals) align_to_tuple();
  current_words();
  const float z = normals_.v[state_.lane];
  state_.kind = PhiloxState::kNormals;
  if (++state_.lane == 4) {
    state_.lane = 0;
    state_.kind = PhiloxState::kNone;
    ++state_.offset;
    cache_valid_ = false;
  }
  return z;
}

uint64_t Philox::take_tuples_for(int64_t n) {
  align_to_tuple();
  const uint64_t first = state_.offset;
  state_.offset += philox_tuples_for(n);
  cache_valid_ = false;
  return first;
}

void Philox::fill_uniform(float* out, int64_t n) {
  const uint64_t first = take_tuples_for(n);
  for (int64_t i = 0; i < n; i += 4) {
    const PhiloxWords bits = philox_tuple(state_.seed, state_.stream, first + static_cast<uint64_t>(i / 4));
    for (int64_t k = 0; k < 4 && i + k < n; ++k) out[i + k] = uniform_closed_open(bits.w[k]);
  }
}

void Philox::fill_normal(float* out, float mean, float stddev, int64_t n) {
  const uint64_t first = take_tuples_for(n);
  for (int64_t i = 0; i < n; i += 4) {
    const PhiloxFloats z =
        normals_from_words(philox_tuple(state_.seed, state_.stream, first + static_cast<uint64_t>(i / 4)));
    for (int64_t k = 0; k < 4 && i + k < n; ++k) out[i + k] = scale_normal(z.v[k], mean, stddev);
  }
}

std::vector<int64_t> Philox::permutation(int64_t n) {
  if (n < 0 || n >= (int64_t{1} << 32))
    throw std::invalid_argument("Philox::permutation: n = " + std::to_string(n) + ", expected 0 <= n < 2^32");
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = uniform_int(static_cast<uint32_t>(i + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

}  // namespace ds
