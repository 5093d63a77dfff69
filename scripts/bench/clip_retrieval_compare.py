#!/usr/bin/env python3
"""Bulk inference over img2dataset WebDataset shards, same machine, same shards, same weights: clip-retrieval's
`clip-retrieval inference` (PyPI `clip-retrieval`: PyTorch, a torch DataLoader of webdataset workers) against
`clip inference`; then proof that `clip inference`'s output is read by clip-retrieval's own tools and autofaiss
as it is, without conversion.

Usage (runs in the clip-retrieval environment, see scripts/bench/README_bulk.md for the install recipe):
    python3 scripts/bench/make_shards.py --photos /tmp/photos1000 --out /tmp/cr-shards --shards 10 --per-shard 100
    cargo build --release -p clip-cli
    /tmp/cr-venv/bin/python scripts/bench/clip_retrieval_compare.py --clip target/release/clip --model /tmp/vitb32 \\
        --shards "/tmp/cr-shards/{00000..00009}.tar" [--batch-size 32] [--rounds 3] [--text] [--dtypes f32,bf16,int8]
        [--cr-configs default,per-shard] [--float16] [--no-clip] [--checks-only] [--cr-device cpu|auto]
        [--work /tmp/cr-compare] [--json-out F]

Same weights. --model is a Hugging Face CLIP directory (what `clip --model` reads). It is converted once into an
open_clip checkpoint (OpenAI layout: fused q/k/v, transposed projections) under WORK/model/, and clip-retrieval is
run unmodified with `--clip_model "open_clip:ARCH//path/open_clip_model.safetensors"`, a form its loader (all_clip)
accepts, where ARCH is the built-in open_clip architecture whose config equals the converted one (ViT-B-32-quickgelu
for OpenAI's ViT-B/32). An architecture open_clip does not ship is registered by a launcher that calls
open_clip.add_model_config and then clip-retrieval's own CLI. The conversion is checked through all_clip.load_clip
(clip-retrieval's loading path, open_clip's OpenAI preprocessing) against transformers' CLIPModel on the same
pixels before anything is timed.

What is timed: each run is a whole process, from start to exit (start-up, model load and warm-up, reading, decoding,
preprocessing, inference, writing), as a user meets it. Configurations, alternated within each round (order reversed
every other round) and reported as the median of --rounds:
  cr-default    clip-retrieval's defaults for one output: one output partition (write_batch_size 10**6 covers the
                shards), --num_prepro_workers = usable cores, enable_metadata True (as clip_end2end runs it);
                rows are interleaved by batch between DataLoader workers
  cr-per-shard  --output_partition_count = number of shards: partition i = input shard i, clip-retrieval's layout
                that `clip inference` writes; webdataset refuses more DataLoader workers than shards per partition
                ("No samples found ... fewer shards than workers"), so --num_prepro_workers 1 here
  clip-<dtype>  `clip inference --dtype <dtype>` (every core, its default)
Both write float16 only where asked: clip-retrieval always writes float16; clip writes float32 unless --float16.
Text embeddings only with --text (clip-retrieval's --enable_text; its default is True, turned off here by default
because `clip inference` embeds images only unless --text).

Checks (exit status 1 if any fails), on the last round's outputs:
  - sample counts against the tars; `clip inference --json` summary fields (samples, failed, images_per_s, seconds)
  - layout: the same relative file names as cr-per-shard (img_emb/img_emb_{i}.npy, text_emb/text_emb_{i}.npy,
    metadata/metadata_{i}.parquet, i zero-padded to int(log10(count)) + 1 digits); rows per shard equal; dtype; norms
  - embeddings agree by key with clip-retrieval's (cosine, min reported; thresholds per dtype)
  - metadata: clip-retrieval's columns all present, same values by key, Arrow types compared, image_path = key,
    caption = the shard's .txt
  - loading, on clip's output and on clip-retrieval's own as a control: embedding_reader (npy, and parquet_npy which
    pairs every .npy with its .parquet), clip-retrieval's clip_index (autofaiss build_index over img_emb/text_emb,
    metadata copied), and clip back's loaders (load_clip_indices with the parquet, hdf5 and arrow metadata providers,
    the arrow files made by clip-retrieval's parquet_to_arrow) queried through KnnService.query: by a stored
    embedding (top hit = that row, metadata = its key), by the JPEG itself and by its caption, both embedded by clip
    back with the same weights (top hit = that row).
Time only on an otherwise idle machine: the load average before each run is printed next to its time.
"""
import argparse
import base64
import hashlib
import importlib.metadata
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_description, usable_cores  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIN_COSINE = {"f32": 0.999, "bf16": 0.999, "int8": 0.995}
VERSION_PACKAGES = ["clip-retrieval", "all_clip", "open_clip_torch", "torch", "torchvision", "numpy", "webdataset",
                    "autofaiss", "faiss-cpu", "embedding-reader", "pyarrow", "pandas", "Pillow", "h5py"]
LAUNCHER = ("import sys, open_clip; open_clip.add_model_config(sys.argv.pop(1)); sys.argv[0] = 'clip-retrieval'; "
            "from clip_retrieval.cli import main; main()")
WDS_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext


# ---------------------------------------------------------------------------------------------------------------- util

class Checks:
    def __init__(self):
        self.failed = []
        self.passed = 0
        self.warnings = 0

    def ok(self, name, detail=""):
        self.passed += 1
        print(f"  PASS {name}{': ' + detail if detail else ''}", flush=True)

    def fail(self, name, detail=""):
        self.failed.append(f"{name}: {detail}")
        print(f"  FAIL {name}{': ' + detail if detail else ''}", flush=True)

    def warn(self, name, detail=""):
        self.warnings += 1
        print(f"  WARN {name}{': ' + detail if detail else ''}", flush=True)

    def check(self, condition, name, detail=""):
        (self.ok if condition else self.fail)(name, detail)
        return condition


