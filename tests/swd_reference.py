#!/usr/bin/env python3
"""A small numpy reference of the sliced Wasserstein distance of Karras et al. 2017 (progressive
growing of GANs, metrics/sliced_wasserstein.py), written from their procedure, in float64, and the
fixture tests/test_unit_swd.cpp compares darkstar's engine/inspect/swd.cpp with.

Steps, per set: Laplacian pyramid (5x5 binomial kernel, borders mirrored without repeating the edge
pixel, as scipy.ndimage's "mirror" and cv2.pyrDown/pyrUp), 7x7 neighbourhoods at the given centres,
descriptors normalised per channel by the set's own mean and population std; per level the mean over
directions of mean |sort(A.d) - sort(B.d)|, x1e3. Two generalisations darkstar makes are exercised too:
odd sides (halved to ceil, the upsampled level cropped) and non-square images.

The randomness (patch centres, unit directions) is drawn here with numpy.random.RandomState(seed) and
stored in the fixture, so both sides use identical numbers.

Regenerate (Debian's python3-numpy; no scipy needed):
    /usr/bin/python3 tests/swd_reference.py tests/fixtures/swd
"""
import json
import os
import sys

import numpy as np

KERNEL = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16.0


def blur(planes, gain):
    """planes (..., h, w) convolved with the separable binomial kernel, mirrored borders."""
    p = np.pad(planes, [(0, 0)] * (planes.ndim - 2) + [(2, 2), (2, 2)], mode="reflect")
    h, w = planes.shape[-2:]
    rows = sum(KERNEL[k] * p[..., :, k:k + w] for k in range(5))
    return gain * sum(KERNEL[k] * rows[..., k:k + h, :] for k in range(5))


def pyr_down(x):
    return blur(x, 1.0)[..., ::2, ::2]


def pyr_up(c, h, w):
    up = np.zeros(c.shape[:-2] + (2 * c.shape[-2], 2 * c.shape[-1]))
    up[..., ::2, ::2] = c
    return blur(up, 4.0)[..., :h, :w]


def level_count(h, w, min_res=16):
    n = 0
    while h >= min_res and w >= min_res:
        n += 1
        h, w = (h + 1) // 2, (w + 1) // 2
    return n


def laplacian_pyramid(images, levels):
    pyramid = [images.astype(np.float64)]
    for _ in range(1, levels):
        coarse = pyr_down(pyramid[-1])
        h, w = pyramid[-1].shape[-2:]
        pyramid[-1] = pyramid[-1] - pyr_up(coarse, h, w)
        pyramid.append(coarse)
    return pyramid


def descriptors(level, centres, patch, per_image):
    r = patch // 2
    out = []
    for i, (cy, cx) in enumerate(centres):
        img = i // per_image
        out.append(level[img, :, cy - r:cy + r + 1, cx - r:cx + r + 1])
    d = np.stack(out)  # (n, C, patch, patch)
    d = d - d.mean(axis=(0, 2, 3), keepdims=True)
    sd = d.std(axis=(0, 2, 3), keepdims=True)
    d = d / np.where(sd > 0, sd, 1.0)
    return d.reshape(d.shape[0], -1)


def sliced_wasserstein(a, b, directions, repeats):
    per = directions.shape[0] // repeats
    results = []
    for r in range(repeats):
        dirs = directions[r * per:(r + 1) * per].T  # (dims, per)
        pa = np.sort(a @ dirs, axis=0)
        pb = np.sort(b @ dirs, axis=0)
        results.append(np.mean(np.abs(pa - pb)))
    return float(np.mean(results))


def swd(a, b, centres_a, centres_b, directions, patch, per_image, repeats):
    levels = len(directions)
    pa, pb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    return [1e3 * sliced_wasserstein(descriptors(pa[l], centres_a[l], patch, per_image),
                                     descriptors(pb[l], centres_b[l], patch, per_image), directions[l], repeats)
            for l in range(levels)]


def make_case(out, name, rng, n, c, h, w, patch=7, per_image=16, repeats=2, per_repeat=16):
    # Images with structure at several scales: smooth random fields plus edges, in [-1, 1] as float32.
    def images():
        base = rng.standard_normal((n, c, h, w))
        for _ in range(2):
            base = blur(base, 1.0)
        edges = (rng.random((n, 1, h, w)) > 0.7).astype(np.float64)
        x = np.tanh(2.0 * base) * 0.7 + 0.3 * edges
        return np.clip(x, -1, 1).astype(np.float32)

    a, b = images(), images()
    levels = level_count(h, w)
    r = patch // 2
    centres_a, centres_b, directions = [], [], []
    for l in range(levels):
        hl, wl = h, w
        for _ in range(l):
            hl, wl = (hl + 1) // 2, (wl + 1) // 2
        for centres in (centres_a, centres_b):
            ys = rng.randint(r, hl - r, size=n * per_image)
            xs = rng.randint(r, wl - r, size=n * per_image)
            centres.append(np.stack([ys, xs], axis=1).astype(np.int32))
        d = rng.standard_normal((repeats * per_repeat, c * patch * patch))
        d /= np.sqrt(np.sum(d * d, axis=1, keepdims=True))
        directions.append(d.astype(np.float32))
    np.save(os.path.join(out, name + "_a.npy"), a)
    np.save(os.path.join(out, name + "_b.npy"), b)
    for l in range(levels):
        np.save(os.path.join(out, "%s_centres_a_%d.npy" % (name, l)), centres_a[l])
        np.save(os.path.join(out, "%s_centres_b_%d.npy" % (name, l)), centres_b[l])
        np.save(os.path.join(out, "%s_directions_%d.npy" % (name, l)), directions[l])
    # The reference runs on exactly the stored float32 values, in float64.
    levels_ab = swd(a.astype(np.float64), b.astype(np.float64), centres_a, centres_b,
                    [d.astype(np.float64) for d in directions], patch, per_image, repeats)
    return {"levels": levels, "patch_size": patch, "patches_per_image": per_image,
            "direction_repeats": repeats, "directions_per_repeat": per_repeat,
            "swd_x1e3": levels_ab, "mean": float(np.mean(levels_ab))}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures", "swd")
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(2017)
    cases = {
        "rgb32": make_case(out, "rgb32", rng, n=4, c=3, h=32, w=32),      # Karras's layout: 2 levels
        "odd33x40": make_case(out, "odd33x40", rng, n=3, c=1, h=33, w=40),  # an odd side halved, cropped
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(cases, f, indent=2)
        f.write("\n")
    print(json.dumps({k: v["swd_x1e3"] for k, v in cases.items()}))


if __name__ == "__main__":
    main()
