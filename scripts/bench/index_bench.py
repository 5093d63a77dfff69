"""`clip index` against `clip embed` on the same photos, incremental re-runs, and the cold-start time of a query
against a 100,000-photo index. Same machine, same run; time only on an otherwise idle machine.

Usage:
    cargo build --release -p clip-cli
    python scripts/bench/index_bench.py /tmp/vitb32 /tmp/photos1000 [--rounds 3] [--big 100000] [--json]

PHOTO_DIR is filled with 1,000 1024x768 JPEGs (scripts/bench/end_to_end.py's generator) when it holds none; MODEL_DIR
is a full-size checkpoint (scripts/make_full_vitb32.py makes a random ViT-B/32).

Per round: `clip embed --image (all photos) --output x.npy` and `clip index PHOTO_DIR --db fresh.db` (new database each
round), then `clip index` again with nothing changed. Reported: the medians of images/s and the median (range) of
index/embed. Then a 100,000-image index is made (the photos' real rows plus synthetic clustered embeddings written
with Python's sqlite3 in the index's own schema, then `clip index` refreshes the vector matrix and HNSW graph), and
`clip search --db big.db "a dog on a beach"` is timed from process start to exit, page cache warm (median of 5):
model load, identity check, query embedding, search and printing included.
"""
import argparse
import glob
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from end_to_end import CLIP, make_photos  # noqa: E402
from machine import cpu_line  # noqa: E402


def wall(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def synthetic_rows(db, count, dim, seed=0):
    """Adds `count` rows with clustered unit embeddings to the index `db` (its generation bumped once)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, count // 100), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    conn = sqlite3.connect(db)
    with conn:
        for start in range(0, count, 10_000):
            n = min(10_000, count - start)
            v = centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.03, size=(n, dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            conn.executemany(
                "INSERT INTO images (path, size, mtime_ns, hash, width, height, taken, camera, date, embedding) "
                "VALUES (?, 1, 0, ?, 1024, 768, NULL, NULL, '2020-01-01T00:00:00', ?)",
                [(f"/synthetic/{start + i:07d}.jpg".encode(), rng.bytes(32), v[i].astype("<f4").tobytes())
                 for i in range(n)])
        conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'")
    conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("photos")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--big", type=int, default=100_000, help="images in the cold-start index (0: skip)")
    ap.add_argument("--clip", default=CLIP)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not glob.glob(os.path.join(args.photos, "*.jpg")):
        make_photos(args.photos, 1000)
    photos = sorted(glob.glob(os.path.join(args.photos, "*.jpg")))
    n = len(photos)
    work = tempfile.mkdtemp(prefix="clip-index-bench-")
    embed_rate, index_rate, ratio, rerun = [], [], [], []
    for r in range(args.rounds):
        t_embed = wall([args.clip, "-q", "embed", "-m", args.model, "--image", *photos,
                        "--output", os.path.join(work, "x.npy")])
        db = os.path.join(work, f"round{r}.db")
        t_index = wall([args.clip, "-q", "index", args.photos, "--db", db, "-m", args.model, "--json"])
        rerun.append(wall([args.clip, "-q", "index", args.photos, "--db", db, "--json"]))
        embed_rate.append(n / t_embed)
        index_rate.append(n / t_index)
        ratio.append(t_embed / t_index)
        print(f"round {r}: embed {n / t_embed:.2f} img/s, index {n / t_index:.2f} img/s, "
              f"index/embed {t_embed / t_index:.3f}, unchanged re-run {rerun[-1]:.2f} s", file=sys.stderr)
    result = {
        "cpu": cpu_line(), "photos": n, "rounds": args.rounds,
        "embed_images_per_s": statistics.median(embed_rate),
        "index_images_per_s": statistics.median(index_rate),
        "index_over_embed": statistics.median(ratio), "index_over_embed_range": [min(ratio), max(ratio)],
        "unchanged_rerun_s": statistics.median(rerun),
    }
    if args.big:
        big = os.path.join(work, "big.db")
        one = os.path.join(work, "one")
        os.makedirs(one, exist_ok=True)
        os.link(photos[0], os.path.join(one, "photo.jpg")) if not os.path.exists(os.path.join(one, "photo.jpg")) else None
        subprocess.run([args.clip, "-q", "index", one, "--db", big, "-m", args.model], check=True,
                       stdout=subprocess.DEVNULL)
        dim = json.loads(subprocess.run([args.clip, "embed", "-m", args.model, "--text", "x", "--json"], check=True,
                                        capture_output=True, text=True).stdout)
        synthetic_rows(big, args.big - 1, len(dim[0]))
        start = time.perf_counter()
        subprocess.run([args.clip, "-q", "index", one, "--db", big], check=True, stdout=subprocess.DEVNULL)
        result["big_index_refresh_s"] = time.perf_counter() - start
        query = [args.clip, "search", "--db", big, "a dog on a beach", "--json"]
        wall(query)  # page cache warm
        cold = [wall(query) for _ in range(5)]
        result["big_images"] = args.big
        result["cold_query_s"] = statistics.median(cold)
        result["cold_query_range_s"] = [min(cold), max(cold)]
        exact = [wall(query + ["--exact"]) for _ in range(5)]
        result["cold_query_exact_s"] = statistics.median(exact)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"cpu {result['cpu']}")
        print(f"{n} photos, {args.rounds} rounds: clip embed {result['embed_images_per_s']:.2f} img/s, "
              f"clip index {result['index_images_per_s']:.2f} img/s, index/embed {result['index_over_embed']:.3f} "
              f"({min(ratio):.3f}-{max(ratio):.3f}); unchanged re-run {result['unchanged_rerun_s']:.2f} s")
        if args.big:
            print(f"{args.big} images: graph/matrix refresh {result['big_index_refresh_s']:.1f} s; "
                  f"query from process start (HNSW) {result['cold_query_s']:.3f} s "
                  f"({result['cold_query_range_s'][0]:.3f}-{result['cold_query_range_s'][1]:.3f}), "
                  f"exact {result['cold_query_exact_s']:.3f} s")


if __name__ == "__main__":
    main()
