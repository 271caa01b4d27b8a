#!/usr/bin/python3
# Regenerates tests/fixtures/dcgan_tiny.safetensors: PyTorch's record of six whole DCGAN training steps, the oracle for darkstar's Generator/Discriminator/Adam/trainer step.
# Run with Debian's interpreter (where python3-torch lives): /usr/bin/python3 tests/make_torch_fixture.py
#
# The model and the step are those of PyTorch's examples/dcgan/main.py (github.com/pytorch/examples, dcgan/main.py:
# _netG/_netD, weights_init, the "(1) Update D network ... (2) Update G network" loop), generalised to 32x32
# (L = log2(32/4) = 3 stride-2 layers, so G starts at ngf*4 and D ends at ndf*4) and with D's final Sigmoid + BCELoss
# replaced by a logit + BCEWithLogitsLoss, which is what darkstar trains (the same loss, computed stably).
#
# Tensors written (shape legend: B batch, NZ noise size, C/H/W image; names of state_dicts are PyTorch's own):
#   real                          B x nc x H x W, uniform in [-1, 1], the same real batch at every step
#   z.<t>                         B x nz x 1 x 1, t = 1..6, torch.randn noise of step t
#   init.netG.<name>, init.netD.<name>       full state_dict before step 1 (num_batches_tracked: I64, 0-d)
#   step<t>.netG.<name>, step<t>.netD.<name> full state_dict after step t (D's BN stats update 3x per step, G's once)
#   step<t>.{errD_real,errD_fake,errG,D_x,D_G_z1,D_G_z2}   shape [1] scalars of step t
#   step1.grad.netD.<param>       D's .grad just before optimizerD.step() (errD_real + errD_fake, accumulated)
#   step1.grad.netG.<param>       G's .grad just before optimizerG.step()
#   step1.fake                    G(z.1) in training mode, B x nc x H x W
#   step1.logits_real, step1.logits_fake, step1.logits_fake_after   D's outputs [B]: D(real), D(fake) before
#                                 optimizerD.step(), D(fake) after it (the one errG is computed from)
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "dcgan_tiny.safetensors")

NZ, NGF, NDF, NC = 8, 4, 4, 3
HEIGHT = WIDTH = 32
BATCH = 4
LR, BETA1, BETA2, EPS = 2e-4, 0.5, 0.999, 1e-8
STEPS = 6
SEED = 1234


