"""Vector search, same machine, same vectors: `clip bench --search-vectors` (exact scan and HNSW) against faiss-cpu
(IndexFlatIP and IndexHNSWFlat with the same M, efConstruction and efSearch).

Usage (faiss-cpu in the environment: `pip install faiss-cpu`):
    cargo build --release -p clip-cli
    python scripts/bench/search_ann.py [--sizes 10000,100000,1000000] [--queries 1000] [--threads N]
                                       [--m 16] [--ef-construction 100] [--ef-search 64] [--top-k 10]
                                       [--workdir /tmp/search-bench] [--clip target/release/clip] [--json]
    python scripts/bench/search_ann.py --no-clip ...    # the faiss and numpy side alone

The vectors imitate CLIP image embeddings: 512-d unit vectors around 1,000 unit cluster centres that share a
common direction (CLIP image embeddings of unrelated photos have cosine ~0.3-0.5 with each other), each cluster's
spread drawn so that two of its points have cosine 0.7-0.9; float32, seeded. The queries (1,000 by default) are
drawn the same way but never stored in the index. Written once to WORKDIR as vectors_N.npy and queries.npy
(float32, C order, with dataset.json recording how; regenerated when the parameters change) and gt_N.npy, the
exact top-k by inner product (numpy, in blocks), against which both engines' recall@k is computed here: clip's
from the ids it writes (--search-results), not only the figure it reports.

Rows: numpy exact (a BLAS matrix-vector product, argpartition and sort per query: what a Python tool such as
rclip does), faiss IndexFlatIP (exact), faiss IndexHNSWFlat, clip exact and clip HNSW. Latency is one query at a
time, as a search tool serves them (numpy and faiss: `search(q[None], k)` in a loop, each timed with
time.perf_counter; clip: its own per-query timings), after 10 untimed warm-up queries; p50 and p99 over all
queries. Build time is the time to add every vector to an empty index. Every engine gets the same thread count
(--threads, default every core this process may use): faiss through omp_set_num_threads, numpy's BLAS through
threadpoolctl, clip through --threads (and CLIP_THREADS). faiss parallelises over queries, so one query runs on
one thread; the thread count matters for its build. Time only on an otherwise idle machine.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_description, usable_cores  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WARMUP = 10
# The extensions `clip bench` reports (crates/clip/src/kernels/cpu.rs), printed here when clip does not run.


# ---------------------------------------------------------------------------------------------------------------
# The clip side. Everything that depends on the command line and the JSON of `clip bench --search-vectors` is here.
# ---------------------------------------------------------------------------------------------------------------

def clip_command(args, vectors_path, queries_path, results_path):
    """The `clip bench` invocation for one vector file."""
    return [args.clip, "--threads", str(args.threads), "bench",
            "--search-vectors", vectors_path, "--queries", queries_path, "--top-k", str(args.top_k),
            "--m", str(args.m), "--ef-construction", str(args.ef_construction), "--ef-search", str(args.ef_search),
            "--search-results", results_path, "--json"]


def parse_clip_report(report):
    """`clip bench --search-vectors --json`'s object -> the fields this script uses. Adjust the keys here."""
    return {
        "vectors": report["vectors"],
        "dim": report["dim"],
        "queries": report["queries"],
        "top_k": report["top_k"],
        "m": report["m"],
        "ef_construction": report["ef_construction"],
        "ef_search": report["ef_search"],
        "build_seconds": report["build_seconds"],
        "exact_p50_ms": report["exact"]["p50_ms"],
        "exact_p99_ms": report["exact"]["p99_ms"],
        "ann_p50_ms": report["ann"]["p50_ms"],
        "ann_p99_ms": report["ann"]["p99_ms"],
        "ann_recall_reported": report["ann"].get("recall_at_k"),
        "threads": report.get("threads"),
        "dot": report.get("dot"),   # the kernel of the distance computations
        "machine": report.get("machine"),
    }


