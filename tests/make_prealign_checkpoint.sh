#!/bin/bash
# Regenerates tests/fixtures/prealign/: a training state written by darkstar BEFORE parameter offsets
# were aligned to 16 floats (main at 7e2e7d1), so tests/test_unit_prealign_checkpoint.cpp proves that
# such files still load and resume. Odd --ngf/--ndf (3) put the old layout's tensors at offsets that
# are not multiples of 16 floats, so the old and the new flat layouts really differ.
# Usage: tests/make_prealign_checkpoint.sh DARKSTAR_EXE   (an executable built from a pre-alignment tree)
# Only for regenerating: the committed files are the fixture; a binary built after the change makes a
# file of the same format, but not a test of the old layout.
set -euo pipefail
exe=${1:?usage: $0 DARKSTAR_EXE (built before the 16-float alignment)}
here=$(cd "$(dirname "$0")" && pwd)
out=$here/fixtures/prealign
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
# 12 grey 16×16 images (IDX, MNIST's format): a bright diagonal bar at a different place in each.
/usr/bin/python3 - "$work/images.idx" <<'PY'
import struct, sys
n, s = 12, 16
pix = bytearray()
for k in range(n):
    for y in range(s):
        for x in range(s):
            pix.append(230 if abs((x + y) - (2 * k + 4)) <= 1 else 25 + 7 * ((x * 3 + y * 5 + k) % 5))
open(sys.argv[1], "wb").write(struct.pack(">IIII", 0x803, n, s, s) + bytes(pix))
PY
"$exe" prepare-images "$work/images.idx" --out "$work/data.npy" --size 16 --channels 1
train=(train --data "$work/data.npy" --out "$work/run" --batch 4 --nz 5 --ngf 3 --ndf 3 --seed 5
       --sample-every 0 --log-every 1 --device cpu)
# Steps 1-3 (an epoch is 3 batches), then a resume by the same old binary to step 7 (crosses two epochs).
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$exe" "${train[@]}" --steps 3 --checkpoint-every 3
cp "$work/run/last.safetensors" "$out/step3.safetensors"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$exe" "${train[@]}" --steps 7 --checkpoint-every 7 --resume
cp "$work/run/last.safetensors" "$out/step7.safetensors"
cp "$work/data.npy" "$out/data.npy"
cp "$work/data.json" "$out/data.json"
ls -l "$out"
