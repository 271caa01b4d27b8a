#!/usr/bin/python3
"""Loads darkstar's netG.safetensors / netD.safetensors strictly into PyTorch's examples/dcgan modules
(generalised to the checkpoint's size) and runs G on noise. Run with Debian's interpreter:
    /usr/bin/python3 tests/check_pytorch_load.py RUN_DIR
Not part of ctest (the tests never need Python); a manual check that the names and shapes are PyTorch's."""
import json, math, struct, sys
import numpy as np
import torch
import torch.nn as nn

def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "I64": np.int64, "F16": np.float16, "I32": np.int32, "U8": np.uint8}
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta

def build(cfg):
    h, w, nc, nz, ngf, ndf = (cfg[k] for k in ("height", "width", "channels", "nz", "ngf", "ndf"))
    L = int(math.log2(min(h, w) // 4))
    h0, w0 = h >> L, w >> L
    g = [nn.ConvTranspose2d(nz, ngf * 2 ** (L - 1), (h0, w0), 1, 0, bias=False), nn.BatchNorm2d(ngf * 2 ** (L - 1)), nn.ReLU(True)]
    ch = ngf * 2 ** (L - 1)
    for _ in range(1, L):
        g += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    g += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
    d = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    ch = ndf
    for _ in range(1, L):
        d += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, inplace=True)]
        ch *= 2
    d += [nn.Conv2d(ch, 1, (h0, w0), 1, 0, bias=False), nn.Sigmoid()]
    G, D = nn.Module(), nn.Module()
    G.main, D.main = nn.Sequential(*g), nn.Sequential(*d)
    return G, D

run = sys.argv[1]
g_state, meta = read_safetensors(run + "/netG.safetensors")
d_state, _ = read_safetensors(run + "/netD.safetensors")
cfg = json.loads(meta["darkstar.model"])
G, D = build(cfg)
G.load_state_dict(g_state, strict=True)
D.load_state_dict(d_state, strict=True)
G.eval(); D.eval()
with torch.no_grad():
    x = G.main(torch.randn(4, cfg["nz"], 1, 1))
    p = D.main(x)
print("strict load OK:", cfg, "G out", tuple(x.shape), "range", float(x.min()), float(x.max()), "D out", p.flatten().tolist())

# Optional: darkstar's `sample --z Z.npy --out X.npy` against PyTorch's eval-mode G on the same noise.
if len(sys.argv) >= 4:
    z = torch.from_numpy(np.load(sys.argv[2]).astype(np.float32)).reshape(-1, cfg["nz"], 1, 1)
    ours = np.load(sys.argv[3])
    with torch.no_grad():
        ref = G.main(z).numpy()
    err = np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30)
    print("darkstar sample vs PyTorch G(z), eval mode: max-normalised error %.2e" % err)
    sys.exit(0 if err < 1e-4 else 1)
