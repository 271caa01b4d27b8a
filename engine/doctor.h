// `darkstar doctor`: what this machine can run, and on a GPU every CUDA op checked against the CPU
// implementation on random inputs (the same comparisons as the `gpu` test suite, for a user).
#pragma once
#include <cstdio>

namespace ds {
// Prints a report to `out`; returns false if any check failed (true when there is no GPU to check).
bool run_doctor(std::FILE* out);
}  // namespace ds
