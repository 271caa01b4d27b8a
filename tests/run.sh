#!/usr/bin/env bash
# The README's test command: set up (packages + a build of its own) and run the whole suite through
# ctest. The tests build into ./build-tests with one CUDA architecture (CI's 75-real), never into the
# user's ./build, whose configure always gets the users' list (apps/setup.sh): running the tests
# first can no longer leave the quickstart a darkstar without kernels for the user's GPU.
#   DARKSTAR_TEST_BUILD_DIR   test build folder (default: build-tests)
#   DARKSTAR_TEST_CUDA_ARCHS  its CUDA architectures (default: 75-real)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${DARKSTAR_TEST_BUILD_DIR:-build-tests}"
DARKSTAR_BUILD_DIR="$build" DARKSTAR_CUDA_ARCHS="${DARKSTAR_TEST_CUDA_ARCHS:-75-real}" bash apps/setup.sh
# Every counted doctest entry must run a case (a `;` in a test name makes entries that run none).
cmake -DBUILD_DIR="$build" -P tests/check_counted.cmake
cd "$build"
ctest --output-on-failure -j"$(nproc)" --timeout 900
