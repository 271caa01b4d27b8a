#!/usr/bin/python3
"""Writes tests/fixtures/broken/: small damaged files (truncated, zero-length, lying headers, huge
dimensions, wrong dtype) for every reader of outside bytes. test_unit_broken_files.cpp checks that each
gives a clear error naming the file; tests/fuzz/run.sh seeds its corpora with them. Deterministic:
re-running rewrites the same bytes. Needs Debian's python3-numpy and python3-soundfile.
Usage: /usr/bin/python3 tests/make_broken_fixtures.py"""
import base64
import gzip
import io
import json
import os
import struct
import zlib

import numpy as np
import soundfile as sf

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "broken")


def put(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def npy_bytes(descr, shape, payload, fortran=False):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def safetensors_bytes(header, payload):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def png_bytes(width, height, colour_type, rows):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wav_bytes(format_tag, channels, rate, bits, frames_claimed, data):
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    data_len = frames_claimed * block
    return (b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt +
            b"data" + struct.pack("<I", data_len) + data)


# A 4×4 RGB baseline JPEG (made once with stb_image_write, quality 90).
JPEG_4x4 = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wCEAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8X"
    "GBYUGBIUFRQBAwQEBQQFCQUFCRQNCw0UFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFP/AABEIAAQA"
    "BAMBIgACEQEDEQH/xAGiAAABBQEBAQEBAQAAAAAAAAAAAQIDBAUGBwgJCgsQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQy"
    "gZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SV"
    "lpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+gEAAwEBAQEBAQEBAQAAAAAAAAEC"
    "AwQFBgcICQoLEQACAQIEBAMEBwUEBAABAncAAQIDEQQFITEGEkFRB2FxEyIygQgUQpGhscEJIzNS8BVictEKFiQ04SXxFxgZGiYnKCkqNTY3"
    "ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqCg4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS"
    "09TV1tfY2dri4+Tl5ufo6ery8/T19vf4+fr/2gAMAwEAAhEDEQA/APePBH7Enwm/4R63/wCKf/8AHl9v9mt7/hiT4Tf9C/8A+PL/APE1614I"
    "/wCRet/8+lb1dJzn/9k=")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))

    # ---- npy ----
    good = npy_bytes("<f4", "(4, 4)", np.arange(16, dtype="<f4").tobytes())
    put("npy_zero_length.npy", b"")
    put("npy_truncated_header.npy", good[:30])
    put("npy_truncated_data.npy", good[:-10])
    put("npy_huge_dimensions.npy", npy_bytes("<f4", "(1000000000, 1000000000, 1000000000)", b"\0" * 64))
    put("npy_wrong_dtype.npy", npy_bytes("<c16", "(2,)", b"\0" * 32))
    put("npy_big_endian.npy", npy_bytes(">f4", "(2,)", b"\0" * 8))
    put("npy_lying_header_length.npy", good[:8] + struct.pack("<H", 60000) + good[10:])
    put("npy_bad_magic.npy", b"\x93NUMPZ" + good[6:])

    # ---- safetensors ----
    payload = np.arange(4, dtype="<f4").tobytes()
    tensor = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    good = safetensors_bytes({"w": tensor}, payload)
    put("st_zero_length.safetensors", b"")
    put("st_truncated.safetensors", good[:-6])
    put("st_lying_header_length.safetensors", struct.pack("<Q", 1 << 62) + good[8:])
    put("st_huge_dimensions.safetensors",
        safetensors_bytes({"w": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 16]}}, payload))
    put("st_wrong_dtype.safetensors", safetensors_bytes({"w": dict(tensor, dtype="BF16")}, payload))
    put("st_lying_offsets.safetensors", safetensors_bytes({"w": dict(tensor, data_offsets=[0, 1 << 40])}, payload))
    put("st_not_json.safetensors", struct.pack("<Q", 8) + b"{nonsens" + payload)

    # ---- sidecars ----
    mel = {"kind": "mel", "sr": 22050, "slice_seconds": 1.0, "n_fft": 1024, "hop": 256, "win": 1024,
           "center": True, "pad_mode": "constant", "n_mels": 64, "fmin": 0.0, "fmax": 11025.0,
           "mel_scale": "slaney", "mel_norm": "slaney", "amin": 1e-10, "top_db": 80.0, "ref": "max",
           "frames": 64, "resize": None, "count": 1, "height": 64, "width": 64, "files": ["a.wav"],
           "slices": [{"file": 0, "start": 0.0, "ref_db": 0.0}]}
    text = json.dumps(mel)
    put("mel_sidecar_zero_length.json", b"")
    put("mel_sidecar_truncated.json", text[: len(text) // 2].encode())
    put("mel_sidecar_wrong_type.json", json.dumps(dict(mel, sr="fast")).encode())
    put("mel_sidecar_huge_dimensions.json", json.dumps(dict(mel, n_mels=10 ** 12, height=10 ** 12)).encode())
    put("mel_sidecar_lying_count.json", json.dumps(dict(mel, count=1000000)).encode())
    put("mel_sidecar_not_mel.json", json.dumps(dict(mel, kind="images")).encode())
    # An image dataset whose sidecar lies about it (and one whose sidecar is cut short).
    pixels = np.full((2, 1, 4, 4), 7, dtype="u1")
    for stem, sidecar in (("image_lying_sidecar", json.dumps({"kind": "images", "count": 3, "channels": 1,
                                                               "height": 4, "width": 4}).encode()),
                          ("image_truncated_sidecar", b'{"kind": "images", "count": 2, "chan')):
        put(stem + ".npy", npy_bytes("|u1", "(2, 1, 4, 4)", pixels.tobytes()))
        put(stem + ".json", sidecar)

    # ---- IDX ----
    def idx(magic3, dims, data):
        return b"\0\0" + bytes([magic3, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data
    image = bytes(range(16))
    put("idx_zero_length.idx", b"")
    put("idx_truncated.idx", idx(0x08, [100, 4, 4], image))
    put("idx_huge_dimensions.idx", idx(0x08, [1, 65535, 65535], image))
    put("idx_wrong_dtype.idx", idx(0x0D, [1, 4, 4], image * 4))  # 0x0D: float32 elements
    # gzipped, claims 2^31 images of 28×28 and holds one: must fail as truncated without allocating 1.6 TB.
    put("idx_lying_count.idx.gz", gzip.compress(idx(0x08, [1 << 31, 28, 28], bytes(784)), mtime=0))

    # ---- PNG / JPEG ----
    rows = b"".join(b"\0" + bytes(range(i * 12, i * 12 + 12)) for i in range(4))  # 4×4 RGB, filter 0
    png = png_bytes(4, 4, 2, rows)
    put("png_zero_length.png", b"")
    put("png_truncated.png", png[: len(png) // 2])
    # 16384×16400 RGB: 0.8 GB decoded, under stb's own 2^30-byte PNG limit; refused from the header.
    put("png_huge_dimensions.png", png_bytes(16384, 16400, 2, rows))
    put("png_wrong_depth.png", png[:24] + bytes([7]) + png[25:])  # bit depth 7 (CRC left stale as well)
    # A zero-length IDAT before the real one, which is cut short: stb memcpy'd 0 bytes to its still
    # null IDAT buffer (undefined behaviour, found by fuzz_image under UBSan); must be a plain error.
    empty_idat = struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT"))
    put("png_empty_idat_truncated.png", png[:33] + empty_idat + png[33:33 + (len(png) - 33) // 2])
    put("jpg_truncated.jpg", JPEG_4x4[: len(JPEG_4x4) * 2 // 3])
    # A DHT table whose 16 code counts sum to 4080: Debian's stb_image writes that many entries into
    # arrays of 257 (found by tests/fuzz/fuzz_image); prepare-images must refuse it before stb runs.
    dht = JPEG_4x4.index(b"\xff\xc4")
    put("jpg_huffman_overflow.jpg", JPEG_4x4[: dht + 5] + b"\xff" * 16 + JPEG_4x4[dht + 21:])
    # The same after 0xFF fill bytes before SOI, which stb skips (also found by fuzz_image).
    put("jpg_fill_huffman_overflow.jpg", b"\xff\xff" + JPEG_4x4[1: dht + 5] + b"\xff" * 16 + JPEG_4x4[dht + 21:])
    # A binary PGM whose width overflows stb's int header parser (found by fuzz_image).
    put("pgm_huge_number.pgm", b"P5\n# comment\n99999999999 4\n255\n" + bytes(16))
    sof = JPEG_4x4.index(b"\xff\xc0")
    put("jpg_huge_dimensions.jpg", JPEG_4x4[: sof + 5] + struct.pack(">HH", 20000, 20000) + JPEG_4x4[sof + 9:])

    # ---- WAV / FLAC ----
    pcm = (np.sin(np.arange(441) / 7.0) * 8000).astype("<i2").tobytes()
    put("wav_zero_length.wav", b"")
    put("wav_truncated.wav", wav_bytes(1, 1, 44100, 16, 44100, pcm))  # claims 1 s, holds 10 ms
    put("wav_lying_header.wav", wav_bytes(1, 0, 44100, 16, 441, pcm))  # zero channels
    put("wav_huge_rate.wav", wav_bytes(1, 1, 4000000000, 16, 441, pcm))
    put("wav_wrong_dtype.wav", wav_bytes(1, 1, 44100, 7, 441, pcm))  # 7-bit PCM
    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(4410) / 7.0) * 0.25, 44100, format="FLAC", subtype="PCM_16")
    flac = buf.getvalue()
    put("flac_zero_length.flac", b"")
    put("flac_truncated.flac", flac[:60])  # inside the STREAMINFO block
    put("flac_garbage.flac", b"fLaC" + bytes(range(256)) * 2)
    # ---- TensorBoard event files (TFRecord framing) ----
    def crc32c(data):
        crc = 0xFFFFFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        return crc ^ 0xFFFFFFFF

    def masked(crc):
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    def record(payload, length=None):
        head = struct.pack("<Q", len(payload) if length is None else length)
        return head + struct.pack("<I", masked(crc32c(head))) + payload + struct.pack("<I", masked(crc32c(payload)))
    event = b"\x09" + struct.pack("<d", 1.5e9) + b"\x1a\x0dbrain.Event:2"  # wall_time, file_version
    put("tb_file_version.tfevents", record(event))
    put("tb_truncated.tfevents", record(event)[:-7])
    put("tb_lying_length.tfevents", record(event, length=(1 << 64) - 2)[:12] + event)
    print("wrote", len(os.listdir(OUT)), "files to", OUT)


if __name__ == "__main__":
    main()
