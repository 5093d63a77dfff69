#!/usr/bin/env python3
"""Embed WebDataset shards with clip_rs inside Ray Data.

The same job as `clip inference --input SHARDS --output-dir OUT --model M [--text]`, spread over a Ray cluster: Ray
reads the tar shards, a pool of actors each holding one clip_rs model turns the encoded image bytes (and, with --text,
the captions) into L2-normalised float32 embeddings, and Ray writes Parquet files. The model code underneath is the
project's Rust code (`import clip_rs`), so the embeddings are the ones `clip inference` writes, bit for bit.

    pip install "ray[data]" numpy pyarrow pandas clip_rs-*.whl     # on every node (see docs/ray.md)
    python examples/ray/embed_shards.py \\
        --input "/data/shards/{00000..00099}.tar" --output /data/emb --model openai/clip-vit-base-patch32 \\
        --actors 4 --threads-per-actor 4 --text

Pipeline (one Ray Data dataset, streamed; nothing is materialised in full):

  read_webdataset(shards, decoder=WdsSample)  one read task per shard; members grouped by sample key (the member name
                                              up to its first dot, as webdataset does); WdsSample turns each sample
                                              into a row of a fixed schema: key, shard, index (position in its shard),
                                              image (the encoded bytes, not decoded in Python), caption, url, json
  map_batches(ClipEmbedder, num_cpus=T,       A actors, each loads the model once in __init__ with T threads and
    compute=ActorPoolStrategy(size=A))        reserves T CPUs, so actors x threads = cores; each batch is encoded
                                              with encode_images(normalize=True, on_error="nan"); samples whose image
                                              does not decode (and with --text those without a caption) are
                                              dropped and counted, as `clip inference` does
  write_parquet(output)                       columns key, shard, index, caption, url, json (the sample's .json),
                                              img_emb list<float32>, text_emb list<float32> (with --text)

Read and write tasks reserve --io-cpus CPUs (default 0): the actors already reserve every core, and with Ray's
default of 1 CPU the writes would wait for the actors to finish, holding every embedding in the object store.

Rows keep the order of the shards and of the samples in them (DataContext preserve_order, on unless
--no-preserve-order), and every row carries `shard` (position of its tar in the expanded --input list) and `index`
(position of the sample in its tar), so sorting by (shard, index) gives `clip inference`'s row order whatever the
file layout.

--input takes webdataset's brace notation: "shards/{00000..00009}.tar", "{a,b}", several groups, lists joined by
"::", several values (all numbered in order, as `clip inference` numbers its partitions); local paths, or
any URI pyarrow understands (s3://, gs://, hdfs://, abfs://). --output likewise: on a multi-node cluster it must be a
place every node can write to (S3, GCS, NFS): a local path would leave each node's files on that node.

--address: "auto" joins the cluster this machine is part of (`ray start` ran here) or the one in RAY_ADDRESS;
"local" starts a throw-away single-node Ray; "ray://host:10001" goes through Ray Client; the default joins a running
cluster if there is one, else starts a local one. Inside `ray job submit` use the default.
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np
import pyarrow as pa

# Member extensions (compared in lower case) that make a member a sample's image, as `clip inference` has them;
# a sample with several takes the last one in the tar, as `clip inference` does.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff")
# Rust's str::trim (Unicode White_Space), which `clip inference` trims captions with; Python's str.strip() would also
# strip U+001C..U+001F.
_WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
                + "\u2028\u2029\u202f\u205f\u3000")
# How many keys of samples that failed the driver prints (all are counted).
MAX_FAILED_KEYS = 1000
# The output's columns besides the embeddings (pandas hands Ray large_string and int64).
META_SCHEMA = pa.schema([("key", pa.string()), ("shard", pa.int32()), ("index", pa.int32()), ("caption", pa.string()),
                         ("url", pa.string()), ("json", pa.string())])

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?")


def expand_braces(pattern):
    """Expand webdataset / bash brace notation: "a/{00..02}.tar" -> a/00.tar a/01.tar a/02.tar; "{x,y}" -> x y.

    Numeric ranges keep zero padding when either end has a leading zero (braceexpand's rule) and may have a step
    ("{0..10..5}"). A brace group that is neither a range nor a comma list stays as it is."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[:m.start()], m.group(1), pattern[m.end():]
    r = _RANGE.fullmatch(body)
    if r:
        a, b = int(r.group(1)), int(r.group(2))
        step = abs(int(r.group(3) or 1)) or 1
        padded = any(len(s.lstrip("-")) > 1 and s.lstrip("-").startswith("0") for s in (r.group(1), r.group(2)))
        width = max(len(r.group(1)), len(r.group(2))) if padded else 0
        numbers = range(a, b + 1, step) if a <= b else range(a, b - 1, -step)
        items = [str(n).zfill(width) for n in numbers]
    elif "," in body:
        items = body.split(",")
    else:
        items = ["{" + body + "}"]
    return [head + item + rest for item in items for rest in expand_braces(tail)]


def expand_shards(pattern):
    """Shard names of one --input value: brace patterns, several lists joined by "::" (webdataset's convention)."""
    return [name for part in pattern.split("::") if part for name in expand_braces(part)]


def _strip_scheme(path):
    """'s3://bucket/a.tar' -> 'bucket/a.tar', 'local:///x' -> '/x': how pyarrow filesystems name a file."""
    return path.split("://", 1)[1] if "://" in path else path


class WdsSample:
    """read_webdataset's decoder: one grouped tar sample -> one row of a fixed schema.

    Ray hands over {"__key__": "000000012", "__url__": "/data/00000.tar", "jpg": b"...", "txt": b"...",
    "json": b"..."} (raw bytes, because this decoder replaces Ray's default one, which would decode the image with
    PIL). The image stays encoded: clip_rs decodes it in Rust exactly as `clip inference` does.

    `index` is the sample's position in its tar: the counter lives in this object, of which each read task has its
    own copy and reads its tars sequentially, so it counts each tar from 0."""

    def __init__(self, shards):
        self.shard_ids = {}
        for i, path in enumerate(shards):
            self.shard_ids.setdefault(_strip_scheme(path), i)
            if "://" not in path:
                self.shard_ids.setdefault(os.path.abspath(path), i)  # Ray names local files by absolute path
        for i, path in enumerate(shards):
            self.shard_ids.setdefault(os.path.basename(path), i)  # last resort
        self.positions = {}

    def __call__(self, sample):
        url = sample["__url__"]
        position = self.positions.get(url, 0)
        self.positions[url] = position + 1
        shard = self.shard_ids.get(_strip_scheme(url), self.shard_ids.get(os.path.basename(url), -1))
        image, image_ext, txt, raw_json = b"", "", None, None
        for ext, value in sample.items():  # tar order
            if ext.startswith("__") or value is None:
                continue
            lower = ext.lower()
            if lower in IMAGE_EXTENSIONS:
                image, image_ext = value, lower
            elif lower == "txt":
                txt = value
            elif lower == "json":
                raw_json = value
        # Captions as `clip inference` keeps them: invalid UTF-8 replaced, surrounding whitespace trimmed.
        caption = txt.decode("utf-8", errors="replace").strip(_WHITE_SPACE) if txt is not None else None
        meta_text, url_field = None, None
        if raw_json is not None:
            meta_text = raw_json.decode("utf-8", errors="replace")
            try:
                meta = json.loads(meta_text)
                if isinstance(meta, dict) and meta.get("url") is not None:
                    url_field = str(meta["url"])
            except ValueError:
                pass
        return {"key": sample["__key__"], "shard": shard, "shard_path": url, "index": position, "image": image,
                "image_ext": image_ext, "caption": caption, "url": url_field, "json": meta_text}


def _list_column(matrix):
    """[N, D] float32 -> pyarrow list<float32> column, without a copy of the values."""
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1)))