def expand_braces(pattern):
    try:
        from braceexpand import braceexpand
        return list(braceexpand(pattern))
    except ImportError:
        m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
        if not m:
            return [pattern]
        a, b = m.group(1), m.group(2)
        return [pattern[:m.start()] + str(i).zfill(len(a)) + pattern[m.end():] for i in range(int(a), int(b) + 1)]


def partition_name(i, count):
    """clip-retrieval's OutputSink: str(i).zfill(int(math.log10(output_partition_count)) + 1)."""
    return str(i).zfill(int(math.log10(count)) + 1)


def read_shards(paths, text):
    """Per shard, the samples clip-retrieval keeps (a .jpg, and a .txt when text is on), in tar order:
    [(key, caption or None, meta dict or None, jpg bytes)]."""
    shards = []
    for path in paths:
        samples = {}
        order = []
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                m = WDS_KEY.match(member.name)
                if not m:
                    continue
                key, ext = m.group(1), m.group(2)
                if key not in samples:
                    samples[key] = {}
                    order.append(key)
                samples[key][ext.lower()] = tar.extractfile(member).read()
        rows = []
        for key in order:
            s = samples[key]
            if "jpg" not in s or (text and "txt" not in s):
                continue
            caption = s["txt"].decode("utf-8") if "txt" in s else None
            meta = json.loads(s["json"]) if "json" in s else None
            rows.append((key, caption, meta, s["jpg"]))
        shards.append(rows)
    return shards


def versions(cr_python):
    code = ("import importlib.metadata as m, json, sys\nout = {}\nfor p in sys.argv[1:]:\n    try: out[p] = m.version(p)\n"
            "    except Exception: out[p] = None\nprint(json.dumps(out))")
    done = subprocess.run([cr_python, "-c", code, *VERSION_PACKAGES], capture_output=True, text=True)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {}


def lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return None
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    try:
        start = text.index("{")
        return json.loads(text[start:])
    except ValueError:
        return None


def warm_page_cache(paths):
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


# --------------------------------------------------------------------------------------------------- model conversion

def hf_to_open_clip_state_dict(hf, vision_layers, text_layers):
    """A transformers CLIPModel state dict as an open_clip (OpenAI layout) CLIP state dict."""
    import torch
    out = {}

    def tower(src, dst, layers):
        for i in range(layers):
            a, b = f"{src}.encoder.layers.{i}.", f"{dst}transformer.resblocks.{i}."
            for p in ("weight", "bias"):
                out[b + "ln_1." + p] = hf[a + "layer_norm1." + p]
                out[b + "ln_2." + p] = hf[a + "layer_norm2." + p]
                out[b + "attn.in_proj_" + p] = torch.cat([hf[a + f"self_attn.{x}_proj.{p}"] for x in "qkv"])
                out[b + "attn.out_proj." + p] = hf[a + "self_attn.out_proj." + p]
                out[b + "mlp.c_fc." + p] = hf[a + "mlp.fc1." + p]
                out[b + "mlp.c_proj." + p] = hf[a + "mlp.fc2." + p]

    out["visual.conv1.weight"] = hf["vision_model.embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = hf["vision_model.embeddings.class_embedding"]
    out["visual.positional_embedding"] = hf["vision_model.embeddings.position_embedding.weight"]
    for p in ("weight", "bias"):
        out["visual.ln_pre." + p] = hf["vision_model.pre_layrnorm." + p]
        out["visual.ln_post." + p] = hf["vision_model.post_layernorm." + p]
        out["ln_final." + p] = hf["text_model.final_layer_norm." + p]
    out["visual.proj"] = hf["visual_projection.weight"].T
    tower("vision_model", "visual.", vision_layers)
    out["token_embedding.weight"] = hf["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = hf["text_model.embeddings.position_embedding.weight"]
    tower("text_model", "", text_layers)
    out["text_projection"] = hf["text_projection.weight"].T
    out["logit_scale"] = hf["logit_scale"].reshape(())
    return {k: v.float().contiguous() for k, v in out.items()}


def open_clip_config(cfg):
    """open_clip model config for a transformers CLIPConfig (ViT towers), defaults left out as open_clip writes them."""
    v, t = cfg["vision_config"], cfg["text_config"]
    for tower in (v, t):
        if tower.get("hidden_act", "quick_gelu") not in ("quick_gelu", "gelu"):
            raise SystemExit(f"unsupported activation {tower['hidden_act']}")
    if v.get("hidden_act", "quick_gelu") != t.get("hidden_act", "quick_gelu"):
        raise SystemExit("towers with different activations are not supported")
    vision = {"image_size": v["image_size"], "layers": v["num_hidden_layers"], "width": v["hidden_size"],
              "patch_size": v["patch_size"]}
    if v["hidden_size"] // v["num_attention_heads"] != 64:
        vision["head_width"] = v["hidden_size"] // v["num_attention_heads"]
    if v["intermediate_size"] != 4 * v["hidden_size"]:
        vision["mlp_ratio"] = v["intermediate_size"] / v["hidden_size"]
    text = {"context_length": t["max_position_embeddings"], "vocab_size": t["vocab_size"], "width": t["hidden_size"],
            "heads": t["num_attention_heads"], "layers": t["num_hidden_layers"]}
    if t["intermediate_size"] != 4 * t["hidden_size"]:
        text["mlp_ratio"] = t["intermediate_size"] / t["hidden_size"]
    out = {"embed_dim": cfg.get("projection_dim", 512)}
    if v.get("hidden_act", "quick_gelu") == "quick_gelu":
        out["quick_gelu"] = True
    out["vision_cfg"] = vision
    out["text_cfg"] = text
    return out


def convert_model(model_dir, work):
    """(clip_model spec for clip-retrieval, open_clip model config dir or None, arch)."""
    config_path = os.path.join(model_dir, "config.json")
    weights_path = os.path.join(model_dir, "model.safetensors")
    if not (os.path.isfile(config_path) and os.path.isfile(weights_path)):
        raise SystemExit(f"--model must be a Hugging Face CLIP directory with config.json and model.safetensors: "
                         f"{model_dir}")
    with open(config_path, "rb") as f:
        config_bytes = f.read()
    st = os.stat(weights_path)
    digest = hashlib.sha256(config_bytes + f"{os.path.realpath(weights_path)}:{st.st_size}:{st.st_mtime_ns}"
                            .encode()).hexdigest()[:16]
    out_dir = os.path.join(work, "model", digest)
    checkpoint = os.path.join(out_dir, "open_clip_model.safetensors")
    cfg = json.loads(config_bytes)
    model_cfg = open_clip_config(cfg)

    import open_clip
    arch = None
    for name in open_clip.list_models():
        if open_clip.get_model_config(name) == model_cfg:
            arch = name
            break
    config_dir = None
    if arch is None:
        arch = f"hfconv-{digest[:8]}"
        config_dir = os.path.join(out_dir, "model_configs")
        os.makedirs(config_dir, exist_ok=True)
        with open(os.path.join(config_dir, arch + ".json"), "w") as f:
            json.dump(model_cfg, f, indent=2)
        open_clip.add_model_config(config_dir)
    if not os.path.isfile(checkpoint):
        from safetensors.torch import load_file, save_file
        os.makedirs(out_dir, exist_ok=True)
        hf = load_file(weights_path)
        sd = hf_to_open_clip_state_dict(hf, cfg["vision_config"]["num_hidden_layers"],
                                        cfg["text_config"]["num_hidden_layers"])
        save_file(sd, checkpoint + ".partial")
        os.replace(checkpoint + ".partial", checkpoint)
    return f"open_clip:{arch}/{checkpoint}", config_dir, arch


def verify_conversion(model_dir, spec, samples, checks):
    """all_clip.load_clip (clip-retrieval's loader, open_clip preprocessing) against transformers' CLIPModel on the
    same pixel tensors and token ids."""
    import torch
    from PIL import Image
    from all_clip import load_clip
    from transformers import CLIPModel
    model, preprocess, tokenizer = load_clip(spec, use_jit=False, warmup_batch_size=1, device="cpu")
    hf = CLIPModel.from_pretrained(model_dir).eval()
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(jpg))) for _, _, _, jpg in samples])
    tokens = tokenizer([c or "a photo" for _, c, _, _ in samples])
    with torch.no_grad():
        a = model.encode_image(pixels)
        b = hf.get_image_features(pixel_values=pixels)
        c = model.encode_text(tokens)
        d = hf.get_text_features(input_ids=tokens)
    ci = torch.nn.functional.cosine_similarity(a, b).min().item()
    ct = torch.nn.functional.cosine_similarity(c, d).min().item()
    checks.check(ci > 0.9999 and ct > 0.9999, "same weights in clip-retrieval (all_clip/open_clip) and transformers",
                 f"min cosine image {ci:.7f}, text {ct:.7f} on {len(samples)} samples")


