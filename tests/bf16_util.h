// Host-side bf16 array conversions shared by the emulated (test_emu_bf16) and GPU (test_gpu_bf16) tests.
#pragma once
#include <vector>

#include "kernels/bf16.h"

namespace ds::test {

inline std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = float_to_bf16(v[i]);
  return out;
}
inline std::vector<float> to_float(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_float(v[i]);
  return out;
}

}  // namespace ds::test
