#!/usr/bin/env python3
"""Write img2dataset-style WebDataset shards from a folder of real photos, for benchmarks and tests of bulk inference
(`clip inference`, clip-retrieval's `clip-retrieval inference`) without any download.

The shards look like what `img2dataset --output_format webdataset --caption_col caption` writes:

  OUT/00000.tar, OUT/00001.tar, ...    shard names zero-padded to --oom-shard-count digits (img2dataset's default 5)
  members per sample, in the order webdataset's TarWriter writes them (extensions sorted):
    {key}.jpg    the image bytes (the photo's own JPEG, or re-encoded when --image-size is given)
    {key}.json   json.dumps(meta, indent=4) with img2dataset's fields, in its order:
                 url, caption, key, status ("success"), error_message (null), width, height,
                 original_width, original_height, exif, sha256 (of the original bytes, img2dataset's compute_hash)
    {key}.txt    the caption
  OUT/00000.parquet ...                with --parquet: the per-shard metadata parquet img2dataset writes next to each tar
  OUT/00000_stats.json ...             with --stats: img2dataset's per-shard stats

Keys are img2dataset's compute_key: (10 ** ceil(log10(number_sample_per_shard))) * shard_id + index, zero-padded to
oom_sample_per_shard + oom_shard_count digits; with img2dataset's defaults (10000 samples per shard, 5 shard digits)
sample 12 of shard 0 is "000000012" and sample 3 of shard 7 is "000070003".

Deterministic: the same photos, arguments and --seed give byte-identical tars (fixed mtimes, uid, names; sorted
inputs; a seeded shuffle and seeded captions). Standard library only, unless --image-size is given (then Pillow).

  python3 scripts/bench/make_shards.py --photos /tmp/photos1000 --out /tmp/cr-shards --shards 10 --per-shard 100
"""
import argparse
import hashlib
import io
import json
import math
import os
import random
import sys
import tarfile

IMAGE_EXTENSIONS = (".jpg", ".jpeg")
FIXED_MTIME = 1_700_000_000  # deterministic tars; webdataset's TarWriter would write time.time()

ADJECTIVES = ["red", "old", "quiet", "bright", "small", "wooden", "sunny", "misty", "busy", "empty", "green", "golden",
              "dark", "snowy", "tall", "narrow", "rusty", "colorful", "ancient", "modern"]
NOUNS = ["house", "street", "dog", "cat", "bridge", "tree", "car", "mountain", "lake", "market", "bicycle", "boat",
         "garden", "church", "train", "beach", "forest", "kitchen", "portrait", "sunset", "field", "city"]
PLACES = ["in the morning", "at night", "near the river", "in winter", "on a cloudy day", "from above",
          "in the old town", "by the sea", "after the rain", "in autumn", "with people walking", "close up"]


def jpeg_size(data):
    """(width, height) from a JPEG's SOF marker, without decoding; None when the bytes are not a parsable JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > len(data):
                return None
            height = int.from_bytes(data[i + 5:i + 7], "big")
            width = int.from_bytes(data[i + 7:i + 9], "big")
            return width, height
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def resize_border(data, image_size, quality):
    """img2dataset's default resize_mode "border": the longer side to image_size, white border to a square,
    re-encoded as JPEG. Returns (bytes, width, height)."""
    from PIL import Image  # only needed for --image-size
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    ratio = image_size / max(w, h)
    nw, nh = max(1, int(w * ratio)), max(1, int(h * ratio))
    img = img.resize((nw, nh), Image.BOX if ratio < 1 else Image.LANCZOS)
    canvas = Image.new("RGB", (image_size, image_size), (255, 255, 255))
    canvas.paste(img, ((image_size - nw) // 2, (image_size - nh) // 2))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=quality)
    return out.getvalue(), image_size, image_size


def compute_key(index, shard_id, oom_sample_per_shard, oom_shard_count):
    """img2dataset's downloader.compute_key."""
    true_key = (10 ** oom_sample_per_shard) * shard_id + index
    return f"{true_key:0{oom_sample_per_shard + oom_shard_count}d}"


def caption_for(rng):
    return f"a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(PLACES)}"


