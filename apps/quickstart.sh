#!/usr/bin/env bash
# The README's first command: set up, then the default job end to end on real music from Debian's
# fretsonfire-songs-sectoid (MIT licence): prepare a mel dataset, train a DCGAN on it, and write
# generated slices as .wav + .png and a latent walk. On a GPU: the full model. Without one: small
# settings that finish in minutes on two cores (and it says so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash apps/setup.sh
bin="${DARKSTAR_BUILD_DIR:-build}/darkstar"
songs=/usr/share/games/fretsonfire/data/songs/sectoid
mkdir -p data runs

"$bin" prepare-audio "$songs" --out data/sectoid.npy
if "$bin" doctor --probe; then
  echo "quickstart: GPU found: ngf = ndf = 64, batch 32, 3000 steps"
  run=runs/sectoid
  "$bin" train --data data/sectoid.npy --out "$run" --steps 3000 --batch 32 --sample-every 500 --checkpoint-every 500
  "$bin" listen --checkpoint "$run/last.safetensors" --n 8 --out "$run/gen"
  "$bin" listen --checkpoint "$run/last.safetensors" --walk 60 --out "$run/gen/walk.wav"
else
  echo "quickstart: no GPU: small CPU settings (ngf = ndf = 8, batch 16, 300 steps, a few minutes);"
  echo "            on a GPU the same command trains the full model"
  run=runs/sectoid-cpu
  "$bin" train --data data/sectoid.npy --out "$run" --device cpu --steps 300 --batch 16 --ngf 8 --ndf 8 \
    --sample-every 100 --checkpoint-every 100 --log-every 20
  "$bin" listen --checkpoint "$run/last.safetensors" --n 4 --out "$run/gen" --device cpu
  "$bin" listen --checkpoint "$run/last.safetensors" --walk 30 --out "$run/gen/walk.wav" --device cpu
fi
"$bin" listen --data data/sectoid.npy --index 17 --out "$run/gen/real17.wav" --device cpu
echo "quickstart: generated audio and mel images in $run/gen/ (*.wav, *.png; walk.wav is one continuous file)"
echo "quickstart: real17.wav is a real slice sent through the same inversion, to hear what the mel keeps"
echo "quickstart: checkpoints $run/{netG,netD,last}.safetensors, sample grids in $run/samples/"
