// The activation selects of the fast CPU ops (elementwise_cpu_fast.cpp, batchnorm_cpu_fast.cpp): one
// copy of the expressions, each the reference's (engine/nn/cpu) bit for bit, so NaN, ±0 and the branch
// conditions come out identical. The products are computed unconditionally and then selected.
//
// Include it LAST, after every other header: it also switches the rest of the including file to
// no-trapping-math. The selects compare floats; with GCC's default -ftrapping-math an ordered compare
// may raise "invalid" on a NaN, so the compiler keeps a branch per element and no vector loop
// (-fopt-info-vec: "control flow in loop"). Nothing in those files reads the floating-point exception
// flags, and no-trapping-math changes no value (it is not -ffast-math: no reassociation, NaN and signed
// zeros kept). `#pragma GCC optimize` holds from here to the end of the translation unit, which is why
// this is a header of its own and not part of a header the rest of the engine includes.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

namespace ds::cpu_fast::select {

inline float relu(float x) { return x < 0.0f ? 0.0f : x; }
inline float leaky_relu(float x, float slope) {
  const float scaled = x * slope;
  return x < 0.0f ? scaled : x;
}
inline float relu_grad(float dy, float y) { return y > 0.0f ? dy : 0.0f; }
inline float leaky_relu_grad(float dy, float y, float slope) {
  const float scaled = dy * slope;
  return y > 0.0f ? dy : scaled;
}

}  // namespace ds::cpu_fast::select
