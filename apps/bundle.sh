#!/usr/bin/env bash
# Builds darkstar (Release, in its own build folder) and packs a relocatable bundle for GPU machines:
# bin/ (darkstar, darkstar-bench, darkstar-check, darkstar_gpu_tests), lib/ (every shared library they
# load that is neither glibc nor the NVIDIA driver/CUDA/cuDNN runtime, found with ldd, each with an
# $ORIGIN RUNPATH), real test data, licence files, env.sh and prove.sh. See apps/bundle/README.md.
#   apps/bundle.sh [--arch LIST] [--build-dir DIR] [--jobs N] OUT.tar.xz
set -euo pipefail
cd "$(dirname "$0")/.."
src="$PWD"

archs="75-real;80-real;86-real;89-real;90"  # the users' list (CMakeLists.txt's default)
build_dir="build-bundle"
jobs="$(nproc)"
out=""
while (($#)); do
  case "$1" in
    --arch) archs="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    -*) echo "bundle.sh: unknown option $1 (expected --arch, --build-dir, --jobs)" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "bundle.sh: one output file only (got $out and $1)" >&2; exit 2; }; out="$1"; shift ;;
  esac
done
[ -n "$out" ] || { echo "usage: apps/bundle.sh [--arch LIST] [--build-dir DIR] [--jobs N] OUT.tar.xz" >&2; exit 2; }
case "$out" in *.tar.xz) ;; *) echo "bundle.sh: $out: expected a .tar.xz name" >&2; exit 2 ;; esac
[ "$(realpath -m "$build_dir")" != "$src/build" ] || { echo "bundle.sh: never builds in ./build (pick another --build-dir)" >&2; exit 2; }
for tool in patchelf readelf ldd xz dpkg-query; do
  command -v "$tool" >/dev/null || { echo "bundle.sh: $tool not found (apps/setup.sh installs patchelf and binutils)" >&2; exit 1; }
done
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"

# ---- build ------------------------------------------------------------------------------------
t_build0=$(date +%s)
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$archs" >/dev/null
targets=(darkstar darkstar-bench darkstar-check darkstar_gpu_tests)
cmake --build "$build_dir" -j"$jobs" --target "${targets[@]}"
build_seconds=$(( $(date +%s) - t_build0 ))

# ---- stage ------------------------------------------------------------------------------------
stage="$(mktemp -d "${TMPDIR:-/tmp}/darkstar-bundle.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/darkstar-bundle"
mkdir -p "$root"/{bin,lib,data,licenses,share}
cp "$build_dir/darkstar" "$build_dir/darkstar-bench" "$build_dir/darkstar-check" \
   "$build_dir/tests/darkstar_gpu_tests" "$root/bin/"
cp apps/bundle/env.sh apps/bundle/prove.sh apps/bundle/README.md "$root/"
chmod +x "$root/env.sh" "$root/prove.sh"

# Libraries the target provides: glibc's own, the driver, CUDA and cuDNN (env.sh finds those).
is_system_lib() {
  case "$1" in
    linux-vdso.so*|ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|libutil.so*|\
    libmvec.so*|libanl.so*|libnsl.so*|libBrokenLocale.so*|libcrypt.so*) return 0 ;;
    libcuda.so*|libnvidia-*|libcudart.so*|libcublas*|libcufft*|libcudnn*|libnvrtc*|libnvJitLink*|libcurand*|\
    libcusolver*|libcusparse*|libnvblas*) return 0 ;;
  esac
  return 1
}

