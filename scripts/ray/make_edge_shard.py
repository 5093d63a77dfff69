#!/usr/bin/env python3
"""Write one small WebDataset shard of awkward samples, to check that the Ray pipeline (examples/ray/embed_shards.py)
and `clip inference` treat them alike: which samples are skipped, which caption is kept, which image member is used.

    python3 scripts/ray/make_edge_shard.py --photos /tmp/photos1000 --out /tmp/ray-shards/00004.tar --shard-id 4

Samples (img2dataset layout: {key}.jpg|png, {key}.json, {key}.txt, members of a sample sorted by extension; keys as
img2dataset's compute_key with 10000 samples per shard and 5 shard digits):
  0  a photo, a caption with accents, CJK and an emoji
  1  a photo, a caption far longer than CLIP's 77-token context (must be truncated, not rejected)
  2  a photo, an empty caption
  3  a photo and its .json, no .txt
  4  a PNG image (RGB gradient, written with zlib) instead of a JPEG
  5  a grayscale PNG
  6  bytes that are no image at all, as .jpg (must be skipped and counted)
  7  a JPEG cut after its first 600 bytes (whatever the decoder does, both paths must agree)
  8  a .json and a .txt but no image member
  9  a photo whose .json has extra fields (nested object, number, null)
 10  a PNG stored as .jpg (the member name lies about the format)
 11  a caption with leading and trailing whitespace and a newline
 12  a caption that is not UTF-8 (Latin-1 bytes)
 13  a photo whose member names are upper case ({key}.JPG, {key}.TXT)
Standard library only; deterministic (fixed mtimes and names).
"""
import argparse
import io
import json
import os
import struct
import sys
import tarfile
import zlib

FIXED_MTIME = 1_700_000_000


def png(width, height, channels):
    """A gradient PNG (colour type 2 RGB or 0 grayscale, 8 bits), encoded by hand with zlib."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            if channels == 3:
                rows += bytes(((x * 255) // max(1, width - 1), (y * 255) // max(1, height - 1), 128))
            else:
                rows.append(((x + y) * 255) // max(1, width + height - 2))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0)
    idat = zlib.compress(bytes(rows), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = FIXED_MTIME
    info.mode = 0o444
    info.uname = info.gname = "bigdata"
    tar.addfile(info, io.BytesIO(payload))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", required=True, help="folder of JPEG photos (the first few, sorted, are used)")
    ap.add_argument("--out", required=True, help="the .tar to write")
    ap.add_argument("--shard-id", type=int, default=0, help="shard id used in the keys (default 0)")
    args = ap.parse_args()
    photos = sorted(os.path.join(args.photos, n) for n in os.listdir(args.photos)
                    if n.lower().endswith((".jpg", ".jpeg")))
    if len(photos) < 9:
        sys.exit(f"need at least 9 JPEG photos in {args.photos}")

    def photo(i):
        with open(photos[i], "rb") as f:
            return f.read()

    long_caption = " ".join(f"a very long caption word{i} about a scene with many details" for i in range(60))
    samples = [
        ({"jpg": photo(0)}, "café au lait, 東京の夜景 and a rocket 🚀 over Zürich", {}),
        ({"jpg": photo(1)}, long_caption, {}),
        ({"jpg": photo(2)}, "", {}),
        ({"jpg": photo(3)}, None, {}),
        ({"png": png(96, 64, 3)}, "an rgb gradient", {}),
        ({"png": png(40, 70, 1)}, "a grayscale gradient", {}),
        ({"jpg": b"this is not an image, only text pretending to be a jpeg\n" * 4}, "a broken image", {}),
        ({"jpg": photo(4)[:600]}, "a jpeg cut short", {}),
        ({}, "a sample without any image", {}),
        ({"jpg": photo(5)}, "a photo with extra metadata",
         {"extra": {"nested": [1, 2]}, "score": 0.25, "nothing": None}),
        ({"jpg": png(50, 30, 3)}, "a png named jpg", {}),
        ({"jpg": photo(6)}, "  a caption with spaces around it \n", {}),
        ({"jpg": photo(7)}, "caf\u00e9 cr\u00e8me in latin-1".encode("latin-1"), {}),
        ({"JPG": photo(8)}, "upper case member names", {"upper": True}),
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".partial"
    with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index, (images, caption, extra) in enumerate(samples):
            key = f"{args.shard_id * 10000 + index:09d}"
            text = caption.decode("latin-1") if isinstance(caption, bytes) else caption
            meta = {"url": f"https://images.example.com/edge/{key}", "caption": text, "key": key,
                    "status": "success", "error_message": None, "width": None, "height": None}
            meta.update(extra)
            members = dict(images)
            members["json"] = json.dumps(meta, indent=4, ensure_ascii=False).encode()
            if caption is not None:
                payload = caption if isinstance(caption, bytes) else caption.encode()
                members["TXT" if extra.get("upper") else "txt"] = payload
            for ext in sorted(members):
                add(tar, f"{key}.{ext}", members[ext])
    os.replace(tmp, args.out)
    print(f"wrote {len(samples)} edge-case samples: {args.out}")


if __name__ == "__main__":
    main()
