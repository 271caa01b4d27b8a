#!/usr/bin/python3
"""The same training-step benchmark as darkstar-bench, in PyTorch: the configurations dcgan64, mel128 and
mel128x512 built exactly as engine/nn/dcgan.cpp builds them (PyTorch's examples/dcgan generalised to H×W:
G starts from the 4·2^-k map with a kernel of that size, D ends with a kernel of the remaining map),
N(0, 0.02) conv init, BN gamma N(1, 0.02) and beta 0, BCE with logits, Adam(2e-4, (0.5, 0.999)), one
step = D on real (label 1) and on G(z).detach() (label 0), Adam on D, G against the updated D (label 1),
Adam on G. Prints and writes (--json) the same figures: images/s (batch ÷ median step), step_ms, the
analytic FLOP count, a per-layer table (each op alone through ATen's forward/backward ops), peak memory,
the achieved rate against torch.mm's measured in the same run.
Modes: eager (CPU and GPU); on a GPU also compile (torch.compile, PyTorch 2) and bf16 (channels-last,
autocast bf16). --audio adds STFT + mel (torchaudio; librosa in bench/librosa_mel.py) and Griffin-Lim
(torchaudio) on the same music as darkstar-bench.
Run with Debian's interpreter: /usr/bin/python3 bench/pytorch_dcgan.py --threads 2 --config dcgan64"""
import argparse, json, resource, statistics, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {"dcgan64": (64, 64, 3), "mel128": (128, 128, 1), "mel128x512": (128, 512, 1)}
SONG = "/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg"


def n_layers(h, w):
    m, l = min(h, w), 0
    while m > 4:
        m //= 2
        l += 1
    return l


def build(h, w, nc, nz, ngf, ndf):
    L = n_layers(h, w)
    sh, sw = h >> L, w >> L
    g, ch = [], ngf << (L - 1)
    g += [nn.ConvTranspose2d(nz, ch, (sh, sw), 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(1, L):
        g += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    g += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
    d, ch = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)], ndf
    for _ in range(1, L):
        d += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
        ch *= 2
    d += [nn.Conv2d(ch, 1, (sh, sw), 1, 0, bias=False)]
    G, D = nn.Sequential(*g), nn.Sequential(*d)
    for m in list(G.modules()) + list(D.modules()):  # the example's weights_init
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return G, D


def conv_layers(net, x):
    """(module, input shape, output shape) of every conv of `net` on input x."""
    out = []
    for m in net:
        y = m(x) if not isinstance(m, (nn.ReLU, nn.LeakyReLU)) else x
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            out.append((m, tuple(x.shape), tuple(y.shape)))
        x = y
    return out


def macs_per_image(m, xs, ys):
    k = m.kernel_size[0] * m.kernel_size[1]
    if isinstance(m, nn.ConvTranspose2d):  # the input positions of the adjoint Conv2d
        return m.in_channels * m.out_channels * k * xs[2] * xs[3]
    return m.in_channels * m.out_channels * k * ys[2] * ys[3]


def pass_counts(is_d, i):
    # as bench/bench_gan.cpp: D forward ×3, weight grads ×2, input grads ×3 (×1 for its first layer);
    # G forward, weight and input grads ×1 (no input grad for its first layer).
    return (3 + 2 + (1 if i == 0 else 3)) if is_d else (1 + 1 + (0 if i == 0 else 1))


def timed(fn, reps, warmup=1, sync=None):
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ms = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms), "mean": statistics.fmean(ms), "samples": ms}


def gemm_peak(device, n, reps, sync):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t = timed(lambda: torch.mm(a, b), reps, sync=sync)
    return {"what": "torch.mm %d^3 float32" % n, "n": n, "time_ms": t, "flop_per_s": 2.0 * n ** 3 / (t["median"] * 1e-3)}


