#!/usr/bin/python3
# Regenerates tests/fixtures/tiny.safetensors and tests/fixtures/tiny_f16.npy, the outside-written files
# that tests/test_unit_formats.cpp reads back. Run with Debian's interpreter: /usr/bin/python3 tests/make_format_fixtures.py
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

# float32 inputs whose float16 rounding numpy decides (ties, subnormals, overflow); the C++ test holds
# the same list as hex literals and checks float_to_half against the bits numpy stored.
F16_SOURCES = [
    "0x0p+0", "-0x0p+0", "0x1p+0", "-0x1.8p+1", "0x1.ffcp+15", "0x1.ffdp+15", "0x1.ffep+15", "0x1p+16",
    "0x1p-24", "0x1p-25", "0x1.8p-25", "0x1.8p-24", "0x1p-26", "0x1.ff8p-15", "0x1p-14", "0x1.002p+0",
    "0x1.006p+0", "0x1.0061p+0", "0x1.99999ap-4", "0x1.555556p-2", "-0x1.a36e2ep-16", "inf", "-inf", "nan",
]


def write_safetensors(path, tensors, metadata):
    """A hand-written safetensors writer, independent of darkstar's: name-sorted data, Python's default
    JSON spacing, header padded with spaces to a multiple of 8."""
    names = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("float64"): "F64",
             np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        array = tensors[name].astype(tensors[name].dtype.newbyteorder("<"))  # keeps 0-d arrays 0-d
        blob = array.tobytes(order="C")
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    tensors = {
        "main.0.weight": (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) / 4,  # [-0.625 .. 0.625]
        "main.1.num_batches_tracked": np.array(7, dtype=np.int64),                  # a 0-d tensor
        "big": np.array([-(2**40), 2**40 + 3], dtype=np.int64),
        "half": np.array([1.0, -2.0, 65504.0, 2.0**-24], dtype=np.float16),
        "bytes": np.array([[0, 255], [128, 7]], dtype=np.uint8),
        "ints": np.array([-2147483648, 2147483647, 0], dtype=np.int32),
        "double": np.array([np.pi], dtype=np.float64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    write_safetensors(os.path.join(FIXTURES, "tiny.safetensors"), tensors,
                      {"format": "pt", "note": "made by tests/make_format_fixtures.py"})

    sources = np.array([float.fromhex(s) for s in F16_SOURCES], dtype=np.float32).reshape(4, 6)
    with np.errstate(over="ignore"):  # overflow to inf is one of the cases under test
        halves = sources.astype(np.float16)
    np.save(os.path.join(FIXTURES, "tiny_f16.npy"), halves)


if __name__ == "__main__":
    main()