# ------------------------------------------------------------------------------------------------------------- running

def run_timed(cmd, log_path, timeout, env=None):
    """Wall time of a whole process, start to exit. clip-retrieval can hang after a worker error (its logger
    processes wait), so a run past the timeout is killed with its process group."""
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True, env=env)
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            stdout, _ = proc.communicate()
            seconds = time.perf_counter() - start
            log.write(stdout or "")
            return seconds, "timeout", stdout
        seconds = time.perf_counter() - start
        log.write(stdout or "")
    return seconds, proc.returncode, stdout


def cr_command(args, cr_launch, spec, out, per_shard, shard_count):
    workers = 1 if per_shard else usable_cores()
    cmd = [*cr_launch, "inference", "--input_dataset", args.shards, "--output_folder", out,
           "--input_format", "webdataset", "--enable_text", str(bool(args.text)), "--enable_metadata", "True",
           "--batch_size", str(args.batch_size), "--num_prepro_workers", str(workers), "--clip_model", spec,
           "--use_jit", "False"]
    if per_shard:
        cmd += ["--output_partition_count", str(shard_count)]
    return cmd


def clip_command(args, dtype, out):
    cmd = [args.clip, "-q", "inference", "--input", args.shards, "--output-dir", out, "--model", args.model,
           "--dtype", dtype, "--batch-size", str(args.batch_size), "--json"]
    if args.text:
        cmd.append("--text")
    if args.float16:
        cmd.append("--float16")
    return cmd


# ------------------------------------------------------------------------------------------------------------ outputs

def list_output(out):
    files = {}
    for sub, ext in (("img_emb", ".npy"), ("text_emb", ".npy"), ("metadata", ".parquet")):
        d = os.path.join(out, sub)
        files[sub] = sorted(f for f in os.listdir(d) if f.endswith(ext)) if os.path.isdir(d) else []
    return files


