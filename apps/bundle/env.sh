# darkstar bundle: finds the CUDA libraries the binaries link (share/cuda-sonames: cudart, cuBLAS,
# cuFFT, cuDNN 9) on this machine and puts their folders on LD_LIBRARY_PATH, after the bundle's lib/.
#   source darkstar-bundle/env.sh      (bash) sets LD_LIBRARY_PATH in this shell; prints what it found
#   bash darkstar-bundle/env.sh        only prints what it found and the export line to use
# Looks, in this order: $CUDA_HOME, $CUDNN_ROOT (and $CUDA_PATH, $CONDA_PREFIX); the loader's own path
# (LD_LIBRARY_PATH, ldconfig -p); /usr/local/cuda*/; the nvidia/*/lib folders of NVIDIA's Python
# wheels (site-packages of every python3 on PATH, then common places). Returns 1 if something is missing.

ds_env_main() {
  local bundle here
  here="${BASH_SOURCE[0]:-$0}"
  bundle="$(cd "$(dirname "$here")" && pwd)"
  local -a sonames=()
  if [ -f "$bundle/share/cuda-sonames" ]; then
    mapfile -t sonames < "$bundle/share/cuda-sonames"
  else
    sonames=(libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcufft.so.12 libcudnn.so.9)
  fi
  local cuda_major=""
  local s
  for s in "${sonames[@]}"; do case "$s" in libcudart.so.*) cuda_major="${s#libcudart.so.}" ;; esac; done

  # ---- candidate folders, in the documented order, each with where it came from ---------------
  local -a dirs=() whence=()
  ds_add() { local d="$1"; [ -d "$d" ] || return 0; d="$(cd "$d" && pwd -P)"; local i
             for i in "${dirs[@]}"; do [ "$i" = "$d" ] && return 0; done; dirs+=("$d"); whence+=("$2"); }
  local v d
  for v in CUDA_HOME CUDNN_ROOT CUDA_PATH CONDA_PREFIX; do
    [ -n "${!v:-}" ] || continue
    for d in "${!v}/lib64" "${!v}/lib" "${!v}"/targets/*-linux/lib; do ds_add "$d" "\$$v"; done
  done
  local IFS_save="$IFS"; IFS=:
  for d in ${LD_LIBRARY_PATH:-}; do [ -n "$d" ] && [ "$d" != "$bundle/lib" ] && ds_add "$d" "LD_LIBRARY_PATH"; done
  IFS="$IFS_save"
  # The loader's cache (ldconfig -p), this machine's architecture only: its folders holding one of
  # our sonames come next (found there, they need no LD_LIBRARY_PATH entry).
  local -A cache=()  # soname -> path
  local arch_tag="x86-64" line name path
  [ "$(uname -m)" = "aarch64" ] && arch_tag="AArch64"
  while read -r line; do
    case "$line" in *"$arch_tag"*"=>"*) ;; *) continue ;; esac
    name="${line%% *}"; path="${line##*=> }"
    [ -z "${cache[$name]:-}" ] && cache["$name"]="$path"
  done < <({ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null)
  for s in "${sonames[@]}"; do
    [ -n "${cache[$s]:-}" ] && ds_add "$(dirname "${cache[$s]}")" "loader cache (ldconfig -p)"
  done
  for d in /usr/local/cuda /usr/local/cuda-*; do
    for v in "$d/lib64" "$d/lib" "$d"/targets/*-linux/lib; do ds_add "$v" "/usr/local/cuda*"; done
  done
  local -a sites=()
  local py
  for py in python3 python; do
    command -v "$py" >/dev/null || continue
    mapfile -t -O "${#sites[@]}" sites < <("$py" -c 'import site, sys
print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith("-packages")]))' 2>/dev/null)
  done
  mapfile -t sites < <(printf '%s\n' "${sites[@]}" | awk 'NF && !seen[$0]++')
  for d in "${sites[@]}"; do for v in "$d"/nvidia/*/lib; do ds_add "$v" "python wheels ($d)"; done; done
  for d in "${HOME:-/nonexistent}"/.local/lib/python3*/site-packages /usr/local/lib/python3*/dist-packages \
           /usr/local/lib/python3*/site-packages /usr/lib/python3*/dist-packages /opt/conda/lib/python3*/site-packages \
           "${HOME:-/nonexistent}"/{miniconda3,miniforge3,anaconda3,mambaforge}/lib/python3*/site-packages \
           "${HOME:-/nonexistent}"/{miniconda3,miniforge3,anaconda3,mambaforge}/envs/*/lib/python3*/site-packages \
           "${HOME:-/nonexistent}"/{.venv,venv,env}/lib/python3*/site-packages "${HOME:-/nonexistent}"/*/{.venv,venv}/lib/python3*/site-packages \
           /opt/*/lib/python3*/site-packages "${VIRTUAL_ENV:-/nonexistent}"/lib/python3*/site-packages; do
    for v in "$d"/nvidia/*/lib; do ds_add "$v" "python wheels ($d)"; done
  done

  # ---- find each soname -----------------------------------------------------------------------
  DS_ENV_REPORT=""
  DS_ENV_MISSING=0
  local -a add=()
  local found where i real ver
  ds_version_of() {  # a version from the real file's name (libcudart.so.13.0.96 -> 13.0.96)
    local r; r="$(readlink -f "$1")"; r="${r##*/}"
    case "$r" in *.so.*.*) echo "${r#*.so.}" ;; *) echo "(version not in its file name)" ;; esac
  }
  for s in "${sonames[@]}"; do
    found=""; where=""
    for i in "${!dirs[@]}"; do
      if [ -e "${dirs[$i]}/$s" ]; then found="${dirs[$i]}/$s"; where="${whence[$i]}"; break; fi
    done
    if [ -z "$found" ]; then
      DS_ENV_MISSING=$((DS_ENV_MISSING + 1))
      local stem="${s%.so.*}" other=""
      for i in "${!dirs[@]}"; do
        for v in "${dirs[$i]}/$stem".so.[0-9]*; do [ -e "$v" ] && { other="$v"; break 2; }; done
      done
      [ -z "$other" ] && for v in "${!cache[@]}"; do case "$v" in "$stem".so.[0-9]*) other="${cache[$v]}"; break ;; esac; done
      DS_ENV_REPORT+="MISSING $s: not in \$CUDA_HOME/\$CUDNN_ROOT, the loader's path (LD_LIBRARY_PATH, ldconfig -p), /usr/local/cuda*/ or NVIDIA's Python wheels (nvidia/*/lib of: ${sites[*]:-no python3 on PATH} and the usual places)"$'\n'
      if [ -n "$other" ]; then
        case "$s" in
          libcudnn.so.*) DS_ENV_REPORT+="  found $other instead: this bundle needs cuDNN ${s#libcudnn.so.} (e.g. pip install nvidia-cudnn-cu${cuda_major:-13})"$'\n' ;;
          *) DS_ENV_REPORT+="  found only $other: that is another CUDA major version (CUDA 12 libraries, e.g. PyTorch's cu12 wheels, have libcudart.so.12, libcublas.so.12, libcufft.so.11); this bundle was built with CUDA ${cuda_major:-13} and needs $s: install a CUDA ${cuda_major:-13} runtime (a cu${cuda_major:-13} PyTorch, or pip install nvidia-cuda-runtime nvidia-cublas nvidia-cufft nvidia-cudnn-cu${cuda_major:-13}) and point CUDA_HOME at it if it is elsewhere"$'\n' ;;
        esac
      fi
      continue
    fi
    ver="$(ds_version_of "$found")"
    DS_ENV_REPORT+="found   $s $ver in $(dirname "$found") ($where)"$'\n'
    [ "$where" = "loader cache (ldconfig -p)" ] || add+=("$(dirname "$found")")
    case "$s" in
      libcudnn.so.*)  # cuDNN 9 dlopens its sub-libraries from its own folder (its RUNPATH is $ORIGIN)
        local sub missing_sub=""
        for sub in graph engines_precompiled heuristic ops cnn; do
          [ -e "$(dirname "$found")/libcudnn_$sub.so.${s#libcudnn.so.}" ] || missing_sub+=" libcudnn_$sub.so.${s#libcudnn.so.}"
        done
        if [ -n "$missing_sub" ]; then
          DS_ENV_MISSING=$((DS_ENV_MISSING + 1))
          DS_ENV_REPORT+="MISSING cuDNN's sub-libraries beside $found:$missing_sub (cuDNN 9 loads them from its own folder)"$'\n'
        fi ;;
    esac
  done
  # cuDNN's runtime-compiled engines use NVRTC (loaded on demand); not fatal without it.
  local nvrtc="libnvrtc.so.${cuda_major:-13}" nv=""
  for i in "${!dirs[@]}"; do [ -e "${dirs[$i]}/$nvrtc" ] && { nv="${dirs[$i]}"; break; }; done
  [ -z "$nv" ] && [ -n "${cache[$nvrtc]:-}" ] && nv="$(dirname "${cache[$nvrtc]}")"
  if [ -n "$nv" ]; then DS_ENV_REPORT+="found   $nvrtc $(ds_version_of "$nv/$nvrtc") in $nv (optional: cuDNN's runtime-compiled engines)"$'\n'; add+=("$nv")
  else DS_ENV_REPORT+="note    $nvrtc not found (optional: cuDNN can only use its precompiled engines)"$'\n'; fi
  # cuFFT loads nvJitLink on demand to link the mel framing's LTO load callback (issue 9); without it
  # the GPU mel says so in one line and uses its framing kernel. Not fatal either.
  local jitlink="libnvJitLink.so.${cuda_major:-13}" jl=""
  for i in "${!dirs[@]}"; do [ -e "${dirs[$i]}/$jitlink" ] && { jl="${dirs[$i]}"; break; }; done
  [ -z "$jl" ] && [ -n "${cache[$jitlink]:-}" ] && jl="$(dirname "${cache[$jitlink]}")"
  if [ -n "$jl" ]; then DS_ENV_REPORT+="found   $jitlink $(ds_version_of "$jl/$jitlink") in $jl (optional: cuFFT's LTO callback, the fused mel framing)"$'\n'; add+=("$jl")
  else DS_ENV_REPORT+="note    $jitlink not found (optional: the GPU mel frames with its kernel instead of cuFFT's load callback)"$'\n'; fi

  # ---- the driver -----------------------------------------------------------------------------
  local libcuda="${cache[libcuda.so.1]:-}" drv="" need=""
  case "${cuda_major:-13}" in 13) need=580 ;; 12) need=525 ;; esac
  if [ -z "$libcuda" ]; then
    for i in "${!dirs[@]}"; do [ -e "${dirs[$i]}/libcuda.so.1" ] && { libcuda="${dirs[$i]}/libcuda.so.1"; break; }; done
  fi
  if command -v nvidia-smi >/dev/null; then
    drv="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')"
  fi
  if [ -z "$drv" ] && [ -r /proc/driver/nvidia/version ]; then
    drv="$(sed -n 's/.*Kernel Module[^0-9]*\([0-9][0-9.]*\).*/\1/p' /proc/driver/nvidia/version | head -1)"
  fi
  DS_ENV_DRIVER="$drv"
  if [ -z "$libcuda" ] && [ -z "$drv" ]; then
    DS_ENV_REPORT+="driver  none: no libcuda.so.1 and no nvidia-smi (no NVIDIA driver: CPU only)"$'\n'
  elif [ -n "$drv" ] && [ -n "$need" ] && [ "${drv%%.*}" -lt "$need" ] 2>/dev/null; then
    DS_ENV_MISSING=$((DS_ENV_MISSING + 1))
    DS_ENV_REPORT+="OLD     driver $drv is too old for CUDA ${cuda_major}: it needs driver $need or newer (this bundle's libcudart.so.${cuda_major} will report 'insufficient driver'); update the driver or use a bundle built with an older CUDA"$'\n'
  else
    DS_ENV_REPORT+="driver  ${drv:-version unknown (no nvidia-smi)}${libcuda:+, $libcuda}${need:+ (CUDA ${cuda_major} needs $need or newer)}"$'\n'
  fi

  # ---- LD_LIBRARY_PATH: the bundle first, so its libstdc++ & co. win over a CUDA folder's copies --
  local new="$bundle/lib"
  for d in "${add[@]}"; do case ":$new:" in *":$d:"*) ;; *) new+=":$d" ;; esac; done
  IFS=:
  for d in ${LD_LIBRARY_PATH:-}; do [ -n "$d" ] && case ":$new:" in *":$d:"*) ;; *) new+=":$d" ;; esac; done
  IFS="$IFS_save"
  DS_ENV_LD_LIBRARY_PATH="$new"
  unset -f ds_add ds_version_of
  [ "$DS_ENV_MISSING" -eq 0 ]
}

if [ "${BASH_SOURCE[0]:-$0}" = "$0" ]; then
  # executed: report only
  ds_env_main; rc=$?
  printf '%s' "$DS_ENV_REPORT"
  echo "export LD_LIBRARY_PATH=\"$DS_ENV_LD_LIBRARY_PATH\""
  exit "$rc"
else
  ds_env_main; ds_env_rc=$?
  export LD_LIBRARY_PATH="$DS_ENV_LD_LIBRARY_PATH"
  [ -n "${DS_ENV_QUIET:-}" ] || printf '%s' "$DS_ENV_REPORT"
  unset -f ds_env_main
  return "$ds_env_rc" 2>/dev/null || true
fi
