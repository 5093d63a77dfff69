#!/usr/bin/env python3
"""Compare what examples/ray/embed_shards.py wrote (Parquet) with what `clip inference` wrote on the same shards
(img_emb/img_emb_{i}.npy, text_emb/text_emb_{i}.npy, metadata/metadata_{i}.parquet). Exits 1 on any mismatch.

    python scripts/ray/compare_outputs.py --ray /tmp/ray-test/ray-out --cli /tmp/ray-test/cli-out --text \\
        [--ray-summary ray.json] [--cli-summary cli.json] [--tolerance 1e-6] [--report report.json]

Checks:
  keys        every key in one output is in the other, each once; image_path == key in the CLI's metadata
  order       both list the common keys in the same order (the CLI by partition then row, Ray by shard, index),
              and each key's CLI partition is its Ray shard number
  img_emb     per key: max |ray - cli| / max |cli| over the row <= --tolerance (bit-identical rows are counted)
  text_emb    the same, with --text
  caption/url equal (null == null); the CLI's other .json columns equal the sample's .json fields
  failures    the keys each run left out (from the summaries, when given) are the same
Needs numpy and pyarrow.
"""
import argparse
import glob
import json
import math
import os
import re
import sys

import numpy as np
import pyarrow.parquet as pq

CLI_OWN_COLUMNS = {"image_path", "key", "caption"}


def load_ray(path, text):
    table = pq.read_table(path)
    order = np.lexsort((np.asarray(table.column("index")), np.asarray(table.column("shard"))))
    table = table.take(order)
    n = table.num_rows

    def matrix(name):
        flat = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return flat.astype(np.float32, copy=False).reshape(n, -1) if n else np.zeros((0, 0), np.float32)

    return {
        "keys": table.column("key").to_pylist(),
        "part": table.column("shard").to_pylist(),
        "caption": table.column("caption").to_pylist(),
        "url": table.column("url").to_pylist(),
        "json": table.column("json").to_pylist(),
        "img": matrix("img_emb"),
        "text": matrix("text_emb") if text else None,
        "files": len(glob.glob(os.path.join(path, "*.parquet"))),
    }


def load_cli(path, text):
    metas = {}
    for f in glob.glob(os.path.join(path, "metadata", "metadata_*.parquet")):
        m = re.fullmatch(r"metadata_(\d+)\.parquet", os.path.basename(f))
        if m:
            metas[int(m.group(1))] = f
    out = {"keys": [], "part": [], "caption": [], "url": [], "image_path": [], "fields": [], "img": [], "text": [],
           "problems": [], "columns": set()}
    for i in sorted(metas):
        table = pq.read_table(metas[i])
        stem = os.path.basename(metas[i])[len("metadata_"):-len(".parquet")]
        img = np.load(os.path.join(path, "img_emb", f"img_emb_{stem}.npy"))
        if img.dtype != np.float32:
            out["problems"].append(f"img_emb_{stem}.npy is {img.dtype}, not float32")
        if img.shape[0] != table.num_rows:
            out["problems"].append(f"partition {stem}: {img.shape[0]} image rows, {table.num_rows} metadata rows")
        out["img"].append(img.astype(np.float32))
        if text:
            temb = np.load(os.path.join(path, "text_emb", f"text_emb_{stem}.npy"))
            if temb.shape[0] != table.num_rows:
                out["problems"].append(f"partition {stem}: {temb.shape[0]} text rows, {table.num_rows} metadata rows")
            out["text"].append(temb.astype(np.float32))
        rows = table.to_pylist()
        out["columns"].update(table.column_names)
        for row in rows:
            out["keys"].append(row.get("key"))
            out["part"].append(i)
            out["caption"].append(row.get("caption"))
            out["url"].append(row.get("url"))
            out["image_path"].append(row.get("image_path"))
            out["fields"].append({k: v for k, v in row.items() if k not in CLI_OWN_COLUMNS})
    dim = out["img"][0].shape[1] if out["img"] else 0
    out["img"] = np.concatenate(out["img"]) if out["img"] else np.zeros((0, dim), np.float32)
    out["text"] = (np.concatenate(out["text"]) if out["text"] else np.zeros((0, dim), np.float32)) if text else None
    out["partitions"] = len(metas)
    return out