def check_clip_binary(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise SystemExit(f"no clip binary at {path}: build it (cargo build --release -p clip-cli), pass --clip PATH, "
                         "or run the faiss side alone with --no-clip")


def run_clip(args, n, vectors_path, queries_path, gt):
    results_path = os.path.join(args.workdir, f"clip_results_{n}.npy")
    if os.path.exists(results_path):
        os.remove(results_path)
    command = clip_command(args, vectors_path, queries_path, results_path)
    env = dict(os.environ, CLIP_THREADS=str(args.threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"clip failed (exit {done.returncode}):\n  {' '.join(command)}\n{done.stderr.strip()}")
    try:
        raw = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise SystemExit(f"clip printed no single JSON object ({error}):\n{done.stdout[:2000]}")
    try:
        report = parse_clip_report(raw)
    except KeyError as error:
        raise SystemExit(f"clip's JSON lacks {error} (adjust parse_clip_report):\n{json.dumps(raw, indent=1)}")
    want = {"vectors": n, "dim": gt.dim, "queries": gt.queries, "top_k": args.top_k, "m": args.m,
            "ef_construction": args.ef_construction, "ef_search": args.ef_search}
    wrong = {k: (report[k], v) for k, v in want.items() if report[k] != v}
    if wrong:
        raise SystemExit("clip ran with other settings than faiss (key: (clip, faiss)): "
                         + ", ".join(f"{k}: {v}" for k, v in wrong.items()))
    if report["threads"] is not None and report["threads"] != args.threads:
        print(f"warning: clip ran on {report['threads']} threads, faiss on {args.threads}", file=sys.stderr)
    if not os.path.exists(results_path):
        raise SystemExit(f"clip wrote no results to {results_path} (--search-results)")
    ids = np.load(results_path)
    if ids.dtype.kind == "f":   # row indices stored as floats: exact up to 2^24 in float32
        if not np.array_equal(ids, np.round(ids)) or (ids.dtype == np.float32 and n > 1 << 24):
            raise SystemExit(f"{results_path} holds non-integer or inexact row indices ({ids.dtype})")
        ids = ids.astype(np.int64)
    if ids.shape != (gt.queries, args.top_k):
        raise SystemExit(f"{results_path} has shape {ids.shape}, expected ({gt.queries}, {args.top_k})")
    report["ann_recall"] = recall(ids, gt.ids)
    report["raw"] = raw
    return report


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------

def unit_rows(x):
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class Generator:
    """Clustered unit vectors. Centre c_j = unit(sqrt(a) u + sqrt(1 - a) r_j) (u shared, r_j random unit), so
    centres have cosine ~a with each other; point = unit(c_j + sigma_j z), z ~ N(0, I), with sigma_j set so that
    two points of cluster j have cosine cos_j ~ 1 / (1 + d sigma_j^2), cos_j uniform in [lo, hi]."""

    def __init__(self, dim, clusters, common, intra_lo, intra_hi, seed):
        rng = np.random.default_rng([seed, 0])
        shared = unit_rows(rng.standard_normal((1, dim)))
        own = unit_rows(rng.standard_normal((clusters, dim)))
        self.centres = unit_rows((np.sqrt(common) * shared + np.sqrt(1 - common) * own).astype(np.float32))
        cos = rng.uniform(intra_lo, intra_hi, clusters)
        self.sigma = np.sqrt((1 / cos - 1) / dim).astype(np.float32)
        self.dim = dim
        self.seed = seed

    def block(self, stream, index, count):
        """`count` points from an independent, reproducible stream (stream 1: queries, 2: database)."""
        rng = np.random.default_rng([self.seed, stream, index])
        which = rng.integers(0, len(self.centres), count)
        noise = rng.standard_normal((count, self.dim), dtype=np.float32)
        return unit_rows(self.centres[which] + self.sigma[which, None] * noise)


BLOCK = 50_000


def write_vectors(gen, path, n):
    out = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype=np.float32, shape=(n, gen.dim))
    for b, start in enumerate(range(0, n, BLOCK)):
        out[start:start + BLOCK] = gen.block(2, b, min(BLOCK, n - start))
    out.flush()
    del out
    os.replace(path + ".tmp", path)   # a file under its final name is complete


def exact_top_k(vectors, queries, k):
    """Exact top-k ids by inner product (rows sorted best first), one database block at a time."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), BLOCK):
        block = np.asarray(vectors[start:start + BLOCK])
        scores = queries @ block.T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], 1)
        i = np.concatenate([best_i, part + start], 1)
        keep = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
    return best_i, best_s


class GroundTruth:
    def __init__(self, ids, scores, queries):
        self.ids, self.scores = ids, scores
        self.queries, self.dim = queries.shape


def recall(found, truth):
    """Mean over queries of |found row ∩ true top-k row| / k (ids < 0, faiss's "no result", never match)."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def prepare(args):
    """Writes (or reuses) queries.npy, vectors_N.npy and gt_N.npy; returns the paths and the ground truth."""
    os.makedirs(args.workdir, exist_ok=True)
    params = {"dim": args.dim, "clusters": args.clusters, "common": args.common, "intra_cos": args.intra_cos,
              "seed": args.seed, "queries": args.queries, "top_k": args.top_k, "generator": 1}
    meta_path = os.path.join(args.workdir, "dataset.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    if meta.get("params") != params:
        for name in os.listdir(args.workdir):
            if name.startswith(("vectors_", "gt_", "queries", "clip_results_")) and name.endswith(".npy"):
                os.remove(os.path.join(args.workdir, name))
        meta = {"params": params}
        json.dump(meta, open(meta_path, "w"), indent=1)
    lo, hi = (float(x) for x in args.intra_cos.split(","))
    gen = Generator(args.dim, args.clusters, args.common, lo, hi, args.seed)
    queries_path = os.path.join(args.workdir, "queries.npy")
    if not os.path.exists(queries_path):
        np.save(queries_path, np.ascontiguousarray(gen.block(1, 0, args.queries)))
    queries = np.load(queries_path)
    out = {}
    for n in args.sizes:
        vectors_path = os.path.join(args.workdir, f"vectors_{n}.npy")
        gt_path = os.path.join(args.workdir, f"gt_{n}.npy")
        if not os.path.exists(vectors_path):
            t = time.perf_counter()
            write_vectors(gen, vectors_path, n)
            print(f"wrote {vectors_path} ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        if not os.path.exists(gt_path):
            t = time.perf_counter()
            ids, scores = exact_top_k(np.load(vectors_path, mmap_mode="r"), queries, args.top_k)
            np.save(gt_path, ids)
            np.save(gt_path.replace("gt_", "gt_scores_"), scores)
            print(f"wrote {gt_path} ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        ids = np.load(gt_path)
        scores = np.load(gt_path.replace("gt_", "gt_scores_"))
        out[n] = (vectors_path, GroundTruth(ids, scores, queries))
    return queries_path, queries, out


def describe_data(vectors, queries, gt):
    """Cosine statistics of what was generated, so that the data's difficulty is on record."""
    rng = np.random.default_rng(0)
    sample = np.asarray(vectors[np.sort(rng.choice(len(vectors), min(2000, len(vectors)), replace=False))])
    pairs = sample[:1000] @ sample[1000:2000].T if len(sample) >= 2000 else sample @ sample.T
    return {"random_pair_cos_mean": float(pairs.mean()), "top1_cos_mean": float(gt.scores[:, 0].mean()),
            f"top{gt.ids.shape[1]}_cos_mean": float(gt.scores[:, -1].mean())}


# ---------------------------------------------------------------------------------------------------------------
# faiss
# ---------------------------------------------------------------------------------------------------------------

def one_at_a_time(search, queries, k):
    """Per-query latencies (ms) of search(q[None], k) -> (scores, ids) and the ids found, after WARMUP untimed
    queries."""
    for q in queries[:WARMUP]:
        search(q[None], k)
    ms = np.empty(len(queries))
    ids = np.empty((len(queries), k), dtype=np.int64)
    for j, q in enumerate(queries):
        row = q[None]
        start = time.perf_counter()
        _, found = search(row, k)
        ms[j] = (time.perf_counter() - start) * 1e3
        ids[j] = found[0]
    return ms, ids


def latency_row(build_seconds, ms, ids, gt):
    """Recall against the first len(ids) queries' truth (the exact rows may time fewer queries)."""
    return {"build_seconds": build_seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "recall": recall(ids, gt.ids[:len(ids)]), "timed": len(ms)}


def run_numpy(vectors_path, queries, gt, k, threads):
    """Brute force as a Python tool does it (rclip does this): one BLAS matrix-vector product, argpartition, sort."""
    vectors = np.load(vectors_path)

    def search(q, k):
        scores = vectors @ q[0]
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return scores[top][None], top[None]

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:   # the BLAS's own default (every core, usually)
        ms, ids = one_at_a_time(search, queries, k)
    else:
        with threadpool_limits(limits=threads, user_api="blas"):
            ms, ids = one_at_a_time(search, queries, k)
    return latency_row(0.0, ms, ids, gt)


def run_faiss(args, vectors_path, queries, gt):
    import faiss

    faiss.omp_set_num_threads(args.threads)
    vectors = np.load(vectors_path)   # in memory: faiss copies the vectors into the index either way
    out = {}

    flat = faiss.IndexFlatIP(vectors.shape[1])
    start = time.perf_counter()
    flat.add(vectors)
    flat_build = time.perf_counter() - start
    ms, ids = one_at_a_time(flat.search, queries[:args.exact_queries], args.top_k)
    out["flat"] = latency_row(flat_build, ms, ids, gt)
    del flat

    hnsw = faiss.IndexHNSWFlat(vectors.shape[1], args.m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = args.ef_construction
    start = time.perf_counter()
    hnsw.add(vectors)
    build = time.perf_counter() - start
    hnsw.hnsw.efSearch = args.ef_search
    ms, ids = one_at_a_time(hnsw.search, queries, args.top_k)
    out["hnsw"] = latency_row(build, ms, ids, gt)
    return out


# ---------------------------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="database sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--common", type=float, default=0.4, help="cosine between cluster centres")
    parser.add_argument("--intra-cos", default="0.7,0.9", help="range of the within-cluster pair cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--exact-queries", type=int, help="time only the first N queries on the exact baselines "
                        "(numpy, faiss flat; their latency hardly varies; a 1M scan takes ~0.1-0.2 s) [all]")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--workdir", default="/tmp/search-bench")
    parser.add_argument("--clip", default=os.path.join(ROOT, "target", "release", "clip"))
    parser.add_argument("--no-clip", action="store_true", help="run faiss and numpy only")
    parser.add_argument("--no-faiss", action="store_true", help="run clip only")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = parser.parse_args()
    args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    args.exact_queries = min(args.exact_queries or args.queries, args.queries)
    if not args.no_clip:
        check_clip_binary(args.clip)
    if not args.no_faiss:
        import faiss  # fail now, not after generating the data
        faiss_version = faiss.__version__
    else:
        faiss_version = None

    queries_path, queries, datasets = prepare(args)
    cpu, flags = cpu_description()
    results = {"cpu": cpu, "cpu_flags": flags, "threads": args.threads, "faiss": faiss_version,
               "numpy": np.__version__, "warmup_queries": WARMUP,
               "hnsw": {"m": args.m, "ef_construction": args.ef_construction, "ef_search": args.ef_search},
               "top_k": args.top_k, "queries": args.queries, "sizes": []}
    for n in args.sizes:
        vectors_path, gt = datasets[n]
        row = {"vectors": n, "dim": args.dim,
               "data": describe_data(np.load(vectors_path, mmap_mode="r"), queries, gt)}
        row["numpy"] = run_numpy(vectors_path, queries[:args.exact_queries], gt, args.top_k, args.threads)
        if not args.no_faiss:
            row["faiss"] = run_faiss(args, vectors_path, queries, gt)
        if not args.no_clip:
            report = run_clip(args, n, vectors_path, queries_path, gt)
            row["clip"] = {k: v for k, v in report.items() if k != "raw"}
            row["clip_raw"] = report["raw"]
        results["sizes"].append(row)
        if not args.json:
            print_size(results, row, args)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


def print_size(results, row, args):
    if row is results["sizes"][0]:
        print(f"cpu: {results['cpu']} [{' '.join(results['cpu_flags'])}]")
        print(f"threads: {args.threads} (faiss omp_set_num_threads, clip --threads); faiss {results['faiss']}, "
              f"numpy {results['numpy']}; latency = one query at a time, after {WARMUP} warm-up queries")
    data = row["data"]
    print(f"\n{row['vectors']:,} x {row['dim']} vectors, {args.queries:,} queries, k={args.top_k}, "
          f"HNSW M={args.m} efConstruction={args.ef_construction} efSearch={args.ef_search}; random pair cos "
          f"{data['random_pair_cos_mean']:.2f}, true top-1 cos {data['top1_cos_mean']:.2f}")
    print(f"{'engine':<20}{'build s':>10}{'p50 ms':>10}{'p99 ms':>10}{f'recall@{args.top_k}':>12}"
          f"{'p50 x faiss':>13}")
    n = row["numpy"]
    note = f"  ({n['timed']} queries)" if n["timed"] != args.queries else ""
    lines = [("numpy exact (BLAS)", None, n["p50_ms"], n["p99_ms"], n["recall"], None, note)]
    if "faiss" in row:
        f = row["faiss"]
        lines.append(("faiss flat (exact)", f["flat"]["build_seconds"], f["flat"]["p50_ms"], f["flat"]["p99_ms"],
                      f["flat"]["recall"], None, note))
        lines.append(("faiss hnsw", f["hnsw"]["build_seconds"], f["hnsw"]["p50_ms"], f["hnsw"]["p99_ms"],
                      f["hnsw"]["recall"], None, ""))
    if "clip" in row:
        c = row["clip"]
        f = row.get("faiss")
        reported = c["ann_recall_reported"]
        note = f"  (clip's own figure {reported:.4f})" if reported is not None else ""
        lines.append(("clip exact", None, c["exact_p50_ms"], c["exact_p99_ms"], None,
                      f["flat"]["p50_ms"] / c["exact_p50_ms"] if f else None, ""))
        lines.append(("clip hnsw", c["build_seconds"], c["ann_p50_ms"], c["ann_p99_ms"], c["ann_recall"],
                      f["hnsw"]["p50_ms"] / c["ann_p50_ms"] if f else None, note))
    for name, build, p50, p99, rec, ratio, note in lines:
        cells = [f"{build:>10.2f}" if build is not None else f"{'':>10}", f"{p50:>10.3f}", f"{p99:>10.3f}",
                 f"{rec:>12.4f}" if rec is not None else f"{'':>12}",
                 f"{ratio:>12.2f}x" if ratio is not None else f"{'':>13}"]
        print(f"{name:<20}" + "".join(cells) + note)
    if "clip" in row:
        c = row["clip"]
        print(f"p50 x faiss = faiss p50 / clip p50 (above 1: clip answers faster); clip: {c['threads']} threads, "
              f"distance kernel {c['dot']}")


if __name__ == "__main__":
    sys.exit(main())
