"""Readers for the repository's reference fixtures, in plain Python + numpy (no Pillow, no safetensors package),
so the tests run wherever numpy does.

- safetensors: the reference outputs of scripts/fixtures/gen_models.py (transformers),
- PNG (8-bit, non-interlaced): the uint8 crops of scripts/fixtures/gen_images.py (Pillow + torchvision),
- BMP (uncompressed 8/24/32-bit): fixture inputs, decoded to the pixels Pillow's `Image.open` gives (the tests
  check this against the sha256 that gen_images.py recorded from Pillow).
"""

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

REPO = Path(os.environ.get("CLIP_REPO", Path(__file__).resolve().parents[3]))
FIXTURES = REPO / "fixtures"

# OpenAI's normalisation (clip.clip._transform), in float32 as torchvision computes it.
OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path):
    """All tensors of a .safetensors file as numpy arrays (the format: u64 header length, JSON header, data)."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        tensors[name] = np.frombuffer(body[start:end], dtype=dtype).reshape(info["shape"])
    return tensors


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(path):
    """An 8-bit non-interlaced grey / RGB / RGBA PNG as a uint8 array (HxW or HxWxC)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 6: 4}[colour]
    assert depth == 8 and interlace == 0, f"{path}: only 8-bit non-interlaced PNGs are read here"
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = prev[x]
            up_left = prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[x] = (line[x] + _paeth(left, up, up_left)) & 0xFF
        out[y * stride : (y + 1) * stride] = line
        prev = line
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(shape)


def read_bmp(path):
    """An uncompressed BMP as Pillow opens it: 24-bit -> RGB, 32-bit with BGRA masks -> RGBA, 8-bit with a grey
    palette -> L (HxW)."""
    data = Path(path).read_bytes()
    assert data[:2] == b"BM", path
    (offset,) = struct.unpack("<I", data[10:14])
    (header_size,) = struct.unpack("<I", data[14:18])
    width, height = struct.unpack("<ii", data[18:26])
    (bpp,) = struct.unpack("<H", data[28:30])
    (compression,) = struct.unpack("<I", data[30:34])
    top_down = height < 0
    height = abs(height)
    stride = (width * bpp + 31) // 32 * 4
    rows = [data[offset + y * stride : offset + y * stride + width * bpp // 8] for y in range(height)]
    if not top_down:
        rows.reverse()
    pixels = np.frombuffer(b"".join(rows), dtype=np.uint8)
    if bpp == 24 and compression == 0:
        return pixels.reshape(height, width, 3)[..., ::-1].copy()
    if bpp == 32 and compression == 3:
        masks = struct.unpack("<IIII", data[54:70])
        assert header_size >= 108 and masks == (0xFF0000, 0xFF00, 0xFF, 0xFF000000), path
        return pixels.reshape(height, width, 4)[..., [2, 1, 0, 3]].copy()
    if bpp == 8 and compression == 0:
        (colours,) = struct.unpack("<I", data[46:50])
        palette = np.frombuffer(data[14 + header_size : 14 + header_size + 4 * (colours or 256)], dtype=np.uint8)
        palette = palette.reshape(-1, 4)[:, :3]
        assert (palette == palette[:, :1]).all(), f"{path}: not a grey palette"
        return palette[pixels.reshape(height, width), 0].copy()
    raise AssertionError(f"{path}: {bpp}-bit BMP with compression {compression} is not read here")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def image_manifest():
    """fixtures/images/manifest.json: one entry per input image (Pillow's mode, size, pixel digest, sizes)."""
    with open(FIXTURES / "images" / "manifest.json", encoding="utf-8") as f:
        return json.load(f)


def normalize(rgb):
    """torchvision's ToTensor + Normalize(OpenAI mean/std) on an HxWx3 uint8 image, in float32: CHW."""
    x = rgb.astype(np.float32) / np.float32(255.0)
    return ((x - OPENAI_MEAN) / OPENAI_STD).transpose(2, 0, 1)
