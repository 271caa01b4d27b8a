// The shared comparison rules of engine/core/compare.h (used by `darkstar doctor` and the gpu suite): a
// poisoned or accumulated output fails, and Adam weights are judged by their gradients' difference.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/core/compare.h"

TEST_CASE("unit compare: max_normalised_error fails poisoned, accumulated and mis-sized results") {
  const std::vector<float> want{1.f, -2.f, 4.f};
  CHECK(ds::max_normalised_error(want, want, 0.0) == 0.0);
  CHECK(ds::max_normalised_error({1.f, -2.f, 4.5f}, want, 0.0) == doctest::Approx(0.125));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isinf(ds::max_normalised_error({1.f, nan, 4.f}, want, 0.0)));  // an unwritten poisoned element
  // An op that accumulated onto a NaN-poisoned output instead of overwriting it gives NaN: fails too.
  CHECK(!(ds::max_normalised_error({nan + 1.f, -2.f, 4.f}, want, 0.0) <= 1e-4));
  CHECK(std::isinf(ds::max_normalised_error({1.f, -2.f}, want, 0.0)));
  // floor 1: small outputs judged absolutely.
  CHECK(ds::max_normalised_error({0.001f}, {0.0005f}, 1.0) == doctest::Approx(0.0005).epsilon(1e-3));
}

TEST_CASE("unit compare: Adam weights are judged by what each element's gradient difference explains") {
  const double lr = 2e-4;
  const std::vector<float> w{0.1f, -0.2f, 0.3f, 0.05f};
  const std::vector<float> g{1.f, -0.5f, 1e-7f, 0.25f};
  // Identical: passes, no sign flips.
  ds::AdamWeightComparison same = ds::compare_weights_after_adam(w, w, g, g, lr);
  CHECK(same.ok());
  CHECK(same.sign_flips == 0);
  CHECK(same.compared == 4);
  // A near-zero gradient rounded to the other sign moves its weight by 2·lr (step 1: lr·sign(g)): allowed.
  std::vector<float> w_flip = w, g_flip = g;
  g_flip[2] = -2e-7f;
  w_flip[2] = static_cast<float>(w[2] + 2 * lr);
  ds::AdamWeightComparison flip = ds::compare_weights_after_adam(w_flip, w, g_flip, g, lr);
  CHECK(flip.ok());
  CHECK(flip.sign_flips == 1);
  // The same 2·lr where the gradients agree is a wrong update: fails, and names the element.
  std::vector<float> w_bad = w;
  w_bad[0] = static_cast<float>(w[0] + 2 * lr);
  ds::AdamWeightComparison bad = ds::compare_weights_after_adam(w_bad, w, g, g, lr);
  CHECK(!bad.ok());
  CHECK(bad.worst_index == 0);
  // A 10% gradient difference explains at most 0.05·lr + 0.25·lr: 0.2·lr passes, 0.5·lr does not.
  std::vector<float> g_off = g;
  g_off[1] = -0.55f;
  std::vector<float> w_small = w, w_large = w;
  w_small[1] = static_cast<float>(w[1] + 0.2 * lr);
  w_large[1] = static_cast<float>(w[1] + 0.5 * lr);
  CHECK(ds::compare_weights_after_adam(w_small, w, g_off, g, lr).ok());
  CHECK(!ds::compare_weights_after_adam(w_large, w, g_off, g, lr).ok());
  // NaN weights and mis-sized inputs fail.
  std::vector<float> w_nan = w;
  w_nan[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK(!ds::compare_weights_after_adam(w_nan, w, g, g, lr).ok());
  CHECK(!ds::compare_weights_after_adam({0.1f}, w, g, g, lr).ok());
}