def add_member(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = FIXED_MTIME
    info.mode = 0o444  # webdataset's TarWriter: mode 0o444, uname/gname "bigdata"
    info.uname = info.gname = "bigdata"
    info.uid = info.gid = 0
    tar.addfile(info, io.BytesIO(payload))


def write_parquet(path, metas):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        sys.exit("--parquet needs pyarrow")
    pq.write_table(pa.Table.from_pylist(metas), path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", required=True, help="folder of JPEG photos (searched recursively, sorted by path)")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--per-shard", type=int, default=100, help="samples per shard (photos are reused if too few)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--number-sample-per-shard", type=int, default=10000,
                    help="img2dataset's number_sample_per_shard, which decides the key width (default 10000: 9-digit keys)")
    ap.add_argument("--oom-shard-count", type=int, default=5, help="img2dataset's oom_shard_count (default 5)")
    ap.add_argument("--start-shard", type=int, default=0, help="first shard id")
    ap.add_argument("--image-size", type=int, default=0,
                    help="re-encode like img2dataset's default resize (border, longer side to N, square); "
                         "0 (default) keeps the photos' own bytes, like --resize_mode no --skip_reencode True")
    ap.add_argument("--encode-quality", type=int, default=95)
    ap.add_argument("--parquet", action="store_true", help="also write img2dataset's per-shard metadata parquet")
    ap.add_argument("--stats", action="store_true", help="also write img2dataset's per-shard {shard}_stats.json")
    ap.add_argument("--url-prefix", default="https://images.example.com/laion/")
    args = ap.parse_args()
    if args.shards < 1 or args.per_shard < 1:
        sys.exit("--shards and --per-shard must be positive")
    if args.per_shard > args.number_sample_per_shard:
        sys.exit("--per-shard must not exceed --number-sample-per-shard (keys would collide)")

    photos = []
    for root, dirs, files in os.walk(args.photos):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                photos.append(os.path.join(root, name))
    if not photos:
        sys.exit(f"no JPEG photos under {args.photos}")
    rng = random.Random(args.seed)
    order = list(range(len(photos)))
    rng.shuffle(order)

    os.makedirs(args.out, exist_ok=True)
    oom_sample = math.ceil(math.log10(args.number_sample_per_shard))
    total = 0
    cursor = 0
    for s in range(args.shards):
        shard_id = args.start_shard + s
        shard_name = f"{shard_id:0{args.oom_shard_count}d}"
        tar_path = os.path.join(args.out, shard_name + ".tar")
        tmp_path = tar_path + ".partial"
        metas = []
        with open(tmp_path, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for index in range(args.per_shard):
                photo = photos[order[cursor % len(photos)]]
                cursor += 1
                with open(photo, "rb") as f:
                    original = f.read()
                size = jpeg_size(original)
                if size is None:
                    sys.exit(f"{photo}: not a baseline/progressive JPEG with a readable size")
                original_width, original_height = size
                if args.image_size:
                    data, width, height = resize_border(original, args.image_size, args.encode_quality)
                else:
                    data, width, height = original, original_width, original_height
                key = compute_key(index, shard_id, oom_sample, args.oom_shard_count)
                caption = caption_for(rng)
                meta = {
                    "url": args.url_prefix + os.path.relpath(photo, args.photos).replace(os.sep, "/"),
                    "caption": caption,
                    "key": key,
                    "status": "success",
                    "error_message": None,
                    "width": width,
                    "height": height,
                    "original_width": original_width,
                    "original_height": original_height,
                    "exif": "{}",
                    "sha256": hashlib.sha256(original).hexdigest(),
                }
                metas.append(meta)
                # webdataset's TarWriter writes a sample's members with their extensions sorted.
                add_member(tar, f"{key}.jpg", data)
                add_member(tar, f"{key}.json", json.dumps(meta, indent=4).encode())
                add_member(tar, f"{key}.txt", caption.encode())
        os.replace(tmp_path, tar_path)
        if args.parquet:
            write_parquet(os.path.join(args.out, shard_name + ".parquet"), metas)
        if args.stats:
            stats = {"count": len(metas), "successes": len(metas), "failed_to_download": 0, "failed_to_resize": 0,
                     "duration": 0.0, "start_time": float(FIXED_MTIME), "end_time": float(FIXED_MTIME),
                     "status_dict": {"success": len(metas)}}
            with open(os.path.join(args.out, shard_name + "_stats.json"), "w") as f:
                json.dump(stats, f, indent=4)
        total += len(metas)
    last = f"{args.start_shard + args.shards - 1:0{args.oom_shard_count}d}"
    first = f"{args.start_shard:0{args.oom_shard_count}d}"
    print(f"wrote {args.shards} shards, {total} samples: {args.out}/{{{first}..{last}}}.tar")


if __name__ == "__main__":
    main()