def load_output(out):
    """Everything in sorted file order (the order embedding_reader, autofaiss and clip back's providers use)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    files = list_output(out)
    o = {"dir": out, "files": files, "parts": []}
    tables = []
    for name in files["metadata"]:
        part_id = name[len("metadata_"):-len(".parquet")]
        table = pq.read_table(os.path.join(out, "metadata", name))
        tables.append(table)
        part = {"id": part_id, "rows": table.num_rows}
        for sub in ("img_emb", "text_emb"):
            p = os.path.join(out, sub, f"{sub}_{part_id}.npy")
            if os.path.exists(p):
                a = np.load(p, mmap_mode="r")
                part[sub] = a.shape[0]
                part[sub + "_dtype"] = str(a.dtype)
        o["parts"].append(part)
    o["schemas"] = [t.schema for t in tables]
    o["meta"] = pa.concat_tables(tables, promote_options="default").to_pandas() if tables else None
    # all .npy files in sorted order, as embedding_reader and autofaiss take them, whatever their names
    for sub, field in (("img_emb", "img"), ("text_emb", "txt")):
        arrays = [np.load(os.path.join(out, sub, f)) for f in files[sub]]
        o[field] = np.concatenate(arrays) if arrays else None
    return o


def cosine_rows(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def by_key(o):
    keys = o["meta"]["image_path"].astype(str).tolist()
    return {k: i for i, k in enumerate(keys)}


def compare_embeddings(name, ours, ref, field, min_cos, checks):
    if ours[field] is None or ref[field] is None:
        checks.check(ours[field] is None and ref[field] is None, f"{name}: {field} present in both",
                     f"ours {'absent' if ours[field] is None else 'present'}, "
                     f"reference {'absent' if ref[field] is None else 'present'}")
        return None
    a, b = by_key(ours), by_key(ref)
    common = sorted(set(a) & set(b))
    checks.check(len(common) == len(a) == len(b), f"{name}: same keys", f"{len(common)} common, {len(a)} vs {len(b)}")
    if not common:
        return None
    ia = np.array([a[k] for k in common])
    ib = np.array([b[k] for k in common])
    cos = cosine_rows(ours[field][ia], ref[field][ib])
    worst = common[int(np.argmin(cos))]
    checks.check(cos.min() >= min_cos, f"{name}: {field} cosine by key",
                 f"min {cos.min():.6f} (key {worst}), median {np.median(cos):.6f}, threshold {min_cos}")
    return float(cos.min())


def arrow_kind(t):
    import pyarrow as pa
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    return str(t)


def same_value(x, y):
    def null(v):
        return v is None or (isinstance(v, float) and math.isnan(v))
    if null(x) or null(y):
        return null(x) and null(y)
    if isinstance(x, (int, float, np.integer, np.floating)) and isinstance(y, (int, float, np.integer, np.floating)):
        return float(x) == float(y)
    return str(x) == str(y)


def check_layout_and_metadata(label, o, shards, args, checks, summary=None, reference=None, expected_dtype=None):
    """A clip inference output checked against the tars (and, for the metadata columns, a clip-retrieval output)."""
    n = len(shards)
    want = [partition_name(i, n) for i in range(n)]
    files = o["files"]
    checks.check(files["img_emb"] == [f"img_emb_{i}.npy" for i in want], f"{label}: img_emb file names",
                 f"{files['img_emb'][:3]}... ({len(files['img_emb'])} files; clip-retrieval: img_emb_{want[0]}.npy ..)")
    checks.check(files["metadata"] == [f"metadata_{i}.parquet" for i in want], f"{label}: metadata file names",
                 f"{files['metadata'][:3]}... ({len(files['metadata'])} files)")
    if args.text:
        checks.check(files["text_emb"] == [f"text_emb_{i}.npy" for i in want], f"{label}: text_emb file names",
                     f"{files['text_emb'][:3]}... ({len(files['text_emb'])} files)")
    else:
        checks.check(not files["text_emb"], f"{label}: no text_emb without --text (as clip-retrieval)",
                     f"{len(files['text_emb'])} files")
    bad = []
    for i, part in enumerate(o["parts"]):
        expected = len(shards[i]) if i < n else 0
        counts = [part["rows"], part.get("img_emb")] + ([part.get("text_emb")] if args.text else [])
        if any(c != expected for c in counts):
            bad.append(f"{part['id']}: metadata {part['rows']}, img {part.get('img_emb')}, "
                       f"text {part.get('text_emb')}, shard {expected}")
    checks.check(not bad and len(o["parts"]) == n, f"{label}: rows per shard = samples in the shard",
                 "; ".join(bad[:4]) or f"{n} shards, {sum(len(s) for s in shards)} rows")
    dtypes = sorted({p.get("img_emb_dtype") for p in o["parts"]} | {p.get("text_emb_dtype") for p in o["parts"]
                                                                    if "text_emb_dtype" in p})
    if expected_dtype:
        checks.check(dtypes == [expected_dtype], f"{label}: embedding dtype", f"{dtypes}, expected {expected_dtype}")
    for field in ("img", "txt"):
        if o[field] is not None:
            norms = np.linalg.norm(o[field].astype(np.float64), axis=1)
            tol = 2e-3 if o[field].dtype == np.float16 else 1e-4
            checks.check(np.abs(norms - 1).max() < tol, f"{label}: {field} rows L2-normalised",
                         f"norm range [{norms.min():.6f}, {norms.max():.6f}], dimension {o[field].shape[1]}")
    meta = o["meta"]
    if meta is None:
        checks.fail(f"{label}: metadata readable", "no metadata")
        return
    if summary is not None:
        total = sum(len(s) for s in shards)
        missing = [k for k in ("samples", "failed", "images_per_s", "seconds") if k not in summary]
        checks.check(not missing, f"{label}: --json summary fields", f"missing {missing}" if missing else
                     ", ".join(f"{k}={summary[k]}" for k in ("samples", "failed", "images_per_s", "seconds")))
        checks.check(summary.get("samples") == total and summary.get("failed") == 0, f"{label}: summary counts",
                     f"samples {summary.get('samples')} (tars: {total}), failed {summary.get('failed')}")
    cols = list(meta.columns)
    checks.check("image_path" in cols and "key" in cols, f"{label}: image_path and key columns", f"columns {cols}")
    if "image_path" in cols and "key" in cols:
        checks.check((meta["image_path"].astype(str) == meta["key"].astype(str)).all(), f"{label}: image_path = key")
    if "image_path" in cols:
        order_ok = True
        key_sets_ok = True
        start = 0
        for i, part in enumerate(o["parts"]):
            got = meta["image_path"].iloc[start:start + part["rows"]].astype(str).tolist()
            start += part["rows"]
            want_keys = [k for k, _, _, _ in shards[i]] if i < n else []
            key_sets_ok &= sorted(got) == sorted(want_keys)
            order_ok &= got == want_keys
        checks.check(key_sets_ok, f"{label}: each partition holds exactly its shard's keys")
        if not order_ok:
            checks.warn(f"{label}: rows not in tar order", "clip-retrieval's per-shard output keeps tar order")
    if "caption" in cols:
        captions = {k: c for s in shards for k, c, _, _ in s}
        wrong = [k for k, c in zip(meta["image_path"].astype(str), meta["caption"]) if captions.get(k) != c]
        if any(c is None for c in captions.values()):
            checks.warn(f"{label}: caption check skipped", "a sample without .txt")
        else:
            checks.check(not wrong, f"{label}: caption = the shard's .txt", f"{len(wrong)} differ {wrong[:3]}")
    else:
        checks.warn(f"{label}: no caption column")
    if reference is None:
        return
    ref_meta = reference["meta"]
    ref_cols = list(ref_meta.columns)
    missing = [c for c in ref_cols if c not in cols]
    extra = [c for c in cols if c not in ref_cols]
    checks.check(not missing, f"{label}: clip-retrieval's metadata columns present",
                 f"missing {missing}; clip-retrieval {ref_cols}; extra here {extra}")
    if [c for c in cols if c in ref_cols] != [c for c in ref_cols if c in cols]:
        checks.warn(f"{label}: column order differs", f"here {cols}, clip-retrieval {ref_cols}")
    ours_types = {f.name: f.type for f in o["schemas"][0]} if o["schemas"] else {}
    ref_types = {f.name: f.type for f in reference["schemas"][0]} if reference["schemas"] else {}
    for c in ref_cols:
        if c not in ours_types:
            continue
        a, b = arrow_kind(ours_types[c]), arrow_kind(ref_types.get(c))
        if ours_types[c] == ref_types.get(c):
            continue
        if b == "null" or a == b:
            checks.warn(f"{label}: column {c} type", f"{ours_types[c]} here, {ref_types.get(c)} in clip-retrieval")
        else:
            checks.fail(f"{label}: column {c} type", f"{ours_types[c]} here, {ref_types.get(c)} in clip-retrieval")
    kinds = {}
    for schema in o["schemas"]:
        for f in schema:
            kinds.setdefault(f.name, set()).add(str(f.type))
    varying = {k: sorted(v) for k, v in kinds.items() if len(v) > 1}
    checks.check(not varying, f"{label}: one schema across partitions (parquet_to_arrow needs it)", str(varying))
    a, b = by_key(o), by_key(reference)
    shared = [c for c in ref_cols if c in cols]
    diffs = []
    for k in sorted(set(a) & set(b)):
        ra, rb = meta.iloc[a[k]], ref_meta.iloc[b[k]]
        for c in shared:
            if not same_value(ra[c], rb[c]):
                diffs.append(f"{k}.{c}: {ra[c]!r} vs {rb[c]!r}")
    checks.check(not diffs, f"{label}: metadata values equal clip-retrieval's by key",
                 f"{len(diffs)} differences {diffs[:3]}" if diffs else f"columns {shared}")


# ------------------------------------------------------------------------------------------------------- loadability

def check_loadable(label, out, work, spec, shards, checks):
    """clip's (or clip-retrieval's) output read by embedding_reader, indexed by clip-retrieval's clip_index
    (autofaiss) and served by clip back's loaders, queried through KnnService."""
    from embedding_reader import EmbeddingReader
    o = load_output(out)
    meta = o["meta"]
    if meta is None or o["img"] is None or len(meta) != o["img"].shape[0]:
        checks.fail(f"{label}: loadable", "no metadata, no img_emb, or different row counts")
        return
    n = len(meta)
    keys = meta["image_path"].astype(str).tolist()
    jpgs = {k: jpg for s in shards for k, _, _, jpg in s}

    # embedding_reader: what autofaiss reads embeddings with
    for sub, field in (("img_emb", "img"), ("text_emb", "txt")):
        if o[field] is None:
            continue
        try:
            reader = EmbeddingReader(os.path.join(out, sub), file_format="npy")
            got = np.concatenate([b for b, _ in reader(batch_size=256, show_progress=False)])
            checks.check(reader.count == n and got.shape == o[field].shape
                         and np.array_equal(got.astype(np.float32), o[field].astype(np.float32)),
                         f"{label}: embedding_reader npy {sub}", f"count {reader.count}, dimension {reader.dimension},"
                                                                 f" dtype {getattr(reader.reader, 'dtype', '?')}")
        except Exception as e:  # noqa: BLE001
            checks.fail(f"{label}: embedding_reader npy {sub}", repr(e))
        try:
            reader = EmbeddingReader(os.path.join(out, sub), file_format="parquet_npy",
                                     metadata_folder=os.path.join(out, "metadata"), meta_columns=["image_path"])
            got_keys = []
            rows = 0
            for batch, m in reader(batch_size=256, show_progress=False):
                got_keys += m["image_path"].astype(str).tolist()
                rows += batch.shape[0]
            checks.check(got_keys == keys and rows == n, f"{label}: embedding_reader parquet_npy {sub}+metadata",
                         f"{rows} rows, keys paired in order: {got_keys == keys}")
        except Exception as e:  # noqa: BLE001
            checks.fail(f"{label}: embedding_reader parquet_npy {sub}+metadata", repr(e))

    # clip-retrieval's clip_index: autofaiss build_index over img_emb and text_emb, metadata copied
    import logging
    from clip_retrieval.clip_index import clip_index
    logging.getLogger("autofaiss").setLevel(logging.WARNING)
    index_dir = os.path.join(work, "index-" + label)
    shutil.rmtree(index_dir, ignore_errors=True)
    try:
        clip_index(out, index_dir, max_index_memory_usage="1G", current_memory_available="4G",
                   nb_cores=usable_cores())
    except Exception as e:  # noqa: BLE001
        checks.fail(f"{label}: clip_index (autofaiss build_index)", repr(e))
        return
    has_text = o["txt"] is not None
    built = [os.path.exists(os.path.join(index_dir, f)) for f in ("image.index", "image.json")]
    if has_text:
        built += [os.path.exists(os.path.join(index_dir, f)) for f in ("text.index", "text.json")]
    infos = {}
    try:
        with open(os.path.join(index_dir, "image.json")) as f:
            infos = json.load(f)
    except (OSError, ValueError):
        pass
    checks.check(all(built), f"{label}: clip_index built image{'/text' if has_text else ''} index",
                 f"{infos.get('index_key', '?')}, {infos.get('nb vectors', infos.get('nb_vectors', '?'))} vectors")

    # clip back's loaders and query path
    import importlib
    import faiss
    clip_back = importlib.import_module("clip_retrieval.clip_back")  # the package exports a function of that name
    from clip_retrieval.clip_back_prepro.parquet_to_arrow import parquet_to_arrow
    cols = [c for c in ("url", "image_path", "caption", "key") if c in meta.columns]
    arrow_dir = os.path.join(work, "index-arrow-" + label)
    shutil.rmtree(arrow_dir, ignore_errors=True)
    os.makedirs(arrow_dir)
    for f in os.listdir(index_dir):
        if f.endswith((".index", ".json")):
            os.symlink(os.path.join(index_dir, f), os.path.join(arrow_dir, f))
    try:
        parquet_to_arrow(os.path.join(index_dir, "metadata"), os.path.join(arrow_dir, "metadata"), cols)
        arrow_ok = True
    except Exception as e:  # noqa: BLE001
        checks.fail(f"{label}: clip back parquet_to_arrow", repr(e))
        arrow_ok = False
    variants = [("parquet", index_dir, {}), ("hdf5", index_dir, {"enable_hdf5": True})]
    if arrow_ok:
        variants.append(("arrow", arrow_dir, {"use_arrow": True}))
    field_names = set(getattr(clip_back.ClipOptions, "__dataclass_fields__", {}).keys())
    probe = sorted({0, n // 2, n - 1, n // 3, (2 * n) // 3})
    with_text = has_text and "caption" in meta.columns
    for name, folder, extra in variants:
        opts = dict(indice_folder="", clip_model=spec, enable_hdf5=False, enable_faiss_memory_mapping=False,
                    columns_to_return=cols, reorder_metadata_by_ivf_index=False, enable_mclip_option=False,
                    use_jit=False, use_arrow=False, provide_safety_model=False, provide_violence_detector=False,
                    provide_aesthetic_embeddings=False)
        opts.update(extra)
        paths = os.path.join(work, f"indices-{label}-{name}.json")
        with open(paths, "w") as f:
            json.dump({label: folder}, f)
        try:
            resources = clip_back.load_clip_indices(paths, clip_back.ClipOptions(
                **{k: v for k, v in opts.items() if k in field_names}))
            knn = clip_back.KnnService(clip_resources=resources)
        except Exception as e:  # noqa: BLE001
            checks.fail(f"{label}: clip back loads the index and {name} metadata", repr(e))
            continue
        problems = []
        for r in probe:
            queries = [("image", "stored image embedding", {"embedding_input": o["img"][r].astype(np.float32).tolist()}),
                       ("image", "the JPEG, embedded by clip back",
                        {"image_input": base64.b64encode(jpgs[keys[r]]).decode()})]
            if with_text:
                queries += [("text", "stored text embedding", {"embedding_input": o["txt"][r].astype(np.float32).tolist()}),
                            ("text", "the caption, embedded by clip back", {"text_input": meta["caption"].iloc[r]})]
            for modality, what, q in queries:
                try:
                    res = knn.query(modality=modality, num_images=5, num_result_ids=5, deduplicate=False, **q)
                except Exception as e:  # noqa: BLE001
                    problems.append(f"row {r} {modality} by {what}: {e!r}")
                    continue
                if not res:
                    problems.append(f"row {r} {modality} by {what}: no result")
                    continue
                top = res[0]
                hit = top["id"]
                # a tie (same photo or caption twice) is fine when the hit's vector is the row's own
                field = o["img"] if modality == "image" else o["txt"]
                same = hit == r or cosine_rows(field[[hit]], field[[r]])[0] > 0.9999
                if not same or top.get("image_path") != keys[hit] or any(c not in top for c in cols):
                    problems.append(f"row {r} ({keys[r]}) {modality} by {what}: top id {hit}, "
                                    f"image_path {top.get('image_path')!r}, similarity {top.get('similarity'):.4f}, "
                                    f"columns {sorted(k for k in top if k != 'image')}")
        kinds = "image" + ("+text" if with_text else "")
        checks.check(not problems, f"{label}: clip back KnnService.query, {name} metadata ({kinds})",
                     "; ".join(problems[:3]) if problems else
                     f"{len(probe)} rows: top hit = the row, metadata {cols} returned")
    # faiss directly, as clip_filter reads the index: read_index + search
    index = faiss.read_index(os.path.join(index_dir, "image.index"))
    _, ids = index.search(o["img"][probe].astype(np.float32), 1)
    checks.check(index.ntotal == n and all(cosine_rows(o["img"][[i]], o["img"][[r]])[0] > 0.9999
                                           for i, r in zip(ids[:, 0], probe)),
                 f"{label}: faiss.read_index + search", f"ntotal {index.ntotal}, {type(index).__name__}")


# ---------------------------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=os.path.join(ROOT, "target", "release", "clip"))
    ap.add_argument("--model", default="/tmp/vitb32", help="Hugging Face CLIP directory")
    ap.add_argument("--shards", default="/tmp/cr-shards/{00000..00009}.tar", help="brace pattern, as both tools take")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--text", action="store_true", help="text embeddings too (both tools)")
    ap.add_argument("--float16", action="store_true", help="clip inference --float16 (clip-retrieval always is)")
    ap.add_argument("--dtypes", default="f32", help="clip inference --dtype values, comma-separated")
    ap.add_argument("--cr-configs", default="default,per-shard", help="clip-retrieval configurations: default, per-shard")
    ap.add_argument("--cr-bin", default=None, help="clip-retrieval console script [default: beside this python]")
    ap.add_argument("--work", default="/tmp/cr-compare", help="outputs, logs, converted model, indices")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    ap.add_argument("--cr-device", choices=["cpu", "auto"], default="cpu",
                    help="cpu (default): CUDA_VISIBLE_DEVICES= for clip-retrieval, a CPU-to-CPU comparison as clip "
                         "runs on the CPU; auto: let it take a GPU when torch sees one")
    ap.add_argument("--no-clip", action="store_true", help="clip-retrieval only (setup check, control checks)")
    ap.add_argument("--skip-verify", action="store_true", help="skip the weight conversion check")
    ap.add_argument("--min-cosine", type=float, default=None, help="override the per-dtype thresholds")
    ap.add_argument("--checks-only", action="store_true",
                    help="no runs: check the outputs a previous run left in WORK/out (and its saved summaries)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # autofaiss, embedding_reader and parquet_to_arrow progress bars

    checks = Checks()
    dtypes = [] if args.no_clip else [d.strip() for d in args.dtypes.split(",") if d.strip()]
    cr_configs = [c.strip() for c in args.cr_configs.split(",") if c.strip()]
    for c in cr_configs:
        if c not in ("default", "per-shard"):
            raise SystemExit(f"unknown --cr-configs entry {c}")
    if not args.no_clip:
        if not os.access(args.clip, os.X_OK):
            raise SystemExit(f"{args.clip}: not an executable (build it: cargo build --release -p clip-cli), "
                             f"or pass --no-clip")
        probe = subprocess.run([args.clip, "inference", "--help"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise SystemExit(f"{args.clip} has no `inference` command:\n{probe.stderr[-2000:]}")
    cr_bin = args.cr_bin or os.path.join(os.path.dirname(sys.executable), "clip-retrieval")
    if not os.path.exists(cr_bin):
        raise SystemExit(f"{cr_bin} not found: run this script with the clip-retrieval environment's python")
    os.makedirs(args.work, exist_ok=True)

    shard_paths = expand_braces(args.shards)
    missing = [p for p in shard_paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"missing shards: {missing[:3]}")
    shards = read_shards(shard_paths, args.text)
    total = sum(len(s) for s in shards)
    model_name, flags = cpu_description()
    print(f"CPU: {lscpu_model() or model_name} [{' '.join(flags)}], {usable_cores()} usable cores "
          f"(/proc/cpuinfo: {model_name})")
    print(f"shards: {len(shard_paths)} ({args.shards}), {total} samples, batch size {args.batch_size}, "
          f"text {'on' if args.text else 'off'}")
    vers = versions(sys.executable)
    clip_version = None
    if not args.no_clip:
        clip_version = subprocess.run([args.clip, "--version"], capture_output=True, text=True).stdout.strip()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v) + f"; python {sys.version.split()[0]}"
          + (f"; {clip_version}" if clip_version else ""))

    print("\n== model")
    spec, config_dir, arch = convert_model(args.model, args.work)
    cr_launch = [cr_bin] if config_dir is None else [sys.executable, "-c", LAUNCHER, config_dir]
    print(f"clip-retrieval --clip_model {spec}" + ("" if config_dir is None else f" (launcher registers {arch})"))
    if not args.skip_verify:
        verify_conversion(args.model, spec, [s for shard in shards for s in shard][:4], checks)
    checkpoint = spec.split("/", 1)[1]
    warm_page_cache(shard_paths + [checkpoint, os.path.join(args.model, "model.safetensors")])

    configs = [("cr-" + c, c) for c in cr_configs] + [("clip-" + d, d) for d in dtypes]
    runs = {name: [] for name, _ in configs}
    summaries = {}
    out_root = os.path.join(args.work, "out")
    log_root = os.path.join(args.work, "logs")
    os.makedirs(out_root, exist_ok=True)
    os.makedirs(log_root, exist_ok=True)
    print(f"\n== timing: {args.rounds} round(s), alternating; outputs and logs under {args.work}")
    for r in range(0 if args.checks_only else args.rounds):
        order = configs if r % 2 == 0 else list(reversed(configs))
        for name, what in order:
            out = os.path.join(out_root, name)
            shutil.rmtree(out, ignore_errors=True)
            if name.startswith("cr-"):
                cmd = cr_command(args, cr_launch, spec, out, what == "per-shard", len(shard_paths))
            else:
                cmd = clip_command(args, what, out)
            env = None
            if name.startswith("cr-") and args.cr_device == "cpu":
                env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
            load = os.getloadavg()[0]
            seconds, rc, stdout = run_timed(cmd, os.path.join(log_root, f"{name}-r{r}.log"), args.timeout, env=env)
            runs[name].append(seconds)
            if name.startswith("clip-"):
                summaries[name] = last_json(stdout or "")
                with open(os.path.join(log_root, f"{name}.summary.json"), "w") as f:
                    json.dump(summaries[name], f)
            print(f"  round {r + 1} {name:13s} {seconds:8.2f} s  {total / seconds:7.2f} samples/s  rc {rc}  "
                  f"(load average before {load:.2f})", flush=True)
            if rc != 0:
                checks.fail(f"{name} run {r + 1}", f"exit {rc}, log {os.path.join(log_root, f'{name}-r{r}.log')}")

    if args.checks_only:
        for name, _ in configs:
            try:
                with open(os.path.join(log_root, f"{name}.summary.json")) as f:
                    summaries[name] = json.load(f)
            except (OSError, ValueError):
                pass
    print(f"\n== results (median of {args.rounds}, whole process, {total} samples)")
    medians = {name: statistics.median(t) for name, t in runs.items() if t}
    for name, _ in configs:
        if name not in medians:
            continue
        m = medians[name]
        extra = ""
        s = summaries.get(name)
        if s and "images_per_s" in s:
            extra = f"  (its own summary: {s.get('images_per_s')} images/s over {s.get('seconds')} s)"
        print(f"  {name:13s} {m:8.2f} s  {total / m:7.2f} samples/s  rounds {', '.join(f'{t:.2f}' for t in runs[name])}"
              f"{extra}")
    cr_names = [n for n, _ in configs if n.startswith("cr-")]
    best_cr = min(cr_names, key=lambda n: medians[n]) if cr_names and medians else None
    ratios = {}
    for name, _ in configs:
        if name.startswith("clip-") and best_cr:
            for c in cr_names:
                ratios[f"{name}/{c}"] = medians[c] / medians[name]
            print(f"  {name}: {medians[best_cr] / medians[name]:.2f}x the fastest clip-retrieval ({best_cr}); "
                  + ", ".join(f"{medians[c] / medians[name]:.2f}x {c}" for c in cr_names))

    print("\n== checks")
    outputs = {name: load_output(os.path.join(out_root, name)) for name, _ in configs
               if os.path.isdir(os.path.join(out_root, name, "metadata"))}
    reference_name = "cr-per-shard" if "cr-per-shard" in outputs else ("cr-default" if "cr-default" in outputs else None)
    reference = outputs.get(reference_name)
    for name in cr_names:
        if name not in outputs:
            checks.fail(f"{name}: output present")
            continue
        o = outputs[name]
        n_rows = len(o["meta"]) if o["meta"] is not None else 0
        checks.check(n_rows == total and o["img"] is not None and o["img"].shape[0] == total,
                     f"{name}: rows", f"{n_rows} metadata rows, {None if o['img'] is None else o['img'].shape} img")
        print(f"  info {name}: files {o['files']}, columns {list(o['meta'].columns) if o['meta'] is not None else None}"
              f", types {[f'{f.name}:{f.type}' for f in o['schemas'][0]] if o['schemas'] else None}, "
              f"img dtype {None if o['img'] is None else o['img'].dtype}")
    if "cr-default" in outputs and "cr-per-shard" in outputs:
        compare_embeddings("cr-default vs cr-per-shard", outputs["cr-default"], outputs["cr-per-shard"], "img",
                           0.9999, checks)
    if reference_name == "cr-per-shard":
        check_layout_and_metadata("cr-per-shard (control)", reference, shards, args, checks)
    min_cos = {}
    for name, dtype in configs:
        if not name.startswith("clip-"):
            continue
        if name not in outputs:
            checks.fail(f"{name}: output present", os.path.join(out_root, name))
            continue
        o = outputs[name]
        check_layout_and_metadata(name, o, shards, args, checks, summary=summaries.get(name) or {},
                                  reference=reference, expected_dtype="float16" if args.float16 else "float32")
        if reference_name == "cr-per-shard":
            checks.check(o["files"] == reference["files"], f"{name}: same files as clip-retrieval per-shard output")
        threshold = args.min_cosine if args.min_cosine is not None else MIN_COSINE.get(dtype, 0.99)
        if reference is not None:
            min_cos[name] = {"img": compare_embeddings(f"{name} vs {reference_name}", o, reference, "img", threshold,
                                                       checks)}
            if args.text:
                min_cos[name]["txt"] = compare_embeddings(f"{name} vs {reference_name}", o, reference, "txt",
                                                          threshold, checks)

    print("\n== loading with clip-retrieval's tools and autofaiss")
    loadable = [n for n, _ in configs if n.startswith("clip-") and n in outputs][:1] + \
               [n for n in (reference_name,) if n]
    for name in loadable:
        try:
            check_loadable(name, os.path.join(out_root, name), args.work, spec, shards, checks)
        except Exception as e:  # noqa: BLE001
            checks.fail(f"{name}: loading checks", repr(e))

    result = {
        "cpu": lscpu_model() or model_name, "flags": flags, "cores": usable_cores(), "versions": vers,
        "clip_version": clip_version, "shards": args.shards, "samples": total, "batch_size": args.batch_size,
        "text": args.text, "float16": args.float16, "rounds": args.rounds, "clip_retrieval_model": spec,
        "seconds": runs, "median_seconds": medians, "samples_per_s": {k: total / v for k, v in medians.items()},
        "speedup": ratios, "min_cosine": min_cos, "clip_summaries": summaries,
        "checks_passed": checks.passed, "checks_failed": checks.failed, "warnings": checks.warnings,
    }
    with open(args.json_out or os.path.join(args.work, "results.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)
    print(f"\n{checks.passed} passed, {len(checks.failed)} failed ({checks.warnings} warnings)")
    for f in checks.failed:
        print(f"  failed: {f}")
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
