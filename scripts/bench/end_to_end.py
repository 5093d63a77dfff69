"""`clip embed` over a folder of photos against the model alone, same machine, same run.

Usage:
    cargo build --release -p clip-cli
    python scripts/bench/end_to_end.py /tmp/vitb32 /tmp/photos1000 [--dtypes f32,bf16,int8] [--rounds 5]

PHOTO_DIR is filled with 1,000 1024x768 JPEG photos (quality 90, 4:2:0, Pillow's defaults otherwise) when it
holds none: crops, flips and colour shifts of the colour photos that ship with scikit-image. MODEL_DIR gets a
random full-size ViT-B/32 when it holds no checkpoint (scripts/make_full_vitb32.py, needs torch).

Each round runs, per dtype: `clip bench --batch 16` (the batch `clip embed` uses; model only, preprocessed
pixels), `clip embed` over all photos, and `clip embed` over the first 16 (start-up, load and one batch).
Reported per dtype: the medians of model-only images/s and of end-to-end images/s (N / wall time), and the
median (range) over rounds of the end-to-end share of the same round's model-only figure, with everything
included and without start-up and load ((N - 16) / (wall time - 16-photo wall time)). Time only on an
otherwise idle machine.
"""
import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIP = os.path.join(ROOT, "target", "release", "clip")
SIZE = (1024, 768)
SOURCES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg",
           "hubble_deep_field.jpg", "color.png"]


def make_photos(directory, count, seed=0):
    """Writes `count` photo-like JPEGs: a random crop of a source photo scaled to cover 1024x768."""
    import skimage
    from PIL import Image, ImageEnhance

    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    sources = [Image.open(os.path.join(data, name)).convert("RGB") for name in SOURCES]
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        crop_w = rng.randint(w // 2, w)
        crop_h = min(h, max(1, crop_w * SIZE[1] // SIZE[0]))
        left, top = rng.randint(0, w - crop_w), rng.randint(0, h - crop_h)
        img = src.crop((left, top, left + crop_w, top + crop_h)).resize(SIZE, Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
        img.save(os.path.join(directory, f"photo_{i:04d}.jpg"), quality=90)


def wall(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def model_only(model_dir, dtype):
    out = subprocess.run([CLIP, "bench", "--model", model_dir, "--dtype", dtype, "--batch", "16", "--iters", "5",
                          "--json", "-q"], check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)["rows"]
    return next(r["items_per_second"] for r in rows if r["tower"] == "image")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("photo_dir")
    parser.add_argument("--dtypes", default="f32,bf16,int8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000, help="photos to generate when PHOTO_DIR is empty")
    args = parser.parse_args()
    if not os.path.exists(CLIP):
        sys.exit(f"{CLIP} not found: run `cargo build --release -p clip-cli` first")
    if not os.path.exists(os.path.join(args.model_dir, "model.safetensors")):
        generator = os.path.join(ROOT, "scripts", "make_full_vitb32.py")
        print(f"generating a random ViT-B/32 checkpoint in {args.model_dir}", file=sys.stderr)
        subprocess.run([sys.executable, generator, args.model_dir], check=True)
    photos = sorted(glob.glob(os.path.join(args.photo_dir, "*.jpg")))
    if not photos:
        print(f"writing {args.count} photos to {args.photo_dir}", file=sys.stderr)
        make_photos(args.photo_dir, args.count)
        photos = sorted(glob.glob(os.path.join(args.photo_dir, "*.jpg")))
    n = len(photos)
    mean_kb = sum(os.path.getsize(p) for p in photos) / n / 1024
    print(f"{n} photos, {mean_kb:.0f} KiB on average; {args.rounds} rounds")
    output = os.path.join(args.photo_dir, ".end_to_end.npy")

    def embed(dtype, files):
        return [CLIP, "embed", "--model", args.model_dir, "--dtype", dtype, "--output", output, "-q",
                "--image", *files]

    print("| dtype | model only (batch 16) | end to end | share, all included | share without start-up and load |")
    print("|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        models, alls, starts = [], [], []
        for _ in range(args.rounds):
            models.append(model_only(args.model_dir, dtype))
            alls.append(wall(embed(dtype, photos)))
            starts.append(wall(embed(dtype, photos[:16])))
        # Shares per round (model and pipeline measured back to back, so slow drifts of a shared machine
        # cancel), then their medians.
        shares_all = [100 * n / a / m for m, a in zip(models, alls)]
        shares_steady = [100 * (n - 16) / (a - s) / m for m, a, s in zip(models, alls, starts)]
        m, a = statistics.median(models), statistics.median(alls)
        print(f"| {dtype} | {m:.2f} images/s | {n / a:.2f} images/s ({a:.2f} s) "
              f"| {statistics.median(shares_all):.1f}% ({min(shares_all):.0f}-{max(shares_all):.0f}) "
              f"| {statistics.median(shares_steady):.1f}% ({min(shares_steady):.0f}-{max(shares_steady):.0f}) |",
              flush=True)
        print(f"  runs: model {[round(x, 2) for x in models]}, all {[round(x, 2) for x in alls]}, "
              f"first 16 {[round(x, 2) for x in starts]}", file=sys.stderr)


if __name__ == "__main__":
    main()
