#!/usr/bin/env bash
# The image job: set up, then train a DCGAN on Fashion-MNIST (from Debian's dataset-fashion-mnist)
# and write sample grids. On a GPU: the full set, ngf = ndf = 64.
# Without one: small settings that finish in minutes on two cores (and it says so).
set -euo pipefail
cd "$(dirname "$0")/.."
DARKSTAR_BUILD_TARGETS="${DARKSTAR_BUILD_TARGETS:-darkstar}" bash apps/setup.sh  # the CLI is all the job needs
bin="${DARKSTAR_BUILD_DIR:-build}/darkstar"
idx=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
mkdir -p data runs

# A fresh run folder per run, as in quickstart.sh: train refuses a folder that holds a run unless
# told to --resume or --force, so a rerun gets a time suffix and the earlier run is kept.
fresh_run() {
  local run="runs/$1"
  [ -e "$run" ] && run="runs/$1-$(date +%Y%m%d-%H%M%S)"
  echo "$run"
}

if "$bin" doctor --probe; then
  echo "quickstart: GPU found: full Fashion-MNIST, ngf = ndf = 64, 2000 steps"
  [ -f data/fashion-mnist.npy ] || "$bin" prepare-images "$idx" --size 32 --out data/fashion-mnist.npy
  run=$(fresh_run fashion-mnist)
  "$bin" train --data data/fashion-mnist.npy --out "$run" --steps 2000 --batch 128 \
    --sample-every 250 --checkpoint-every 500
else
  echo "quickstart: no GPU: small CPU settings (8192 images, ngf = ndf = 16, batch 64, 2000 steps, a few minutes);"
  echo "            on a GPU the same command trains the full model"
  [ -f data/fashion-mnist-small.npy ] ||
    "$bin" prepare-images "$idx" --size 32 --limit 8192 --out data/fashion-mnist-small.npy
  run=$(fresh_run fashion-mnist-cpu)
  "$bin" train --data data/fashion-mnist-small.npy --out "$run" --device cpu \
    --steps 2000 --batch 64 --ngf 16 --ndf 16 --sample-every 250 --checkpoint-every 500 --log-every 50
fi
echo "quickstart: sample grids in $run/samples/ (latest: $(ls -t "$run"/samples/*.png | head -1))"
echo "quickstart: checkpoints $run/{netG,netD,last}.safetensors"
"$bin" report "$run"
echo "quickstart: the run's page (curves, grids, config; opens offline): $run/report.html"
