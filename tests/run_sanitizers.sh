#!/usr/bin/env bash
# The CPU test suite (doctest, through ctest) under AddressSanitizer + UndefinedBehaviorSanitizer, in
# its own build folder so it never disturbs build/. Host C++ only: nvcc's device code is built as usual
# (CMAKE_CUDA_FLAGS untouched); kernels/emu runs the kernels as instrumented host code and tells ASan
# about its fiber switches. Any sanitizer report fails the test it happens in (no recovery).
#   DARKSTAR_ASAN_BUILD_DIR  build folder (default: build-asan)
#   DARKSTAR_CUDA_ARCHS      CUDA architectures (default: 75-real, one is enough: no GPU code runs)
#   DARKSTAR_JOBS            parallel compile and test jobs (default: nproc)
#   DARKSTAR_CTEST_ARGS      extra ctest arguments, e.g. "-R unit" to run a part
# Usage (also after a merge; re-running only rebuilds what changed): bash tests/run_sanitizers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build="${DARKSTAR_ASAN_BUILD_DIR:-build-asan}"
jobs="${DARKSTAR_JOBS:-$(nproc)}"
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"

sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
start=$(date +%s)
# -O1: ASan's recommended level; much faster to compile than -O3 and the tests stay quick enough.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="${DARKSTAR_CUDA_ARCHS:-75-real}" \
  -DCMAKE_CXX_FLAGS="$sanitize" -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j"$jobs"
built=$(date +%s)

# protect_shadow_gap=0: the CUDA runtime maps memory where ASan's shadow gap would be (a documented
# ASan/CUDA clash); emu fibers run on mmap'd stacks ASan is told about, and its own SIGSEGV handler stays
# off so that kernels/emu's fiber overflow reports (and their tests) keep working.
export ASAN_OPTIONS="${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1:handle_segv=0:allow_user_segv_handler=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/tests/sanitizer_leaks.supp:print_suppressions=0}"
# ASan's redzones make frames larger: fibers get 4x the default 64 KiB stack.
export DS_EMU_STACK_KIB="${DS_EMU_STACK_KIB:-256}"
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 900 -E '^gpu$' ${DARKSTAR_CTEST_ARGS:-}
end=$(date +%s)
echo "run_sanitizers: build $((built - start)) s, tests $((end - built)) s (${jobs} jobs)"
