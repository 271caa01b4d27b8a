#!/usr/bin/env bash
# darkstar bundle: prove.sh OUT — the GPU evidence in one run. Checks glibc, finds the CUDA libraries
# (env.sh), then, keeping going past failures: (1) device, driver and library facts; (2) darkstar doctor
# and the whole gpu test binary; (3) darkstar-bench; (4) end to end on the GPU (prepare-audio on GPU and
# CPU compared, a few hundred training steps of a mel and an image model, sample, listen, CPU vs GPU
# losses of the first steps); (5) OUT/report.md. Each step has a time budget (its hard limit; they add
# up to under 8 minutes). At most 8 files land in OUT, none over 16 MB. Exit 0: all passed; 1: a check
# failed; 77: no usable GPU (the CPU-side checks ran and passed; about 2 minutes on 2 cores).
set -uo pipefail

[ $# -eq 1 ] && [ "$1" != "-h" ] && [ "$1" != "--help" ] || {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; echo "usage: prove.sh OUT_DIR"; [ $# -eq 1 ]; exit $?; }
bundle="$(cd "$(dirname "$0")" && pwd)"
out="$1"
mkdir -p "$out" || { echo "prove.sh: cannot create $out" >&2; exit 1; }
out="$(cd "$out" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/darkstar-prove.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log="$out/prove.log"
: > "$log"
bin="$bundle/bin"
data="$bundle/data"
t_start=$(date +%s)

names=(); results=(); figures=(); seconds=(); budgets=()
failed=0
say() { echo "$*" | tee -a "$log"; }

# run_step NAME BUDGET_S FIGURE_REGEX CMD...: runs CMD under a hard time limit, its output into the
# log (and $work/last.out); the figure is the last output line matching FIGURE_REGEX (else the last line).
run_step() {
  local name="$1" budget="$2" pattern="$3"; shift 3
  local t0 t1 rc figure
  {
    echo
    echo "=== $name (budget ${budget} s) ==="
    printf '$'; printf ' %q' "$@"; echo
  } >> "$log"
  t0=$(date +%s.%N)
  timeout -k 5 "$budget" "$@" > "$work/last.out" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  cat "$work/last.out" >> "$log"
  figure="$(grep -E -- "$pattern" "$work/last.out" | tail -1)"
  [ -n "$figure" ] || figure="$(grep -v '^\s*$' "$work/last.out" | tail -1)"
  figure="${figure//$work\//}"; figure="${figure//$out\//OUT/}"  # short names in the table
  figure="$(echo "$figure" | cut -c1-200)"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then figure="timed out after its budget of ${budget} s; $figure"
  elif [ $rc -ne 0 ]; then figure="exit $rc: $figure"; fi
  step_record "$name" "$rc" "$figure" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}')" "$budget"
  return $rc
}

# step_record NAME RC FIGURE SECONDS BUDGET (RC 0 = pass, "skip" = not applicable, else fail)
step_record() {
  local result
  case "$2" in 0) result=PASS ;; skip) result=SKIP ;; *) result=FAIL; failed=$((failed + 1)) ;; esac
  names+=("$1"); results+=("$result"); figures+=("$3"); seconds+=("$4"); budgets+=("$5")
  printf '%-34s %-4s %6s s / %3s s  %s\n' "$1" "$result" "$4" "$5" "$3" | tee -a "$log"
}

# ---- 0. glibc -----------------------------------------------------------------------------------
need_glibc="$(cat "$bundle/share/glibc-required" 2>/dev/null || echo unknown)"
have_glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
[ -n "$have_glibc" ] || have_glibc="$(ldd --version 2>/dev/null | head -1 | grep -o '[0-9]\+\.[0-9]\+$')"
say "darkstar prove.sh: $(sed -n 's/^commit /commit /p' "$bundle/share/BUILD_INFO" 2>/dev/null), architectures $(sed -n 's/^cuda_architectures //p' "$bundle/share/BUILD_INFO" 2>/dev/null); report in $out"
if [ -z "$have_glibc" ] || [ "$need_glibc" = unknown ] ||
   [ "$(printf '%s\n%s\n' "$need_glibc" "$have_glibc" | sort -V | head -1)" != "$need_glibc" ]; then
  step_record "glibc" fail "this machine has glibc ${have_glibc:-unknown}; the bundle needs $need_glibc or newer" 0 0
  glibc_ok=0