# ldd prints the whole closure (every library's dependencies too); copy each real file under its
# soname (Debian's alternatives, e.g. libopenblas.so.0 -> /etc/alternatives -> openblas-pthread/, are
# followed to the file itself).
declare -A origin=()
for exe in "$root"/bin/*; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    is_system_lib "$name" && continue
    [ -e "$path" ] || { echo "bundle.sh: $(basename "$exe") needs $name, which ldd cannot find" >&2; exit 1; }
    origin["$name"]="$path"
  done < <(ldd "$exe")
done
for name in "${!origin[@]}"; do
  cp -L "${origin[$name]}" "$root/lib/$name"
  chmod u+w "$root/lib/$name"
done

# RUNPATH: executables look in ../lib (then the usual CUDA install, so CPU commands run with nothing
# sourced where CUDA is installed there); libraries in their own folder, so they find each other.
for exe in "$root"/bin/*; do patchelf --set-rpath '$ORIGIN/../lib:/usr/local/cuda/lib64' "$exe"; done
for lib in "$root"/lib/*; do patchelf --set-rpath '$ORIGIN' "$lib"; done

# Every library must now resolve inside lib/ (or be one the target provides).
for f in "$root"/bin/* "$root"/lib/*; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    is_system_lib "$name" && continue
    path="$(realpath -s "$path")"  # bin/../lib/x -> lib/x
    case "$path" in "$root/lib/"*) ;; *) echo "bundle.sh: $f resolves $name to $path, not lib/" >&2; exit 1 ;; esac
  done < <(ldd "$f")
done

# ---- licences: the Debian package of every shipped library and data file ----------------------
declare -A packages=()
for name in "${!origin[@]}"; do
  real="$(readlink -f "${origin[$name]}")"
  pkg="$(dpkg-query -S "$real" 2>/dev/null | head -1 | cut -d: -f1)" || true
  [ -n "$pkg" ] || pkg="$(dpkg-query -S "${origin[$name]}" 2>/dev/null | head -1 | cut -d: -f1)" || true
  [ -n "$pkg" ] || { echo "bundle.sh: no Debian package owns ${origin[$name]}: cannot ship its licence" >&2; exit 1; }
  packages["$pkg"]="${packages[$pkg]:-} $name"
done
packages["fretsonfire-songs-sectoid"]=" data/music/song.ogg"
packages["dataset-fashion-mnist"]=" data/fashion-mnist-300-images-idx3-ubyte.gz"
{
  echo "Third-party files in this bundle, by Debian package (licence texts in licenses/PACKAGE.copyright)."
  echo
  for pkg in $(printf '%s\n' "${!packages[@]}" | sort); do
    ver="$(dpkg-query -W -f='${Version}' "$pkg")"
    echo "$pkg $ver:${packages[$pkg]}"
    doc="/usr/share/doc/$pkg/copyright"
    [ -f "$doc" ] || doc="/usr/share/doc/${pkg%%:*}/copyright"
    [ -f "$doc" ] || { echo "bundle.sh: $doc missing: cannot ship $pkg's licence" >&2; exit 1; }
    cp "$doc" "$root/licenses/$pkg.copyright"
  done
} > "$root/licenses/PACKAGES.txt"

# ---- test data: one short piece of real music, 300 Fashion-MNIST images as IDX ----------------
mkdir -p "$root/data/music"
song="/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg"
[ -f "$song" ] || { echo "bundle.sh: $song missing (apps/setup.sh installs fretsonfire-songs-sectoid)" >&2; exit 1; }
cp "$song" "$root/data/music/song.ogg"
idx="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
[ -f "$idx" ] || { echo "bundle.sh: $idx missing (apps/setup.sh installs dataset-fashion-mnist)" >&2; exit 1; }
n_images=300
header="$(printf '%08x' "$n_images" | sed 's/../\\x&/g')"  # big-endian count, as printf escapes
{ printf '\x00\x00\x08\x03'; printf "$header"; printf '\x00\x00\x00\x1c\x00\x00\x00\x1c'
  (zcat "$idx" || true) | head -c $((16 + n_images * 28 * 28)) | tail -c +17; } |
  gzip -9n > "$root/data/fashion-mnist-300-images-idx3-ubyte.gz"

# ---- what the target must provide -------------------------------------------------------------
# The oldest glibc: the highest GLIBC_x.y symbol version any shipped file asks for.
glibc_needed="$(for f in "$root"/bin/* "$root"/lib/*; do readelf -V --wide "$f"; done |
  grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
echo "$glibc_needed" > "$root/share/glibc-required"
# The CUDA sonames the binaries link (env.sh looks for exactly these).
for exe in "$root"/bin/*; do readelf -d "$exe"; done | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' |
  while read -r so; do case "$so" in libcudart.so*|libcublas*|libcufft*|libcudnn*) echo "$so" ;; esac; done |
  sort -u > "$root/share/cuda-sonames"
sed -n 's/^libcublas\.so\./libcublasLt.so./p' "$root/share/cuda-sonames" >> "$root/share/cuda-sonames"  # cuBLAS's own need
cuda_version="$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
cudnn_header="$(find /usr/include /usr/local/cuda/include /usr/local/cuda*/targets/*/include -name cudnn_version.h 2>/dev/null | head -1)"
cudnn_version="$(awk '/define CUDNN_MAJOR/{a=$3}/define CUDNN_MINOR/{b=$3}/define CUDNN_PATCHLEVEL/{c=$3}END{print a"."b"."c}' "$cudnn_header")"
{
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(. /etc/os-release; echo "$PRETTY_NAME") in ${build_seconds} s with $jobs jobs"
  echo "cuda_architectures $archs"
  echo "cuda_toolkit $cuda_version"
  echo "cudnn_built_against $cudnn_version"
  echo "glibc_required $glibc_needed"
  echo "cuda_sonames $(tr '\n' ' ' < "$root/share/cuda-sonames")"
} > "$root/share/BUILD_INFO"

# ---- pack -------------------------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
tar -C "$stage" --owner=0 --group=0 --sort=name -cf - darkstar-bundle | xz -T"$jobs" -6 > "$out.tmp"
mv "$out.tmp" "$out"
size_mb="$(awk -v b="$(stat -c %s "$out")" 'BEGIN{printf "%.1f", b / 1e6}')"
echo "bundle.sh: wrote $out: ${size_mb} MB (architectures $archs; built in ${build_seconds} s with $jobs jobs; needs glibc >= $glibc_needed and $(tr '\n' ' ' < "$root/share/cuda-sonames"))"
