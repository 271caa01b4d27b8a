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

if "$bin" doctor --probe; then
  echo "quickstart: GPU found: full Fashion-MNIST, ngf = ndf = 64, 2000 steps"
  "$bin" prepare-images "$idx" --size 32 --out data/fashion-mnist.npy
  "$bin" train --data data/fashion-mnist.npy --out runs/fashion-mnist --steps 2000 --batch 128 \
    --sample-every 250 --checkpoint-every 500
else
  echo "quickstart: no GPU: small CPU settings (8192 images, ngf = ndf = 16, batch 64, 2000 steps, a few minutes);"
  echo "            on a GPU the same command trains the full model"
  "$bin" prepare-images "$idx" --size 32 --limit 8192 --out data/fashion-mnist-small.npy
  "$bin" train --data data/fashion-mnist-small.npy --out runs/fashion-mnist-cpu --device cpu \
    --steps 2000 --batch 64 --ngf 16 --ndf 16 --sample-every 250 --checkpoint-every 500 --log-every 50
fi
run=$(ls -dt runs/fashion-mnist* | head -1)
echo "quickstart: sample grids in $run/samples/ (latest: $(ls -t "$run"/samples/*.png | head -1))"
echo "quickstart: checkpoints $run/{netG,netD,last}.safetensors"
"$bin" report "$run"
echo "quickstart: the run's page (curves, grids, config; opens offline): $run/report.html"