else
  step_record "glibc" 0 "this machine has glibc $have_glibc; the bundle needs $need_glibc or newer" 0 0
  glibc_ok=1
fi

# ---- 1. facts: device, driver, memory, libraries ------------------------------------------------
t0=$(date +%s)
DS_ENV_QUIET=1 source "$bundle/env.sh"
env_rc=$?
{ echo; echo "=== libraries (env.sh) ==="; printf '%s' "$DS_ENV_REPORT"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; } >> "$log"
printf '%s' "$DS_ENV_REPORT" | grep -E '^(MISSING|OLD)' | tee -a "$log"
step_record "CUDA libraries found (env.sh)" "$env_rc" \
  "$(printf '%s' "$DS_ENV_REPORT" | grep -cE '^found ') found, $DS_ENV_MISSING missing or too old" "$(( $(date +%s) - t0 ))" 5
smi_gpus=0
if command -v nvidia-smi >/dev/null; then
  run_step "nvidia-smi" 5 'MiB' nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,compute_cap,power.limit \
    --format=csv
  smi_gpus="$(grep -c MiB "$work/last.out")"
  nvidia-smi >> "$log" 2>&1
else
  say "(no nvidia-smi on PATH)"
fi
run_step "library versions (as loaded)" 5 'cuDNN' "$bin/darkstar-check" versions
versions_txt="$(cat "$work/last.out")"
# The probe: exit 0 with "GPU: NAME", or 1 with "no usable GPU: REASON". Without a GPU that is the
# right answer (a pass) unless nvidia-smi does see one; anything else (the loader failing) is a failure.
t0=$(date +%s.%N)
{ echo; echo "=== GPU probe (budget 10 s) ==="; echo "\$ $bin/darkstar doctor --probe"; } >> "$log"
timeout -k 5 10 "$bin/darkstar" doctor --probe > "$work/last.out" 2>&1
probe_rc=$?
cat "$work/last.out" >> "$log"
probe_line="$(grep -v '^\s*$' "$work/last.out" | tail -1 | cut -c1-200)"
probe_s="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')"
gpu=0
if [ $probe_rc -eq 0 ]; then
  gpu=1
  step_record "GPU probe (doctor --probe)" 0 "$probe_line" "$probe_s" 10
elif [ $probe_rc -eq 1 ] && [ "$smi_gpus" -eq 0 ] && grep -q '^no usable GPU' "$work/last.out"; then
  step_record "GPU probe (doctor --probe)" 0 "$probe_line (right: nvidia-smi sees no GPU either)" "$probe_s" 10
else
  step_record "GPU probe (doctor --probe)" "$probe_rc" "$probe_line$([ "$smi_gpus" -gt 0 ] && echo " (but nvidia-smi sees $smi_gpus GPU)")" "$probe_s" 10
fi
if [ $gpu -eq 0 ]; then
  say "prove.sh: no usable GPU ($probe_line): running the CPU-side checks only, then exit 77"
fi

# ---- 2. doctor, the gpu test binary ---------------------------------------------------------------
# The gpu binary runs every case in exact (FMA-only, no TF32) math and the cases named "... default
# (TF32) math" in the default math users train with; doctor runs its own checks.
export DARKSTAR_TEST_SONG="$data/music/song.ogg"
if [ $gpu -eq 1 ]; then
  run_step "darkstar doctor" 40 '.' "$bin/darkstar" doctor
  run_step "gpu test binary (all cases)" 70 'test cases:' "$bin/darkstar_gpu_tests"
