#!/usr/bin/env bash
# The README's first command: set up, then the default job end to end on real music from Debian's
# fretsonfire-songs-sectoid (MIT licence): prepare a mel dataset, train a DCGAN on it, write generated
# slices as .wav + .png and a latent walk, and measure them against the real slices (`inspect quality`:
# five figures with their bars). On a GPU: the full model on the default layout, timed. Without one:
# a smaller layout and model that fit about 8 minutes on two cores (it says which and why).
#   DARKSTAR_CPU_MINUTES  the CPU job's training time budget (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
DARKSTAR_BUILD_TARGETS="${DARKSTAR_BUILD_TARGETS:-darkstar}" bash apps/setup.sh  # the CLI is all the job needs
bin="${DARKSTAR_BUILD_DIR:-build}/darkstar"
songs=/usr/share/games/fretsonfire/data/songs/sectoid
mkdir -p data runs

# A fresh run folder per run: the settings name it, and a rerun gets a time suffix, so the earlier
# run is kept (train refuses a folder that holds a run unless given --resume or --force).
fresh_run() {
  local run="runs/$1"
  [ -e "$run" ] && run="runs/$1-$(date +%Y%m%d-%H%M%S)"
  echo "$run"
}
job_start=$(date +%s)

if "$bin" doctor --probe; then
  data=data/sectoid.npy  # the default layout: 128 mel bands × 512 frames per 10 s slice
  [ -f "$data" ] || "$bin" prepare-audio "$songs" --out "$data"
  echo "quickstart: GPU found: the full model (ngf = ndf = 64, batch 32, 3000 steps) on 10 s slices, 128×512"
  run=$(fresh_run sectoid-gpu)
  train_start=$(date +%s)
  "$bin" train --data "$data" --out "$run" --steps 3000 --batch 32 --sample-every 500 --checkpoint-every 500
  echo "quickstart: training took $(( $(date +%s) - train_start )) s"
  "$bin" listen --checkpoint "$run/last.safetensors" --n 8 --out "$run/gen" --normalize
  "$bin" listen --checkpoint "$run/last.safetensors" --walk 60 --out "$run/gen/walk.wav" --normalize
  real_index=17
else
  # Why these settings (README, "The two commands"): 10 s slices at 128×512 cost a tiny model about a
  # second a step on two cores, too few steps for anything but hiss in minutes, and D wins by step 40.
  # 2.5 s slices at 64 mel bands × 64 frames (16× fewer pixels), cut every 1.25 s (twice the slices from
  # the same music), let the model train ~10× more steps. G must be at least 32 wide: at ngf 16 it
  # collapses to one z-independent pattern whatever D's width or the learning rates (PyTorch's example
  # does the same on this data: bench/torch_dcgan_mel.py), at ngf 32 / ndf 16 with the recipe's rates
  # it learns the bands, onsets and harmonics. The time budget ends training in time on a slower machine.
  data=data/sectoid-64x64.npy
  [ -f "$data" ] || "$bin" prepare-audio "$songs" --out "$data" --device cpu \
    --slice-seconds 2.5 --n-mels 64 --frames 64 --slice-hop 1.25
  minutes="${DARKSTAR_CPU_MINUTES:-7}"
  echo "quickstart: no GPU: the CPU job: 2.5 s slices at 64 mel bands × 64 frames (hop 1.25 s), ngf 32, ndf 16,"
  echo "            batch 32, the recipe's lr 2e-4, 3000 steps or $minutes minutes of training, whichever comes"
  echo "            first; on a GPU the same command trains the full model on 10 s slices"
  run=$(fresh_run sectoid-cpu64-g32)
  train_start=$(date +%s)
  "$bin" train --data "$data" --out "$run" --device cpu --steps 3000 --minutes "$minutes" --batch 32 \
    --ngf 32 --ndf 16 --sample-every 500 --checkpoint-every 500 --log-every 20
  echo "quickstart: training took $(( $(date +%s) - train_start )) s"
  # --normalize: a generated slice has no level of its own (listen gives it the data's median), and
  # loud ones would clip at 16-bit full scale; each file is peak-normalised to -1 dBFS instead.
  "$bin" listen --checkpoint "$run/last.safetensors" --n 8 --out "$run/gen" --device cpu --normalize
  "$bin" listen --checkpoint "$run/last.safetensors" --walk 30 --out "$run/gen/walk.wav" --device cpu --normalize
  real_index=100
fi
"$bin" listen --data "$data" --index "$real_index" --out "$run/gen/real$real_index.wav" --device cpu
quality_ok=1
"$bin" inspect quality --checkpoint "$run/last.safetensors" --data "$data" | tee "$run/quality.txt" || quality_ok=0
echo "quickstart: the job took $(( $(date +%s) - job_start )) s after setup"
echo "quickstart: generated audio and mel images in $run/gen/ (*.wav, *.png; walk.wav is one continuous file)"
echo "quickstart: real$real_index.wav is a real slice sent through the same inversion, to hear what the mel keeps"
echo "quickstart: checkpoints $run/{netG,netD,last}.safetensors, sample grids in $run/samples/, log $run/log.jsonl"
echo "quickstart: the five quality figures above are in $run/quality.txt (rerun: $bin inspect quality --checkpoint $run/last.safetensors --data $data)"
"$bin" report "$run"
echo "quickstart: the run's page (curves, grids, players for gen/*.wav, config; opens offline): $run/report.html"
[ "$quality_ok" = 1 ] || echo "quickstart: some quality bars failed (see above)"