def layer_table(G, D, real, z, reps, sync, bf16):
    """Each conv's forward / backward-data / backward-weight and the element-wise parts after it, alone,
    on the activations one forward pass produces (walked module by module)."""
    rows = []
    dt = torch.bfloat16 if bf16 else torch.float32
    for is_d, net in ((True, D), (False, G)):
        x = (real if is_d else z).to(dt)
        row = None
        for m in net:
            xin = x.detach()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                tr = isinstance(m, nn.ConvTranspose2d)
                w = m.weight.detach().to(dt)
                conv = (lambda: F.conv_transpose2d(xin, w, None, m.stride, m.padding)) if tr else \
                       (lambda: F.conv2d(xin, w, None, m.stride, m.padding))
                x = conv()
                gy = torch.randn_like(x)
                cb = lambda mask: torch.ops.aten.convolution_backward(gy, xin, w, None, list(m.stride),
                                                                      list(m.padding), [1, 1], tr, [0, 0], 1, mask)
                flops = 2.0 * macs_per_image(m, tuple(xin.shape), tuple(x.shape)) * xin.shape[0]
                row = {"net": "D" if is_d else "G", "stage": len([r for r in rows if r["net"] == ("D" if is_d else "G")]),
                       "layer": str(m), "batch": xin.shape[0], "flops_per_pass": flops,
                       "forward_ms": timed(conv, reps, sync=sync)["median"],
                       "backward_data_ms": timed(lambda: cb([True, False, False]), reps, sync=sync)["median"],
                       "backward_filter_ms": timed(lambda: cb([False, True, False]), reps, sync=sync)["median"]}
                for k in ("forward", "backward_data", "backward_filter"):
                    row[k + "_flop_per_s"] = flops / (row[k + "_ms"] * 1e-3)
                rows.append(row)
            elif isinstance(m, nn.BatchNorm2d):
                hf = xin.float()
                rm, rv = m.running_mean.clone(), m.running_var.clone()
                gam, bet = m.weight.detach(), m.bias.detach()
                bnf = lambda: torch.ops.aten.native_batch_norm(hf, gam, bet, rm, rv, True, 0.1, 1e-5)
                row["batchnorm_forward_ms"] = timed(bnf, reps, sync=sync)["median"]
                y, sm, si = bnf()
                gh = torch.randn_like(hf)
                row["batchnorm_backward_ms"] = timed(lambda: torch.ops.aten.native_batch_norm_backward(
                    gh, hf, gam, rm, rv, sm, si, True, 1e-5, [True, True, True]), reps, sync=sync)["median"]
                x = y.to(dt)
            else:
                gh = torch.randn_like(xin)
                if isinstance(m, nn.ReLU):
                    f, b = (lambda: F.relu(xin)), (lambda: torch.ops.aten.threshold_backward(gh, xin, 0))
                elif isinstance(m, nn.LeakyReLU):
                    f, b = (lambda: F.leaky_relu(xin, 0.2)), (lambda: torch.ops.aten.leaky_relu_backward(gh, xin, 0.2, False))
                else:
                    f, b = (lambda: torch.tanh(xin)), (lambda: torch.ops.aten.tanh_backward(gh, xin))
                row["activation_forward_ms"] = timed(f, reps, sync=sync)["median"]
                row["activation_backward_ms"] = timed(b, reps, sync=sync)["median"]
                x = f()
    return rows