class Generator(nn.Module):
    """examples/dcgan _netG at 32x32: nz x 1 x 1 -> (ngf*4) x 4 x 4 -> (ngf*2) x 8 x 8 -> ngf x 16 x 16 -> nc x 32 x 32."""

    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(NGF * 4), nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF), nn.ReLU(True),
            nn.ConvTranspose2d(NGF, NC, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class Discriminator(nn.Module):
    """examples/dcgan _netD at 32x32, ending in a logit: nc x 32 x 32 -> ndf x 16 x 16 -> (ndf*2) x 8 x 8 -> (ndf*4) x 4 x 4 -> 1."""

    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(NC, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(NDF * 4, 1, 4, 1, 0, bias=False))

    def forward(self, x):
        return self.main(x)


def weights_init(m):
    """examples/dcgan's weights_init, with the same class-name test and the same draw order (module order)."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        m.weight.data.normal_(0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


def write_safetensors(path, tensors, metadata):
    """A hand-written safetensors writer (kept independent of darkstar's): name-sorted data, header padded with
    spaces to a multiple of 8, little-endian raw data."""
    names = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        # astype copies to C order and, unlike np.ascontiguousarray, keeps 0-d arrays (num_batches_tracked) 0-d
        array = tensors[name].astype(tensors[name].dtype.newbyteorder("<"), order="C")
        blob = array.tobytes(order="C")
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors_numpy(path):
    """An independent reader (numpy + struct only) to prove the writer: parses the header itself and checks
    that the data regions tile the payload exactly, in name order."""
    with open(path, "rb") as f:
        raw = f.read()
    (header_size,) = struct.unpack("<Q", raw[:8])
    assert header_size % 8 == 0, header_size
    header = json.loads(raw[8:8 + header_size].decode("utf-8"))
    payload = raw[8 + header_size:]
    metadata = header.pop("__metadata__")
    dtypes = {"F32": np.dtype("<f4"), "I64": np.dtype("<i8")}
    out, expected_begin = {}, 0
    for name in sorted(header):
        entry = header[name]
        begin, end = entry["data_offsets"]
        assert begin == expected_begin, (name, begin, expected_begin)
        dtype = dtypes[entry["dtype"]]
        count = int(np.prod(entry["shape"], dtype=np.int64))
        assert end - begin == count * dtype.itemsize, name
        out[name] = np.frombuffer(payload[begin:end], dtype=dtype).reshape(entry["shape"])
        expected_begin = end
    assert expected_begin == len(payload), (expected_begin, len(payload))
    return out, metadata


def to_numpy(t):
    return t.detach().cpu().clone().numpy()


def scalar(t):
    return np.array([t.item()], dtype=np.float32)


def main():
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)  # one reduction order, so reruns give identical bits
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)

    # Draw order (part of the fixture's meaning): G's init, D's init, real, then z.1 .. z.6.
    netG = Generator()
    netG.apply(weights_init)
    netD = Discriminator()
    netD.apply(weights_init)
    real = torch.rand(BATCH, NC, HEIGHT, WIDTH) * 2 - 1
    noises = [torch.randn(BATCH, NZ, 1, 1) for _ in range(STEPS)]

    tensors = {"real": to_numpy(real)}
    for t, z in enumerate(noises, 1):
        tensors[f"z.{t}"] = to_numpy(z)

    def snapshot(prefix):
        for net_name, net in (("netG", netG), ("netD", netD)):
            for name, value in net.state_dict().items():
                tensors[f"{prefix}.{net_name}.{name}"] = to_numpy(value)

    snapshot("init")

    criterion = nn.BCEWithLogitsLoss()
    optimizerD = optim.Adam(netD.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS)
    optimizerG = optim.Adam(netG.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS)
    netG.train()
    netD.train()

    for t, z in enumerate(noises, 1):
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        logits_real = netD(real).view(-1)
        errD_real = criterion(logits_real, torch.ones(BATCH))
        errD_real.backward()
        D_x = torch.sigmoid(logits_real).mean()

        fake = netG(z)
        logits_fake = netD(fake.detach()).view(-1)
        errD_fake = criterion(logits_fake, torch.zeros(BATCH))
        errD_fake.backward()
        D_G_z1 = torch.sigmoid(logits_fake).mean()
        if t == 1:
            for name, p in netD.named_parameters():
                tensors[f"step1.grad.netD.{name}"] = to_numpy(p.grad)
        optimizerD.step()

        # (2) Update G: maximize log(D(G(z)))
        netG.zero_grad()
        logits_fake_after = netD(fake).view(-1)
        errG = criterion(logits_fake_after, torch.ones(BATCH))
        errG.backward()
        D_G_z2 = torch.sigmoid(logits_fake_after).mean()
        if t == 1:
            for name, p in netG.named_parameters():
                tensors[f"step1.grad.netG.{name}"] = to_numpy(p.grad)
        optimizerG.step()

        if t == 1:
            tensors["step1.fake"] = to_numpy(fake)
            tensors["step1.logits_real"] = to_numpy(logits_real)
            tensors["step1.logits_fake"] = to_numpy(logits_fake)
            tensors["step1.logits_fake_after"] = to_numpy(logits_fake_after)
        for key, value in (("errD_real", errD_real), ("errD_fake", errD_fake), ("errG", errG),
                           ("D_x", D_x), ("D_G_z1", D_G_z1), ("D_G_z2", D_G_z2)):
            tensors[f"step{t}.{key}"] = scalar(value)
        snapshot(f"step{t}")
        print(f"step {t}: errD_real {errD_real.item():.6f} errD_fake {errD_fake.item():.6f} "
              f"errG {errG.item():.6f} D(x) {D_x.item():.6f} D(G(z)) {D_G_z1.item():.6f} / {D_G_z2.item():.6f}")

    for name, value in tensors.items():
        assert value.dtype in (np.float32, np.int64), (name, value.dtype)
        assert np.all(np.isfinite(value)), name

    metadata = {
        "format": "pt",
        "nz": str(NZ), "ngf": str(NGF), "ndf": str(NDF), "nc": str(NC),
        "height": str(HEIGHT), "width": str(WIDTH), "batch": str(BATCH),
        "lr": repr(LR), "beta1": repr(BETA1), "beta2": repr(BETA2), "eps": repr(EPS),
        "steps": str(STEPS), "seed": str(SEED),
        "loss": "BCEWithLogitsLoss (mean)",
        "torch_version": torch.__version__,
        "note": "made by `/usr/bin/python3 tests/make_torch_fixture.py`: PyTorch examples/dcgan/main.py at 32x32, "
                "D ends in a logit; see the script's header for every tensor's meaning",
    }
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    write_safetensors(FIXTURE, tensors, metadata)

    # Self-check of the hand writer: read the file back with numpy alone and compare bit for bit.
    read, read_metadata = read_safetensors_numpy(FIXTURE)
    assert read_metadata == metadata
    assert sorted(read) == sorted(tensors), set(read) ^ set(tensors)
    for name in tensors:
        assert read[name].shape == tensors[name].shape, name
        assert read[name].dtype == tensors[name].dtype, name
        assert read[name].tobytes() == tensors[name].tobytes(), name  # bit for bit, NaN-safe
    # And against the live modules, so a snapshot mix-up (wrong net, wrong step) would show.
    assert np.array_equal(read["step6.netG.main.0.weight"], to_numpy(netG.main[0].weight))
    assert np.array_equal(read["step6.netD.main.6.running_var"], to_numpy(netD.main[6].running_var))
    assert read["step6.netD.main.3.num_batches_tracked"] == 3 * STEPS
    assert read["step6.netG.main.1.num_batches_tracked"] == STEPS
    assert read["init.netD.main.3.num_batches_tracked"] == 0
    assert not np.array_equal(read["init.netG.main.0.weight"], read["step1.netG.main.0.weight"])
    # The stored names are exactly the modules' (strict load), the promise darkstar's checkpoints make too.
    for net_name, net in (("netG", Generator()), ("netD", Discriminator())):
        prefix = f"step6.{net_name}."
        net.load_state_dict({k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in read.items()
                             if k.startswith(prefix)}, strict=True)

    size = os.path.getsize(FIXTURE)
    print(f"wrote {FIXTURE}: {len(tensors)} tensors, {size} bytes; self-check passed")


if __name__ == "__main__":
    main()