else
  run_step "gpu test binary skips visibly" 20 'SKIPPED' bash -c '"$1"; rc=$?; [ $rc -eq 77 ] || { echo "expected exit 77 (skip) without a GPU, got $rc"; exit 1; }' _ "$bin/darkstar_gpu_tests"
fi

# ---- 3. darkstar-bench (options as this build's --help lists them) ---------------------------------
bench_help="$("$bin/darkstar-bench" --help 2>&1)"
bench_args=()
has_opt() { grep -qE -- "(^|[ ,])$1([ ,=]|$)" <<< "$bench_help"; }
has_opt --json && bench_args+=(--json "$work/bench.json")
if [ $gpu -eq 1 ]; then
  if has_opt --device; then bench_args+=(--device cuda); else bench_args+=(--quick); fi
  run_step "darkstar-bench (GPU)" 60 '.' "$bin/darkstar-bench" "${bench_args[@]}"
else
  has_opt --device && bench_args+=(--device cpu)
  if has_opt --smoke; then bench_args+=(--smoke); elif has_opt --quick; then bench_args+=(--quick); fi
  has_opt --reps && bench_args+=(--reps 1)
  run_step "darkstar-bench (CPU, small)" 40 '.' "$bin/darkstar-bench" "${bench_args[@]}"
fi
cp "$work/last.out" "$work/bench.txt"
[ -s "$work/bench.json" ] && cp "$work/bench.json" "$out/bench.json"
# Issue 9's GPU comparisons, dcgan64 only (their whole output is in prove.log): eager launches beside
# the graph-captured default at the TF32 goal's batch, and bf16 at the bf16 goal's batch.
if [ $gpu -eq 1 ] && has_opt --config && has_opt --batch; then
  has_opt --no-graph && run_step "darkstar-bench dcgan64 batch 128, eager launches (--no-graph)" 45 'images' \
    "$bin/darkstar-bench" --device cuda --config dcgan64 --batch 128 --no-graph --no-audio
  has_opt --precision && run_step "darkstar-bench dcgan64 batch 512, --precision bf16" 60 'images' \
    "$bin/darkstar-bench" --device cuda --config dcgan64 --batch 512 --precision bf16 --no-audio
fi

# ---- 4. end to end ----------------------------------------------------------------------------------
ds="$bin/darkstar"
run_step "prepare-images (300 Fashion-MNIST)" 5 '^wrote' \
  "$ds" prepare-images "$data/fashion-mnist-300-images-idx3-ubyte.gz" --size 32 --out "$work/fm.npy"
if [ $gpu -eq 1 ]; then
  run_step "prepare-audio on the GPU" 15 '^wrote' "$ds" prepare-audio "$data/music" --device cuda --out "$work/mel_gpu.npy"
fi
run_step "prepare-audio on the CPU" 15 '^wrote' "$ds" prepare-audio "$data/music" --device cpu --out "$work/mel_cpu.npy"
if [ $gpu -eq 1 ]; then
  # 1e-4: the float mel images of cuFFT + cuBLAS vs kissfft + double sums (tests/gpu/test_gpu_spectral.cpp);
  # + 4.9e-4: one float16 step in [0.5, 1], where the two float values may round to neighbouring halves.
  run_step "mel datasets GPU vs CPU" 5 'max' "$bin/darkstar-check" npy "$work/mel_cpu.npy" "$work/mel_gpu.npy" --tol 5.9e-4
  mel="$work/mel_gpu.npy"; dev=cuda
  # A few hundred steps: the image model at full width (ngf = ndf = 64); the mel model (128×512, 16×
  # the pixels of 64×64) at half width, ~85 GFLOP a step at batch 8, so that 300 steps fit the budget
  # even with cuDNN restricted to deterministic algorithms on an older datacenter GPU.
  run_step "train mel model (300 steps, GPU)" 25 '^\[' "$ds" train --data "$mel" --out "$work/run_mel" --device cuda \
    --steps 300 --batch 8 --ngf 32 --ndf 32 --log-every 50 --sample-every 300 --checkpoint-every 300
  run_step "train image model (300 steps, GPU)" 20 '^\[' "$ds" train --data "$work/fm.npy" --out "$work/run_img" \
    --device cuda --steps 300 --batch 64 --log-every 50 --sample-every 300 --checkpoint-every 300