def rel_diff(a, b):
    """Per row: max |a - b| / max |b|."""
    scale = np.maximum(np.abs(b).max(axis=1), np.finfo(np.float32).tiny)
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).max(axis=1) / scale


def same_field(cli_value, json_value):
    """A CLI metadata cell against the .json value it came from (nested values are stored as JSON text)."""
    if json_value is None:
        return cli_value is None
    if isinstance(json_value, (dict, list)):
        try:
            return json.loads(cli_value) == json_value
        except (TypeError, ValueError):
            return False
    if isinstance(json_value, bool) or isinstance(cli_value, bool):
        return cli_value == json_value or str(cli_value).lower() == str(json_value).lower()
    if isinstance(json_value, (int, float)) and isinstance(cli_value, (int, float)):
        return math.isclose(float(cli_value), float(json_value), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(json_value, (int, float)) and isinstance(cli_value, str):
        return cli_value == json.dumps(json_value)
    return cli_value == json_value


def summary_failed_keys(path, kind):
    """Keys left out by a run, from embed_shards' --summary-json or `clip inference --json`'s output."""
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError:
        # `clip inference --json` may print other lines; take the last line that parses as a JSON object.
        data = None
        for line in reversed(text.splitlines()):
            try:
                data = json.loads(line)
                break
            except ValueError:
                continue
        if data is None:
            return None
    if kind == "ray":
        return {k for k, _ in data.get("failed_keys", [])}, data.get("failed"), data
    failures = data.get("failures", [])
    return {f.get("key") for f in failures if f.get("key") is not None}, data.get("failed"), data


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ray", required=True, help="embed_shards.py's --output folder")
    ap.add_argument("--cli", required=True, help="`clip inference`'s --output-dir")
    ap.add_argument("--text", action="store_true", help="compare text embeddings too")
    ap.add_argument("--tolerance", type=float, default=1e-6, help="largest relative difference allowed (1e-6)")
    ap.add_argument("--ray-summary", help="embed_shards.py --summary-json file")
    ap.add_argument("--cli-summary", help="stdout of `clip inference --json`")
    ap.add_argument("--report", help="write the findings as JSON here")
    args = ap.parse_args()

    ray_out, cli = load_ray(args.ray, args.text), load_cli(args.cli, args.text)
    problems = list(cli["problems"])
    report = {"ray_rows": len(ray_out["keys"]), "ray_files": ray_out["files"], "cli_rows": len(cli["keys"]),
              "cli_partitions": cli["partitions"]}

    for name, side in (("ray", ray_out), ("cli", cli)):
        seen, dups = set(), []
        for k in side["keys"]:
            (dups.append(k) if k in seen else seen.add(k))
        if dups:
            problems.append(f"{name}: {len(dups)} duplicate keys, e.g. {dups[:5]}")
    bad_paths = [k for k, p in zip(cli["keys"], cli["image_path"], strict=True) if p != k]
    if bad_paths:
        problems.append(f"cli: image_path differs from key in {len(bad_paths)} rows, e.g. {bad_paths[:3]}")
    ray_index = {k: i for i, k in enumerate(ray_out["keys"])}
    cli_index = {k: i for i, k in enumerate(cli["keys"])}
    only_ray = [k for k in ray_out["keys"] if k not in cli_index]
    only_cli = [k for k in cli["keys"] if k not in ray_index]
    if only_ray:
        problems.append(f"{len(only_ray)} keys only in the Ray output, e.g. {only_ray[:10]}")
    if only_cli:
        problems.append(f"{len(only_cli)} keys only in the CLI output, e.g. {only_cli[:10]}")
    common = [k for k in cli["keys"] if k in ray_index]
    report["common_keys"] = len(common)
    if [k for k in ray_out["keys"] if k in cli_index] != common:
        problems.append("the two outputs list the common keys in different orders")
    wrong_part = [k for k in common if cli["part"][cli_index[k]] != ray_out["part"][ray_index[k]]]
    if wrong_part:
        problems.append(f"{len(wrong_part)} keys in a CLI partition other than their Ray shard, e.g. {wrong_part[:5]}")

    ri = np.array([ray_index[k] for k in common], dtype=np.int64)
    ci = np.array([cli_index[k] for k in common], dtype=np.int64)
    for name in ("img", "text") if args.text else ("img",):
        a, b = ray_out[name][ri], cli[name][ci]
        if a.shape != b.shape:
            problems.append(f"{name}_emb: shapes differ, Ray {a.shape} vs CLI {b.shape}")
            continue
        if len(common) == 0:
            continue
        rel = rel_diff(a, b)
        identical = int((a.view(np.uint32) == b.view(np.uint32)).all(axis=1).sum())
        norms = np.linalg.norm(b.astype(np.float64), axis=1)
        worst = int(np.argmax(rel))
        report[f"{name}_emb"] = {"rows": len(common), "dim": int(a.shape[1]), "max_rel_diff": float(rel.max()),
                                 "worst_key": common[worst], "bit_identical_rows": identical,
                                 "max_abs_diff": float(np.abs(a.astype(np.float64) - b).max()),
                                 "cli_norm_min": float(norms.min()), "cli_norm_max": float(norms.max())}
        if not np.isfinite(a).all() or not np.isfinite(b).all():
            problems.append(f"{name}_emb: non-finite values")
        if rel.max() > args.tolerance:
            over = int((rel > args.tolerance).sum())
            problems.append(f"{name}_emb: {over} rows differ by more than {args.tolerance:g} (max {rel.max():.3g} at "
                            f"key {common[worst]})")

    for field in ("caption", "url"):
        diff = [(k, ray_out[field][ray_index[k]], cli[field][cli_index[k]]) for k in common
                if ray_out[field][ray_index[k]] != cli[field][cli_index[k]]]
        report[f"{field}_mismatches"] = len(diff)
        if diff:
            problems.append(f"{field}: {len(diff)} differ, e.g. {diff[:3]}")

    field_diffs = []
    for k in common:
        raw = ray_out["json"][ray_index[k]]
        try:
            meta = json.loads(raw) if raw is not None else {}
        except ValueError:
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
        cli_fields = cli["fields"][cli_index[k]]
        for name in cli["columns"] - CLI_OWN_COLUMNS:
            if not same_field(cli_fields.get(name), meta.get(name)):
                field_diffs.append((k, name, cli_fields.get(name), meta.get(name)))
    report["json_field_mismatches"] = len(field_diffs)
    if field_diffs:
        problems.append(f".json fields: {len(field_diffs)} differ (key, field, cli, json), e.g. {field_diffs[:5]}")

    ray_failed = summary_failed_keys(args.ray_summary, "ray")
    cli_failed = summary_failed_keys(args.cli_summary, "cli")
    if ray_failed and cli_failed:
        report["ray_failed"], report["cli_failed"] = ray_failed[1], cli_failed[1]
        report["failed_keys"] = sorted(ray_failed[0] | cli_failed[0])
        if ray_failed[0] != cli_failed[0] or ray_failed[1] != cli_failed[1]:
            problems.append(f"left-out samples differ: Ray {ray_failed[1]} {sorted(ray_failed[0])}, "
                            f"CLI {cli_failed[1]} {sorted(cli_failed[0])}")
    elif args.cli_summary or args.ray_summary:
        report["failed_keys"] = "not compared (a summary is missing or unreadable)"

    report["problems"] = problems
    report["ok"] = not problems
    print(json.dumps(report, indent=2, default=str))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2, default=str)
    print("MATCH" if not problems else f"MISMATCH: {len(problems)} problem(s)", file=sys.stderr)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