class ClipEmbedder:
    """Ray Data callable class: one instance per actor, so the model is loaded once per actor, not per batch."""

    def __init__(self, model, dtype, threads, text, tally):
        import clip_rs  # imported in the actor: the driver does not need the wheel

        started = time.perf_counter()
        self.model = clip_rs.load(model, dtype=dtype, threads=threads)
        self.text = text
        self.tally = tally
        self.dim = self.model.embedding_dim
        import ray

        ray.get(self.tally.loaded.remote(time.perf_counter() - started))

    def __call__(self, batch: pa.Table) -> pa.Table:
        images = batch.column("image").to_pylist()
        emb = self.model.encode_images(images, normalize=True, on_error="nan")
        ok = ~np.isnan(emb).any(axis=1)
        reasons = {}
        exts = batch.column("image_ext").to_pylist()
        for i in np.flatnonzero(~ok):
            reasons[int(i)] = f".{exts[i]} did not decode" if exts[i] else "no image member"
        if self.text:
            # `clip inference --text` leaves out (and counts) samples without a caption.
            for i, caption in enumerate(batch.column("caption").to_pylist()):
                if ok[i] and caption is None:
                    ok[i] = False
                    reasons[i] = "no caption (.txt) for --text"
        failed = []
        if reasons:
            keys = batch.column("key").to_pylist()
            failed = [(keys[i], reasons[i]) for i in sorted(reasons)]
        out = batch.filter(pa.array(ok)).select(list(META_SCHEMA.names)).cast(META_SCHEMA)
        out = out.append_column(pa.field("img_emb", pa.list_(pa.float32())), _list_column(emb[ok]))
        if self.text:
            temb = self.model.encode_texts(out.column("caption").to_pylist(), normalize=True, truncate=True)
            out = out.append_column(pa.field("text_emb", pa.list_(pa.float32())), _list_column(temb))
        import ray

        # Synchronous on purpose: the tally must hold every batch's counts by the time the write finishes.
        ray.get(self.tally.add.remote(len(images), int(ok.sum()), failed))
        return out


