// `darkstar doctor`'s CUDA checks inside the gpu suite, so the user-facing report and the suite cannot
// drift apart: every check must pass in exact and in default math, and the suite's exact mode is kept.
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/core/cuda_context.h"
#include "apps/doctor.h"

TEST_CASE("gpu doctor: every CUDA check passes in exact and in default (TF32) math") {
  REQUIRE(ds::CudaContext::get().exact_math());
  for (const bool exact : {true, false}) {
    CAPTURE(exact);
    int checks = 0;
    CHECK(ds::run_doctor_checks(stdout, ds::Device::CUDA, exact, &checks));
    CHECK(checks >= 50);
  }
  CHECK(ds::CudaContext::get().exact_math());  // restored for the rest of the suite
}