def bench_config(name, h, w, nc, args, device, mode):
    torch.manual_seed(1)
    nz, batch = args.nz, args.batch
    G, D = build(h, w, nc, nz, args.ngf, args.ndf)
    G, D = G.to(device), D.to(device)
    bf16 = mode == "bf16"
    if bf16:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    oG = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    oD = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    loss = nn.BCEWithLogitsLoss()
    real = (torch.randn(batch, nc, h, w, device=device) * 0.5).clamp(-1, 1)
    z = torch.randn(batch, nz, 1, 1, device=device)
    if bf16:
        real = real.to(memory_format=torch.channels_last)
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)
    Gr, Dr = (torch.compile(G), torch.compile(D)) if mode == "compile" else (G, D)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else None

    def step():
        with (amp if amp else torch.autocast("cpu", enabled=False)):
            D.zero_grad(set_to_none=False)
            loss(Dr(real).view(-1).float(), ones).backward()
            fake = Gr(z)
            loss(Dr(fake.detach()).view(-1).float(), zeros).backward()
            oD.step()
            G.zero_grad(set_to_none=False)
            loss(Dr(fake).view(-1).float(), ones).backward()
            oG.step()

    st = timed(step, args.steps, warmup=args.warmup, sync=sync)
    with torch.no_grad():
        gl, dl = conv_layers(G, z), conv_layers(D, real)
    flayers, fps = [], 0.0
    for is_d, layers in ((True, dl), (False, gl)):
        for i, (m, xs, ys) in enumerate(layers):
            macs, passes = macs_per_image(m, xs, ys), pass_counts(is_d, i)
            fps += 2.0 * batch * macs * passes
            flayers.append({"net": "D" if is_d else "G", "stage": i, "layer": str(m),
                            "macs_per_image_per_pass": macs, "passes_per_step": passes})
    with torch.no_grad():
        layers = layer_table(G, D, real, z, args.layer_reps, sync, bf16) if args.layer_reps > 0 else []
    achieved = fps / (st["median"] * 1e-3)
    if cuda:
        memory = {"peak_device_bytes": torch.cuda.max_memory_allocated(), "what": "torch.cuda.max_memory_allocated"}
    else:
        memory = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "what": "ru_maxrss of the process (run one configuration per process to compare)"}
    return {"name": name, "framework": "pytorch " + torch.__version__, "mode": mode, "device": device.type,
            "threads": torch.get_num_threads(), "batch": batch, "height": h, "width": w, "channels": nc, "nz": nz,
            "ngf": args.ngf, "ndf": args.ndf, "warmup_steps": args.warmup, "timed_steps": args.steps,
            "images_per_s": batch / (st["median"] * 1e-3), "step_ms": st, "flops_per_step": fps,
            "flops_per_image": fps / batch, "flop_count": {"batch": batch, "layers": flayers},
            "achieved_flop_per_s": achieved, "matrix_peak_flop_per_s": args.peak,
            "fraction_of_matrix_peak": achieved / args.peak if args.peak else 0.0, "memory": memory, "layers": layers}


