#!/usr/bin/env bash
# The whole test suite (every ctest entry, whatever the suite holds) under AddressSanitizer +
# UndefinedBehaviorSanitizer, in its own build folder so it never disturbs build/ or build-tests/.
# CI runs it after the README's test command (.ci/run), which has installed the packages.
# Host C++ only: nvcc compiles the device code and the .cu host stubs as usual (CMAKE_CUDA_FLAGS
# untouched); kernels/emu runs every kernel as instrumented host code and tells ASan about its fiber
# switches. Any sanitizer report fails the run: UB is fatal (no recovery), and every ASan/LSan/UBSan
# report of any process (test binaries, the `darkstar` runs of the e2e tests, forked children) is also
# written under $build/sanitizer-reports, which must be empty at the end, so a report in a child whose
# failure a test expected still fails the run.
#   DARKSTAR_ASAN_BUILD_DIR  build folder (default: build-asan)
#   DARKSTAR_CUDA_ARCHS      CUDA architectures (default: 75-real, one is enough: no GPU code runs)
#   DARKSTAR_JOBS            parallel compile and test jobs (default: nproc)
#   DARKSTAR_CTEST_ARGS      extra ctest arguments, e.g. "-R unit" to run a part
# Usage (also after a merge; re-running only rebuilds what changed): bash tests/run_sanitizers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build="${DARKSTAR_ASAN_BUILD_DIR:-build-asan}"
jobs="${DARKSTAR_JOBS:-$(nproc)}"
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
command -v nvcc >/dev/null || { echo "run_sanitizers: nvcc not found: install the CUDA toolkit (apps/setup.sh)"; exit 1; }
mkdir -p "$build"
build_abs=$(cd "$build" && pwd)
reports="$build_abs/sanitizer-reports"

# Runtime options, set before the build: doctest_discover_tests runs darkstar_tests at build time.
#  protect_shadow_gap=0  the CUDA driver maps memory at fixed addresses inside the range ASan keeps
#                        unmapped (its shadow gap); with the gap protected, CUDA initialisation fails
#                        on a machine with a GPU (NVIDIA's and ASan's documented advice).
#  detect_leaks=1        LeakSanitizer at every exit, suppressions (tests/sanitizer_leaks.supp) only
#                        for libraries we do not own.
#  handle_segv=0         kernels/emu's SIGSEGV handler reports fiber stack overflows (and a test checks
#                        that it does); ASan's own would take the fault first.
#  log_path              every ASan/LSan report into $reports (see the header).
export ASAN_OPTIONS="${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1:handle_segv=0:log_path=$reports/asan}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tests/sanitizer_leaks.supp:print_suppressions=0}"
export DS_SANITIZER_REPORT_DIR="$reports"  # UBSan's reports, through tests/sanitizer/report_hook.cpp
# ASan's redzones make frames larger: fibers get 4x the default 64 KiB stack.
export DS_EMU_STACK_KIB="${DS_EMU_STACK_KIB:-256}"

sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
start=$(date +%s)
rm -rf "$reports"
mkdir -p "$reports"
# UBSan's report hook, plain (uninstrumented) code linked into every executable of this build only.
hook="$build_abs/sanitizer_report_hook.o"
if [ ! -f "$hook" ] || [ tests/sanitizer/report_hook.cpp -nt "$hook" ]; then
  ${CXX:-c++} -O1 -c tests/sanitizer/report_hook.cpp -o "$hook"
fi
# -O1: ASan's recommended level; much faster to compile than -O3 and the tests stay quick enough.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="${DARKSTAR_CUDA_ARCHS:-75-real}" \
  -DCMAKE_CXX_FLAGS="$sanitize" -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined $hook" >/dev/null
# Every target, so every executable ctest lists exists (the `gpu` entry skips without a GPU).
cmake --build "$build" -j"$jobs"
built=$(date +%s)

# Every counted doctest entry must run a case (as in tests/run.sh).
cmake -DBUILD_DIR="$build" -P tests/check_counted.cmake
status=0
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 900 ${DARKSTAR_CTEST_ARGS:-} || status=$?
end=$(date +%s)
if [ -n "$(ls -A "$reports")" ]; then
  echo "run_sanitizers: sanitizer reports (in $reports):"
  for f in "$reports"/*; do
    echo "==== $f"
    cat "$f"
  done
  status=1
fi
echo "run_sanitizers: build $((built - start)) s, tests $((end - built)) s (${jobs} jobs)"
exit "$status"