else
  mel="$work/mel_cpu.npy"; dev=cpu
  # On the CPU, tiny models and few steps (the full ones take minutes per hundred steps on 2 cores).
  run_step "train mel model (8 tiny steps, CPU)" 40 '^\[' "$ds" train --data "$mel" --out "$work/run_mel" --device cpu \
    --steps 8 --batch 4 --ngf 8 --ndf 8 --log-every 4 --sample-every 8 --checkpoint-every 8
  run_step "train image model (30 steps, CPU)" 30 '^\[' "$ds" train --data "$work/fm.npy" --out "$work/run_img" \
    --device cpu --steps 30 --batch 16 --ngf 16 --ndf 16 --log-every 10 --sample-every 30 --checkpoint-every 30
fi
# Griffin-Lim: the default 64 iterations on the GPU; 16 on the CPU (the check is that it runs and
# writes sound, not its quality).
gl=(); listen_budget=10
[ $gpu -eq 1 ] || { gl=(--gl-iters 16); listen_budget=30; }
run_step "sample a grid" 10 '^wrote' "$ds" sample --checkpoint "$work/run_img/last.safetensors" --n 64 --device "$dev" \
  --out "$out/sample_grid.png"
run_step "listen: a generated slice" "$listen_budget" 'spectral convergence' "$ds" listen \
  --checkpoint "$work/run_mel/last.safetensors" --n 1 --device "$dev" "${gl[@]}" --out "$work/gen"
wav="$(ls "$work"/gen/*.wav 2>/dev/null | head -1)"
[ -n "$wav" ] && cp "$wav" "$out/generated.wav" && cp "${wav%.wav}.png" "$out/generated_mel.png" 2>/dev/null
run_step "listen: a real slice round trip" "$listen_budget" 'spectral convergence' "$ds" listen --data "$mel" --index 3 \
  --device "$dev" "${gl[@]}" --out "$out/real_roundtrip.wav"
rm -f "$out/real_roundtrip.png"  # the file budget: the generated slice's picture is the one kept

# CPU vs GPU losses of the first 5 steps: same seed, so the same batches and noise on both devices
# (tests/gpu/test_gpu_trainer.cpp checks that in exact math to 1e-4). `train` runs in default math,
# where cuDNN and cuBLAS may use TF32 (~5e-4 relative per product), and Adam's first steps move every
# weight by ±lr whatever the gradient's size, so a near-zero gradient whose sign differs moves a
# weight by 2·lr: 5 % of max(1, |loss|) leaves room for that and still catches a wrong batch, noise,
# label or update, which change a GAN's losses by tenths within a few steps. Without a GPU, the CPU
# run twice must agree exactly (the run is deterministic on one machine).
small=(--steps 5 --batch 16 --ngf 16 --ndf 16 --log-every 1 --sample-every 0 --checkpoint-every 0)
run_step "first 5 steps on the CPU" 15 '^\[5/' "$ds" train --data "$work/fm.npy" --out "$work/loss_cpu" --device cpu "${small[@]}"
if [ $gpu -eq 1 ]; then
  run_step "first 5 steps on the GPU" 15 '^\[5/' "$ds" train --data "$work/fm.npy" --out "$work/loss_gpu" --device cuda "${small[@]}"
  run_step "losses CPU vs GPU (5 steps)" 5 'max relative' "$bin/darkstar-check" losses "$work/loss_cpu/log.jsonl" \
    "$work/loss_gpu/log.jsonl" --steps 5 --tol 0.05
