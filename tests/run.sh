#!/usr/bin/env bash
# The README's test command: set up (packages + build, one CUDA architecture unless told otherwise)
# and run the whole suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
export DARKSTAR_CUDA_ARCHS="${DARKSTAR_CUDA_ARCHS:-75-real}"
bash apps/setup.sh
cd "${DARKSTAR_BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)" --timeout 900