def make_tally_class(ray):
    @ray.remote(num_cpus=0)
    class Tally:
        """Counts read / embedded / failed samples across all actors (Ray Data has no accumulators)."""

        def __init__(self):
            self.read = self.embedded = self.failed = 0
            self.failed_keys = []
            self.load_seconds = []

        def loaded(self, seconds):
            self.load_seconds.append(seconds)

        def add(self, read, embedded, failed):
            self.read += read
            self.embedded += embedded
            self.failed += len(failed)
            room = MAX_FAILED_KEYS - len(self.failed_keys)
            if room > 0:
                self.failed_keys.extend(failed[:room])

        def get(self):
            return {"read": self.read, "embedded": self.embedded, "failed": self.failed,
                    "failed_keys": self.failed_keys, "model_load_seconds": self.load_seconds}

    return Tally


def check_local_inputs(shards):
    missing = [p for p in shards if "://" not in p and not os.path.exists(p)]
    if missing:
        sys.exit(f"embed_shards: {len(missing)} of {len(shards)} input shards do not exist, e.g. {missing[0]}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--input", required=True, nargs="+",
                    help='WebDataset shards: brace patterns ("shards/{00000..00009}.tar"), paths or URIs')
    ap.add_argument("--output", required=True, help="output folder or URI (s3://...) for the Parquet files")
    ap.add_argument("--model", required=True, help="clip_rs.load spec: a model name, Hub id or a directory "
                                                    "that exists on every node")
    ap.add_argument("--dtype", default="f32", help="clip_rs.load dtype (default f32)")
    ap.add_argument("--batch-size", type=int, default=64, help="samples per map_batches call (default 64)")
    ap.add_argument("--actors", type=int, default=None,
                    help="model actors (default: the cluster's CPUs // --threads-per-actor)")
    ap.add_argument("--threads-per-actor", type=int, default=None,
                    help="threads of each actor's model, and the CPUs each actor reserves (default: 4, or fewer "
                         "on a smaller cluster)")
    ap.add_argument("--io-cpus", type=float, default=0.0,
                    help="CPUs each shard read task and each Parquet write task reserves (default 0: reading tars "
                         "and writing Parquet is I/O, and the actors already reserve every core; with Ray's default "
                         "of 1 the writes would wait for the actors to finish, holding every result in the object "
                         "store)")
    ap.add_argument("--text", action="store_true",
                    help="also embed the captions (.txt), truncated to the context; samples without one are left out")
    ap.add_argument("--address", default=None,
                    help='Ray cluster: "auto", "local", "ray://HOST:10001", HOST:PORT; default: a running cluster '
                         "if any, else a local one")
    ap.add_argument("--no-preserve-order", action="store_true",
                    help="let blocks finish out of order (a little faster; rows still carry shard and index)")
    ap.add_argument("--summary-json", default=None, help="also write the run's figures to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="no Ray Data progress bars")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    shards = [s for pattern in args.input for s in expand_shards(pattern)]
    check_local_inputs(shards)
    if args.batch_size < 1:
        sys.exit("embed_shards: --batch-size must be positive")

    import ray

    # Everything the actors import from this file travels with them by value (cloudpickle), so the script does not
    # have to be installed on the workers; only clip_rs does.
    ray.init(address=args.address, log_to_driver=True)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = not args.no_preserve_order
    ctx.enable_progress_bars = not args.quiet

    cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
    threads = args.threads_per_actor or max(1, min(4, cluster_cpus))
    actors = args.actors or max(1, cluster_cpus // threads)
    if actors * threads > cluster_cpus:
        print(f"embed_shards: {actors} actors x {threads} threads = {actors * threads} CPUs, but the cluster has "
              f"{cluster_cpus}: some actors will wait for CPUs", file=sys.stderr)

    tally = make_tally_class(ray).remote()
    started = time.perf_counter()
    ds = ray.data.read_webdataset(shards, decoder=WdsSample(shards), override_num_blocks=len(shards),
                                  num_cpus=args.io_cpus)
    ds = ds.map_batches(
        ClipEmbedder,
        fn_constructor_kwargs={"model": args.model, "dtype": args.dtype, "threads": threads, "text": args.text,
                               "tally": tally},
        batch_size=args.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
    )
    ds.write_parquet(args.output, ray_remote_args={"num_cpus": args.io_cpus})
    seconds = time.perf_counter() - started
    figures = ray.get(tally.get.remote())
    summary = {
        "shards": len(shards), "samples_read": figures["read"], "embedded": figures["embedded"],
        "failed": figures["failed"], "failed_keys": figures["failed_keys"], "seconds": round(seconds, 3),
        "samples_per_second": round(figures["read"] / seconds, 2) if seconds > 0 else None,
        "actors": actors, "threads_per_actor": threads, "batch_size": args.batch_size, "text": args.text,
        "model_load_seconds": [round(s, 3) for s in figures["model_load_seconds"]],
        "output": args.output, "ray_version": ray.__version__, "cluster_cpus": cluster_cpus,
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
    }
    print(f"embedded {summary['embedded']} of {summary['samples_read']} samples from {len(shards)} shards "
          f"({summary['failed']} failed) in {seconds:.1f} s = {summary['samples_per_second']} samples/s "
          f"with {actors} actors x {threads} threads on {summary['nodes']} Ray nodes -> {args.output}")
    for key, reason in figures["failed_keys"][:20]:
        print(f"  failed: {key} ({reason})")
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