else
  run_step "first 5 steps on the CPU again" 15 '^\[5/' "$ds" train --data "$work/fm.npy" --out "$work/loss_cpu2" --device cpu "${small[@]}"
  run_step "losses CPU run vs CPU run (exact)" 5 'max relative' "$bin/darkstar-check" losses "$work/loss_cpu/log.jsonl" \
    "$work/loss_cpu2/log.jsonl" --steps 5 --tol 0
fi
loss_table="$(grep -A6 '^step  Loss_D' "$work/last.out" 2>/dev/null)"

# ---- 5. report.md ---------------------------------------------------------------------------------
total=$(( $(date +%s) - t_start ))
budget_total=0; for b in "${budgets[@]}"; do budget_total=$((budget_total + b)); done
n_pass=0; n_fail=0; n_skip=0
for r in "${results[@]}"; do case "$r" in PASS) n_pass=$((n_pass + 1)) ;; FAIL) n_fail=$((n_fail + 1)) ;; *) n_skip=$((n_skip + 1)) ;; esac; done
if [ $failed -gt 0 ]; then verdict="FAILED: $n_fail of ${#results[@]} checks"; code=1
elif [ $gpu -eq 0 ]; then verdict="no usable GPU: the CPU-side checks passed ($n_pass), GPU checks not run"; code=77
else verdict="all $n_pass checks passed"; code=0; fi
{
  echo "# darkstar prove.sh report"
  echo
  echo "**$verdict** (exit $code) in ${total} s (budgets add up to ${budget_total} s)."
  echo
  echo "- bundle: $(tr '\n' ';' < "$bundle/share/BUILD_INFO" 2>/dev/null | sed 's/;/; /g')"
  echo "- machine: $(uname -srm), glibc ${have_glibc:-unknown}, $(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM"
  echo "- GPU: $probe_line"
  [ "$smi_gpus" -gt 0 ] 2>/dev/null && { echo; echo '```'; grep -A8 '^name' "$log" | head -9; echo '```'; }
  echo
  echo "## Checks"
  echo
  echo "| check | result | figure | time (s) | budget (s) |"
  echo "|---|---|---|---|---|"
  for i in "${!names[@]}"; do
    echo "| ${names[$i]} | ${results[$i]} | $(echo "${figures[$i]}" | sed 's/|/\\|/g') | ${seconds[$i]} | ${budgets[$i]} |"
  done
  echo
  echo "## Libraries"
  echo
  echo '```'
  printf '%s' "$DS_ENV_REPORT"
  echo "$versions_txt"
  echo '```'
  echo
  echo "## Bench"
  echo
  echo "darkstar-bench ${bench_args[*]}$([ -s "$out/bench.json" ] && echo " (all figures in bench.json)")"
  echo
  echo '```'
  cat "$work/bench.txt" 2>/dev/null
  echo '```'
  if [ -n "$loss_table" ]; then
    echo
    echo "## First steps' losses"
    echo
    echo '```'
    echo "$loss_table"
    echo '```'
  fi
  echo
  echo "## Files"
  echo
  echo "report.md (this), prove.log (every command and its whole output), bench.json (when the bench writes one),"
  echo "sample_grid.png (64 images of the image model), generated.wav + generated_mel.png (a generated 10 s"
  echo "slice of the mel model), real_roundtrip.wav (a real slice through the mel inversion)."
} > "$out/report.md"

# The file budget: at most 8 files directly in OUT, none over 16 MB (only the log can grow: keep its
# beginning and end).
if [ "$(stat -c %s "$log")" -gt 16000000 ]; then
  { head -c 8000000 "$log"; echo; echo "[... prove.sh cut the middle of this log to stay under 16 MB ...]"; tail -c 7000000 "$log"; } > "$work/log.cut"
  mv "$work/log.cut" "$log"
fi
echo "prove.sh: $verdict; exit $code; ${total} s; report in $out/report.md ($(ls "$out" | wc -l) files)"
exit $code
