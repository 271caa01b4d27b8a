#!/usr/bin/python3
# PyTorch oracle for darkstar training on a float16 mel .npy: examples/dcgan generalised exactly as engine/nn/dcgan.cpp
# (L = log2(H/4) stride-2 layers, G starts at ngf*2^(L-1), D ends at ndf*2^(L-1) in a logit + BCEWithLogitsLoss),
# init N(0, 0.02) / BN gamma N(1, 0.02), Adam(beta1, 0.999), the examples' D-then-G step. Prints Loss_D, Loss_G,
# D(x), D(G(z)) and quality figures (row-mean error vs data, pairwise diversity), writes sample grids as PGM/PNG.
import argparse, json, math, os, struct, time, zlib
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--out", required=True)
p.add_argument("--ngf", type=int, default=16)
p.add_argument("--ndf", type=int, default=8)
p.add_argument("--nz", type=int, default=100)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=2e-4)
p.add_argument("--lr-d", type=float, default=None)
p.add_argument("--beta1", type=float, default=0.5)
p.add_argument("--steps", type=int, default=1100)
p.add_argument("--every", type=int, default=100)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--size", type=int, default=0, help="train at this size (avg-pool downscale), 0 = data size")
p.add_argument("--init-from", default=None, help="folder with netG/netD.safetensors to start from")
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
np.random.seed(a.seed)
os.makedirs(a.out, exist_ok=True)

data = torch.from_numpy(np.load(a.data).astype(np.float32))
if a.size and a.size != data.shape[-1]:
    data = F.adaptive_avg_pool2d(data, a.size)
N, NC, H, W = data.shape
L = int(round(math.log2(min(H, W) / 4)))
real_rowmean = data.mean(dim=(0, 1, 3))


