#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, clang + libclang-rt, ASan + UBSan) in their own folder and
# runs each for a bounded time from a seed corpus of committed fixtures, printing each harness's
# executions. Any crash, hang (-timeout), leak or out-of-bounds access stops that harness, leaves its
# reproducer in the work folder and makes the script exit non-zero.
#   DS_FUZZ_SECONDS  seconds per harness (default 60)
#   DS_FUZZ_BUILD    build/work folder (default build-fuzz)
#   DS_FUZZ_ONLY     space-separated harness names to run (default: all)
# Run by hand (not in CI): bash tests/fuzz/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build="${DS_FUZZ_BUILD:-build-fuzz}"
seconds="${DS_FUZZ_SECONDS:-60}"
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }
cmake -S tests/fuzz -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build "$build" -j"$(nproc)"

# harness : largest input worth trying (bytes) : seed files (committed fixtures)
harnesses=(
  "npy:4096:tests/fixtures/tiny_f16.npy tests/fixtures/prealign/data.npy tests/fixtures/broken/*.npy"
  "safetensors:8192:tests/fixtures/tiny.safetensors tests/fixtures/broken/*.safetensors"
  "mel_sidecar:16384:tests/fixtures/broken/mel_*.json"
  "image_sidecar:4096:tests/fixtures/prealign/data.json tests/fixtures/broken/image_*.json"
  "idx:4096:tests/fixtures/broken/*.idx tests/fixtures/broken/*.idx.gz"
  "image:16384:tests/fixtures/broken/*.png tests/fixtures/broken/*.jpg"
  "audio:8192:tests/fixtures/broken/*.wav tests/fixtures/broken/*.flac"
  "tfrecord:4096:tests/fixtures/broken/*.tfevents"
)
status=0
summary=()
for entry in "${harnesses[@]}"; do
  IFS=: read -r name max_len seeds <<<"$entry"
  if [ -n "${DS_FUZZ_ONLY:-}" ] && [[ " $DS_FUZZ_ONLY " != *" $name "* ]]; then continue; fi
  work="$root/$build/work/$name"
  corpus="$work/corpus"
  mkdir -p "$corpus"
  # shellcheck disable=SC2086
  for f in $seeds; do [ -f "$f" ] && cp -f "$f" "$corpus/"; done
  log="$work/log.txt"
  echo "fuzz: $name for ${seconds} s (-max_len=$max_len, $(ls "$corpus" | wc -l) inputs in corpus)"
  rc=0
  (cd "$work" && DS_FUZZ_TMP="$work" "$root/$build/fuzz_$name" corpus -max_total_time="$seconds" \
      -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1) || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "fuzz: $name FAILED (exit $rc); see $log and $work/crash-* / timeout-* / oom-*"
    grep -m5 -E 'ERROR|SUMMARY|runtime error|deadly signal' "$log" || true
  fi
  summary+=("$(printf '%-14s %6s s %12s executions %8s exec/s  %s' "$name" "$seconds" "$execs" "$rate" \
               "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)")")
done
echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
exit "$status"
