#!/usr/bin/python3
# Checks a `train --dump` folder against PyTorch (Debian's python3-torch): rebuilds examples/dcgan's
# modules from the dumped parameters, replays the step's three passes from the dumped inputs (the real
# batch and z) and compares every dumped activation, activation gradient and parameter gradient.
# By hand, not in CI (CI never needs Python): /usr/bin/python3 tests/check_dump_torch.py RUN/dump/step_NNNNNNN
# Exit 0 when every tensor agrees to 1e-4 of its own max |value| (float32, other summation orders).
import json
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

d = sys.argv[1].rstrip("/") + "/"
index = json.load(open(d + "index.json"))
T = {e["name"]: torch.from_numpy(np.load(d + e["file"])) for e in index["tensors"]}
entries = {e["name"]: e for e in index["tensors"]}
torch.set_grad_enabled(True)
worst = {}


def compare(name, got):
    if name not in T:
        raise SystemExit(f"missing in the dump: {name}")
    want = T[name]
    if tuple(want.shape) != tuple(got.shape):
        raise SystemExit(f"{name}: shape {tuple(want.shape)} dumped, PyTorch {tuple(got.shape)}")
    scale = float(want.abs().max()) or 1.0
    worst[name] = float((got.detach().double() - want.double()).abs().max()) / scale


def modules_of(net, forward_pass):
    """[(K, type)] of the net's modules in Sequential order, from the dumped activations."""
    mods = []
    for e in index["tensors"]:
        if e["pass"] == forward_pass and e["net"] == net and e["kind"] == "activation" and e["module"] != "input":
            mods.append((int(e["layer"].split(".")[2]), e["module"]))
    return sorted(mods)


def build(net, forward_pass, param_pass):
    mods = modules_of(net, forward_pass)
    seq = []
    for i, (k, kind) in enumerate(mods):
        prefix = f"{param_pass}.{net}.main.{k}."
        if kind in ("Conv2d", "ConvTranspose2d"):
            w = T[prefix + "weight"]
            first, last = i == 0, i == len(mods) - 1
            if kind == "Conv2d":
                stride, pad = (1, 0) if last else (2, 1)
                m = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride, pad, bias=False)
            else:
                stride, pad = (1, 0) if first else (2, 1)
                m = nn.ConvTranspose2d(w.shape[0], w.shape[1], tuple(w.shape[2:]), stride, pad, bias=False)
            m.weight.data.copy_(w)
        elif kind == "BatchNorm2d":
            m = nn.BatchNorm2d(T[prefix + "weight"].shape[0], eps=1e-5)
            m.weight.data.copy_(T[prefix + "weight"])
            m.bias.data.copy_(T[prefix + "bias"])
        elif kind == "ReLU":
            m = nn.ReLU()
        elif kind == "LeakyReLU":
            m = nn.LeakyReLU(0.2)
        elif kind == "Tanh":
            m = nn.Tanh()
        else:
            raise SystemExit(f"unknown module {kind}")
        seq.append((k, m.train()))
    return seq


def run(seq, x):
    outs = []
    for k, m in seq:
        x = m(x)
        x.retain_grad()
        outs.append((k, x))
    return x, outs


def check_pass(pass_name, net, outs, inp=None):
    for k, y in outs:
        compare(f"{pass_name}.{net}.main.{k}.out", y)
    return outs


def bce(logits, label):
    return F.binary_cross_entropy_with_logits(logits.view(-1), torch.full((logits.numel(),), label))


# D_real and D_fake with the pre-update D, grads accumulating as in the example.
D = build("D", "D_real", "D_step")
G = build("G", "D_fake", "G_step")  # G's parameters do not change before its own Adam step
real = T["D_real.D.input"].clone()
logits, outs = run(D, real)
bce(logits, 1.0).backward()
for k, y in outs:
    compare(f"D_real.D.main.{k}.out", y)
    compare(f"D_real.D.main.{k}.out.grad", y.grad)

z = T["D_fake.G.input"].clone()
fake, g_outs = run(G, z)
for k, y in g_outs:
    compare(f"D_fake.G.main.{k}.out", y)
logits, outs = run(D, fake.detach())
bce(logits, 0.0).backward()
for k, y in outs:
    compare(f"D_fake.D.main.{k}.out", y)
    compare(f"D_fake.D.main.{k}.out.grad", y.grad)
for k, m in D:
    for pname, p in m.named_parameters():
        compare(f"D_step.D.main.{k}.{pname}.grad", p.grad)

# G step: the updated D (dumped as G_step.D.*) on G(z), back into G.
D2 = build("D", "G_step", "G_step")
x = fake
x.retain_grad()
logits, outs = run(D2, x)
bce(logits, 1.0).backward()
for k, y in outs:
    compare(f"G_step.D.main.{k}.out", y)
    compare(f"G_step.D.main.{k}.out.grad", y.grad)
compare("G_step.D.input.grad", x.grad)
for k, y in g_outs:
    compare(f"G_step.G.main.{k}.out.grad", y.grad)
for k, m in G:
    for pname, p in m.named_parameters():
        compare(f"G_step.G.main.{k}.{pname}.grad", p.grad)

bad = {n: e for n, e in worst.items() if not e <= 1e-4}
top = sorted(worst.items(), key=lambda kv: -kv[1])[:5]
print(f"{len(worst)} tensors of {len(T)} dumped compared with PyTorch {torch.__version__}; worst normalised errors:")
for n, e in top:
    print(f"  {e:.2e}  {n}")
unchecked = sorted(set(T) - set(worst) - {n for n, e in entries.items() if e["kind"] == "parameter"})
print("not compared (inputs and parameters are what the replay starts from):", unchecked)
if bad:
    print("FAILED:", bad)
    sys.exit(1)
print("all within 1e-4 of each tensor's max |value|")
