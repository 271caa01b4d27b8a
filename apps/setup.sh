#!/usr/bin/env bash
# Installs what darkstar needs from Debian's packages (as root; skipped when already there) and
# builds it into ./build. Used by the README's commands, .ci/run and new users alike.
#   DARKSTAR_CUDA_ARCHS  CUDA architectures (default: the users' list below, passed on every
#                        configure so a list cached by an earlier configure never lingers)
#   DARKSTAR_BUILD_DIR   build folder (default: build)
#   DARKSTAR_BUILD_TARGETS  targets to build (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make pkg-config doctest-dev libstb-dev nlohmann-json3-dev libcli11-dev
          libsndfile1-dev libsoxr-dev libopenblas-dev libkissfft-dev zlib1g-dev
          dataset-fashion-mnist sound-theme-freedesktop fretsonfire-songs-sectoid)
packages+=(chromium-headless-shell)  # issue 10: the report e2e test loads RUN/report.html in a headless browser (98 MB download, 301 MB installed)
packages+=(patchelf binutils xz-utils)  # issue 8: apps/bundle.sh sets RUNPATHs, reads ELF versions, packs .tar.xz
packages+=(libmpg123-dev lame ffmpeg)  # issue 6: MP3s decoded by libmpg123 to their end; the MP3 tests encode with lame/ffmpeg
packages+=(libfftw3-dev)  # issue 9: the CPU STFT of the mel path (FFTW)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
command -v nvcc >/dev/null || { echo "setup: nvcc not found: install the CUDA toolkit (12 or newer) with cuDNN 9"; exit 1; }

build="${DARKSTAR_BUILD_DIR:-build}"
# Real SASS for the common GPUs plus PTX of sm_90 for newer ones (CMakeLists.txt's default too).
archs="${DARKSTAR_CUDA_ARCHS:-75-real;80-real;86-real;89-real;90}"
args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=${archs}")
cmake "${args[@]}" >/dev/null
# DARKSTAR_BUILD_TARGETS (e.g. "darkstar"): build only those; the quickstarts need just the CLI, and
# the test suites are nearly half of a full build.
targets=()
for t in ${DARKSTAR_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j"$(nproc)" "${targets[@]}"
