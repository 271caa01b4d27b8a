#!/usr/bin/env bash
# Installs what darkstar needs from Debian's packages (as root; skipped when already there) and
# builds it into ./build. Used by the README's commands, .ci/run and new users alike.
#   DARKSTAR_CUDA_ARCHS  CUDA architectures (default: CMake's list in CMakeLists.txt)
#   DARKSTAR_BUILD_DIR   build folder (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make pkg-config doctest-dev libstb-dev nlohmann-json3-dev libcli11-dev
          libsndfile1-dev libsoxr-dev libopenblas-dev libkissfft-dev zlib1g-dev
          dataset-fashion-mnist sound-theme-freedesktop fretsonfire-songs-sectoid)
packages+=(libfftw3-dev python3-torch python3-torchaudio python3-soundfile)  # issue 9: CPU STFT (FFTW); bench/side_by_side.py
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
args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release)
[ -n "${DARKSTAR_CUDA_ARCHS:-}" ] && args+=("-DCMAKE_CUDA_ARCHITECTURES=${DARKSTAR_CUDA_ARCHS}")
cmake "${args[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
