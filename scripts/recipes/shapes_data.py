#!/usr/bin/env python3
"""Generates the offline image-caption sets of the training recipes (scripts/recipes/shapes.sh): pictures of
coloured shapes on textured backgrounds with compositional captions ("a large red circle at the top left"),
and labelled folders for zero-shot evaluation ("red circle", "blue triangle", ...). Deterministic for a seed.

    python scripts/recipes/shapes_data.py OUT [--train 6000] [--val 600] [--per-class 20] [--size 64]

Writes OUT/base/ (shapes circle, square, triangle in red, green, blue, yellow) and OUT/novel/ (new shapes,
star and cross, in new colours, purple and orange, which the base model never saw), each with train.csv and val.csv
(tab-separated `filepath` / `title`, paths relative to the CSV) and zeroshot/<colour shape>/*.png.
"""
import argparse
import math
import os
import random

from PIL import Image, ImageDraw, ImageFilter

COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40),
    "purple": (140, 50, 180), "orange": (245, 140, 20),
}
SETS = {
    "base": {"shapes": ["circle", "square", "triangle"], "colours": ["red", "green", "blue", "yellow"]},
    "novel": {"shapes": ["star", "cross"], "colours": ["purple", "orange"]},
}
PLACES = {
    "at the top left": (0.3, 0.3), "at the top right": (0.7, 0.3), "at the bottom left": (0.3, 0.7),
    "at the bottom right": (0.7, 0.7), "in the middle": (0.5, 0.5),
}


def polygon(shape, cx, cy, r, angle):
    if shape == "triangle":
        k, radii = 3, [r]
    elif shape == "square":
        k, radii, angle = 4, [r], angle + math.pi / 4
    elif shape == "star":
        k, radii = 10, [r, r * 0.45]
    elif shape == "cross":
        w = r * 0.38
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w),
               (-w, -w)]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    else:
        raise ValueError(shape)
    return [(cx + radii[i % len(radii)] * math.cos(angle + 2 * math.pi * i / k),
             cy + radii[i % len(radii)] * math.sin(angle + 2 * math.pi * i / k)) for i in range(k)]


def draw(rng, size, shape, colour, big, place):
    bg = tuple(rng.randint(150, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 5)):  # clutter: faint lines
        shade = tuple(max(0, c - rng.randint(20, 60)) for c in bg)
        d.line([(rng.uniform(0, size), rng.uniform(0, size)), (rng.uniform(0, size), rng.uniform(0, size))],
               fill=shade, width=1)
    fx, fy = PLACES[place]
    cx = (fx + rng.uniform(-0.06, 0.06)) * size
    cy = (fy + rng.uniform(-0.06, 0.06)) * size
    r = size * (rng.uniform(0.2, 0.25) if big else rng.uniform(0.1, 0.13))
    jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS[colour])
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=jitter)
    else:
        d.polygon(polygon(shape, cx, cy, r, rng.uniform(-0.3, 0.3)), fill=jitter)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6)))


def caption(rng, shape, colour, big, place):
    size_word = rng.choice(["large", "big"]) if big else rng.choice(["small", "little"])
    forms = [
        f"a {size_word} {colour} {shape} {place}",
        f"a {colour} {shape} {place}",
        f"a picture of a {size_word} {colour} {shape}",
        f"{place}, a {colour} {shape}",
        f"a {colour} {shape}",
    ]
    return rng.choice(forms)


def write_pairs(rng, root, name, count, size, spec, start):
    folder = os.path.join(root, "images")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(root, f"{name}.csv"), "w") as f:
        f.write("filepath\ttitle\n")
        for i in range(count):
            shape, colour = rng.choice(spec["shapes"]), rng.choice(spec["colours"])
            big, place = rng.random() < 0.5, rng.choice(list(PLACES))
            path = f"images/{name}_{start + i:05d}.png"
            draw(rng, size, shape, colour, big, place).save(os.path.join(root, path))
            f.write(f"{path}\t{caption(rng, shape, colour, big, place)}\n")


def write_zeroshot(rng, root, per_class, size, spec):
    for colour in spec["colours"]:
        for shape in spec["shapes"]:
            folder = os.path.join(root, "zeroshot", f"{colour} {shape}")
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                image = draw(rng, size, shape, colour, rng.random() < 0.5, rng.choice(list(PLACES)))
                image.save(os.path.join(folder, f"{i:03d}.png"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--train", type=int, default=6000)
    p.add_argument("--val", type=int, default=600)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    for k, (name, spec) in enumerate(SETS.items()):
        root = os.path.join(a.out, name)
        os.makedirs(root, exist_ok=True)
        # Separate generators: held-out images never repeat a training image.
        write_pairs(random.Random(a.seed * 100 + k * 10 + 1), root, "train", a.train, a.size, spec, 0)
        write_pairs(random.Random(a.seed * 100 + k * 10 + 2), root, "val", a.val, a.size, spec, 0)
        write_zeroshot(random.Random(a.seed * 100 + k * 10 + 3), root, a.per_class, a.size, spec)
        with open(os.path.join(root, "templates.txt"), "w") as f:
            f.write("a {}\na small {}\na large {}\na picture of a {}\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