def G_net():
    ch = a.ngf << (L - 1)
    m = [nn.ConvTranspose2d(a.nz, ch, (H >> L, W >> L), 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(1, L):
        m += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    m += [nn.ConvTranspose2d(ch, NC, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*m)


def D_net():
    ch = a.ndf
    m = [nn.Conv2d(NC, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    for _ in range(1, L):
        m += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
        ch *= 2
    m += [nn.Conv2d(ch, 1, (H >> L, W >> L), 1, 0, bias=False)]
    return nn.Sequential(*m)


class Wrap(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.main = seq

    def forward(self, x):
        return self.main(x)


def weights_init(m):
    n = m.__class__.__name__
    if n.find("Conv") != -1:
        m.weight.data.normal_(0.0, 0.02)
    elif n.find("BatchNorm") != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


def load_st(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n]); hdr.pop("__metadata__", None)
    dt = {"F32": np.float32, "I64": np.int64}
    return {k: torch.from_numpy(np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                              dtype=dt[v["dtype"]]).reshape(v["shape"]).copy()) for k, v in hdr.items()}


netG, netD = Wrap(G_net()), Wrap(D_net())
netG.apply(weights_init); netD.apply(weights_init)
if a.init_from:
    netG.load_state_dict(load_st(os.path.join(a.init_from, "netG.safetensors")), strict=True)
    netD.load_state_dict(load_st(os.path.join(a.init_from, "netD.safetensors")), strict=True)
optD = torch.optim.Adam(netD.parameters(), lr=a.lr_d or a.lr, betas=(a.beta1, 0.999))
optG = torch.optim.Adam(netG.parameters(), lr=a.lr, betas=(a.beta1, 0.999))
crit = nn.BCEWithLogitsLoss()
fixed_z = torch.randn(64, a.nz, 1, 1)


def png(path, img):  # img: HxW float in [-1,1] -> 8-bit gray PNG
    u8 = np.clip((img + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    raw = b"".join(b"\x00" + u8[r].tobytes() for r in range(u8.shape[0]))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", u8.shape[1], u8.shape[0], 8, 0, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def grid(x):  # 64 x 1 x H x W -> 8x8 grid with 2-px black border
    g = -np.ones((8 * (H + 2) + 2, 8 * (W + 2) + 2), np.float32)
    for i in range(64):
        r, c = divmod(i, 8)
        g[2 + r * (H + 2):2 + r * (H + 2) + H, 2 + c * (W + 2):2 + c * (W + 2) + W] = x[i, 0]
    return g


def quality(fake):
    rm = fake.mean(dim=(0, 1, 3))
    rowerr = (rm - real_rowmean).abs().mean().item()
    f = fake.reshape(fake.shape[0], -1)
    pair = torch.cdist(f, f).sum().item() / (f.shape[0] * (f.shape[0] - 1)) / math.sqrt(f.shape[1])
    return rowerr, pair


rr = data[torch.randperm(N)[:64]].reshape(64, -1)
real_pair = torch.cdist(rr, rr).sum().item() / (64 * 63) / math.sqrt(rr.shape[1])
print(f"data {tuple(data.shape)} L={L} real pairwise rms dist {real_pair:.3f}  row-mean(real) row0 {real_rowmean[0]:.2f} last {real_rowmean[-1]:.2f}", flush=True)
log = open(os.path.join(a.out, "log.jsonl"), "w")
perm, pos, t0 = torch.randperm(N), 0, time.time()
with torch.no_grad():
    netG.eval(); f0 = netG(fixed_z); netG.train()
    bns = [m for m in netG.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns: m.momentum = 0.0
    netG.train(); fb = netG(fixed_z)
    for m in bns: m.momentum = 0.1
print(f"start G: eval row-mean err {quality(f0)[0]:.3f} pairwise {quality(f0)[1]:.3f} std {f0.std():.3f}"
      f" | batch-stats row-mean err {quality(fb)[0]:.3f} pairwise {quality(fb)[1]:.3f} std {fb.std():.3f}", flush=True)
if a.steps == 0:
    png(os.path.join(a.out, "start_eval.png"), grid(f0.numpy())); png(os.path.join(a.out, "start_bs.png"), grid(fb.numpy()))
for step in range(1, a.steps + 1):
    if pos + a.batch > N:
        perm, pos = torch.randperm(N), 0
    real = data[perm[pos:pos + a.batch]]; pos += a.batch
    B = real.shape[0]
    netD.zero_grad()
    out_r = netD(real).view(-1)
    errD_real = crit(out_r, torch.ones(B))
    errD_real.backward()
    z = torch.randn(B, a.nz, 1, 1)
    fake = netG(z)
    out_f = netD(fake.detach()).view(-1)
    errD_fake = crit(out_f, torch.zeros(B))
    errD_fake.backward()
    optD.step()
    netG.zero_grad()
    out_f2 = netD(fake).view(-1)
    errG = crit(out_f2, torch.ones(B))
    errG.backward()
    optG.step()
    rec = dict(step=step, Loss_D=(errD_real + errD_fake).item(), Loss_G=errG.item(), D_x=torch.sigmoid(out_r).mean().item(),
               D_G_z1=torch.sigmoid(out_f).mean().item(), D_G_z2=torch.sigmoid(out_f2).mean().item())
    if step % 10 == 0 or step == a.steps:
        with torch.no_grad():
            netG.eval(); fe = netG(fixed_z); netG.train()
            bns = [m for m in netG.modules() if isinstance(m, nn.BatchNorm2d)]
            for m in bns: m.momentum = 0.0  # batch stats without touching the running stats
            ft = netG(fixed_z)
            for m in bns: m.momentum = 0.1
        rec["rowerr_eval"], rec["pair_eval"] = quality(fe)
        rec["rowerr_bs"], rec["pair_bs"] = quality(ft)
        log.write(json.dumps(rec) + "\n"); log.flush()
    if step % a.every == 0 or step == a.steps:
        print(f"[{step}] Loss_D {rec['Loss_D']:.3f} Loss_G {rec['Loss_G']:.3f} D(x) {rec['D_x']:.3f} D(G(z)) {rec['D_G_z1']:.3f}/{rec['D_G_z2']:.3f}"
              f" rowerr eval {rec['rowerr_eval']:.3f} bs {rec['rowerr_bs']:.3f} pair eval {rec['pair_eval']:.3f} bs {rec['pair_bs']:.3f}"
              f"  {time.time() - t0:.0f}s", flush=True)
        png(os.path.join(a.out, f"step_{step:07d}.png"), grid(fe.numpy()))
png(os.path.join(a.out, "real.png"), grid(data[:64].numpy()))