def bench_audio(threads, reps=3, gl_iters=64):
    import numpy as np
    import soundfile as sf
    import torchaudio
    x, sr = sf.read(SONG, dtype="float32")
    x = torch.from_numpy(x.mean(axis=1) if x.ndim == 2 else x)
    x = torchaudio.functional.resample(x, sr, 22050)
    L = 220500
    n = x.numel() // L
    out = {"song": SONG, "slices": n, "threads": threads}
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=22050, n_fft=2048, hop_length=431, n_mels=128,
                                               norm="slaney", mel_scale="slaney", pad_mode="constant", power=2.0)

    def run_torchaudio():
        for i in range(n):
            s = mel(x[i * L:(i + 1) * L])
            torchaudio.functional.amplitude_to_DB(s, 10.0, 1e-10, 10.0 * torch.log10(s.max().clamp(min=1e-10)), 80.0)
    t = timed(run_torchaudio, reps)
    out["mel_torchaudio"] = {"ms_per_slice": t["median"] / n, "x_realtime": n * 10 / (t["median"] * 1e-3), "time_ms": t}
    spec = torch.stft(x[:L], 2048, 431, window=torch.hann_window(2048), center=True, pad_mode="constant",
                      return_complex=True).abs()
    gl = torchaudio.transforms.GriffinLim(n_fft=2048, n_iter=gl_iters, hop_length=431, power=1.0, momentum=0.99,
                                          length=L, rand_init=True)
    t = timed(lambda: gl(spec), 1, warmup=0)
    out["griffin_lim_torchaudio"] = {"iterations": gl_iters, "audio_seconds": 10.0, "time_ms": t,
                                     "x_realtime": 10.0 / (t["median"] * 1e-3)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--nz", type=int, default=100)
    ap.add_argument("--size", help="HxW (overrides the configuration's)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--mode", action="append", choices=["eager", "compile", "bf16"],
                    help="repeatable; default eager on the CPU, all three on a GPU")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default 5 on the CPU, 20 on a GPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--layer-reps", type=int, default=3, help="0: no per-layer table")
    ap.add_argument("--gemm-n", type=int, default=0)
    ap.add_argument("--audio", action="store_true", help="also STFT + mel and Griffin-Lim on real music")
    ap.add_argument("--no-gan", action="store_true")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    cuda = device.type == "cuda"
    if not args.steps:
        args.steps = 20 if cuda else 5
    modes = args.mode or (["eager", "compile", "bf16"] if cuda else ["eager"])
    sync = torch.cuda.synchronize if cuda else None
    peak = gemm_peak(device, args.gemm_n or (8192 if cuda else 1536), 10 if cuda else 3, sync)
    args.peak = peak["flop_per_s"]
    print("pytorch %s on %s, %d thread(s); matrix peak %s: %.1f GFLOP/s" %
          (torch.__version__, device.type, torch.get_num_threads(), peak["what"], peak["flop_per_s"] * 1e-9))
    doc = {"framework": "pytorch " + torch.__version__, "device": device.type, "threads": torch.get_num_threads(),
           "matrix_peak": peak, "configs": []}
    if not args.no_gan:
        for name in args.config or list(CONFIGS):
            h, w, nc = CONFIGS[name]
            if args.size:
                h, w = (int(v) for v in args.size.split("x"))
            for mode in modes:
                if mode != "eager" and not cuda:
                    print("%s: mode %s needs a GPU, skipped" % (name, mode))
                    continue
                try:
                    r = bench_config(name, h, w, nc, args, device, mode)
                except Exception as e:  # torch.compile missing in PyTorch 1.x, bf16 unsupported, ...
                    print("%s %s: failed: %s" % (name, mode, e))
                    doc["configs"].append({"name": name, "mode": mode, "device": device.type, "error": str(e)})
                    continue
                s = r["step_ms"]
                print("%-11s %-7s %s %d thr batch %d: step median %.1f ms (min %.1f, max %.1f): %.2f images/s, "
                      "%.2f GFLOP/step, %.1f GFLOP/s (%.0f%% of torch.mm)" %
                      (name, mode, device.type, r["threads"], r["batch"], s["median"], s["min"], s["max"],
                       r["images_per_s"], r["flops_per_step"] * 1e-9, r["achieved_flop_per_s"] * 1e-9,
                       100 * r["fraction_of_matrix_peak"]))
                for l in r["layers"]:
                    print("   %s%d %-70s fwd %8.2f  bwd-data %8.2f  bwd-wgt %8.2f ms" %
                          (l["net"], l["stage"], l["layer"][:70], l["forward_ms"], l["backward_data_ms"],
                           l["backward_filter_ms"]))
                doc["configs"].append(r)
    if args.audio:
        a = bench_audio(args.threads)
        doc["audio"] = a
        print("audio (%d thread(s)): torchaudio mel %.2f ms/slice (%.0fx realtime); torchaudio Griffin-Lim "
              "64 it. %.0f ms per 10 s (%.1fx realtime)" %
              (args.threads, a["mel_torchaudio"]["ms_per_slice"], a["mel_torchaudio"]["x_realtime"],
               a["griffin_lim_torchaudio"]["time_ms"]["median"], a["griffin_lim_torchaudio"]["x_realtime"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
