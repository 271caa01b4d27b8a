// `darkstar doctor`'s harness on the CPU (the CPU path as the side under test): every check must run
// and pass, every output written over NaN poison.
#include <doctest/doctest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "apps/doctor.h"

namespace {

std::string run_to_string(const std::function<bool(std::FILE*)>& run, bool* ok) {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  *ok = run(f);
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  return text;
}

}  // namespace

TEST_CASE("unit doctor: every check runs and passes with the CPU as the side under test, in both math modes") {
  for (const bool exact : {true, false}) {
    CAPTURE(exact);
    bool ok = false;
    int checks = 0;
    const std::string report =
        run_to_string([&](std::FILE* f) { return ds::run_doctor_checks(f, ds::Device::CPU, exact, &checks); }, &ok);
    INFO(report);
    CHECK(ok);
    CHECK(report.find("FAILED") == std::string::npos);
    CHECK(checks >= 50);
    for (const char* must : {"G's first layer 1x1 -> 4x4", "G's first layer 1x1 -> 4x16 (non-square start)",
                             "D's last layer 4x4 -> 1 (K = 1)", "D's last layer 4x16 -> 1 (K = 1)",
                             "backward filter (+=)", "batchnorm saved invstd", "gather_images_at", "gather_rows_at",
                             "all_finite", "mel image", "griffin-lim 2 iterations", "normal noise at a device step"})
      CHECK_MESSAGE(report.find(must) != std::string::npos, must);
  }
}

TEST_CASE("unit doctor: without a GPU the doctor says so and passes") {
  bool ok = false;
  const std::string report = run_to_string([](std::FILE* f) { return ds::run_doctor(f); }, &ok);
  CHECK(ok);
  if (report.find("GPU: none usable") == std::string::npos) {
    MESSAGE("a GPU is present: ", report);
    return;
  }
  CHECK(report.find("CUDA checks SKIPPED") != std::string::npos);
}
