// `darkstar doctor`: what this machine can run, and on a GPU every CUDA op checked against the CPU
// implementation on random inputs, with every written output NaN-poisoned first (so an op that leaves
// elements unwritten or accumulates where it must overwrite fails), in exact (FMA-only) and in the
// default (TF32) math that training uses.
#pragma once
#include <cstdio>

#include "engine/core/tensor.h"

namespace ds {
// Prints a report to `out`; returns false if any check failed (true when there is no GPU to check).
bool run_doctor(std::FILE* out);

// The checks alone, with `device` as the implementation under test and the CPU path as the reference
// (device = CPU runs the whole harness against itself: how it is tested without a GPU). exact_math
// selects the math mode on CUDA and the tolerances of the library convolutions. Returns false if any
// check failed; `checks_run` (if given) gets the number of checks.
bool run_doctor_checks(std::FILE* out, Device device, bool exact_math, int* checks_run = nullptr);
}  // namespace ds
