"""Photo search, same machine, same photos, same weights: rclip (PyPI `rclip`: ONNX Runtime, SQLite, brute-force
numpy search) against `clip index` / `clip search`. Speed only.

Usage (this script runs where torch and open_clip_torch are; rclip runs in its own environment, since it pins
numpy and Pillow versions of its own: `python3 -m venv /tmp/rclip-venv && /tmp/rclip-venv/bin/pip install rclip`):
    cargo build --release -p clip-cli
    python scripts/bench/rclip_compare.py [--photos /tmp/search-photos] [--model /tmp/vitb32-openclip]
                                          [--rclip-python /tmp/rclip-venv/bin/python] [--query "a photo of a cat"]
                                          [--index-rounds 3] [--query-rounds 5] [--no-clip] [--json]

Measured, each as the wall time of a whole process (start-up, model load, work, results), the way a user meets it:
  index  a fresh database over all of PHOTO_DIR. rclip indexes as part of a search: `rclip "QUERY"` run in
         PHOTO_DIR with an empty database, so its figure includes one query; clip: `clip index DIR --db F
         --model M --json` (F deleted first). Reported as photos/s = N / seconds (median of --index-rounds).
  query  one text query against the finished index, top 10, median of --query-rounds: `rclip -n "QUERY"`
         (--no-indexing: no rescan of the folder), `rclip "QUERY"` (its default: rescans the folder for changes
         first), and `clip search --db F "QUERY" --top-k 10 --json`.

Models. rclip 3.x downloads `ViT-B-32-256` (open_clip's ViT-B/32 at 256x256 pixels, DataComp weights) as ONNX
files (visual.onnx, textual.onnx: torch.onnx.export, opset 18, fp32) plus the BPE vocabulary from the Hugging Face
repository yurijmikhalevich/rclip-models into RCLIP_DATADIR, and only when they are absent. Nothing is downloaded
here: a random ViT-B-32-256 (seeded) is exported the same way into a private RCLIP_DATADIR, and the same weights are
written as an open_clip directory (open_clip_config.json + open_clip_model.safetensors) at --model for clip, unless
--model already holds one, in which case its weights are the ones exported for rclip (when its architecture is
ViT-B-32-256; any other architecture is used as it is, with a warning that the two engines then do different
amounts of work). rclip runs unmodified through a launcher that only makes any attempt to reach the Hugging Face Hub
fail loudly. The export is checked against PyTorch through rclip's own Model class, and with clip present the
embeddings of both engines are compared: same weights, but rclip preprocesses with its own resize and crop (and
tokenises with its own copy of the BPE), so the cosines are close to, not exactly, 1.

Photos: when PHOTO_DIR holds no JPEG, 200 are made (crops, flips and colour shifts of the photos that ship with
scikit-image, 640x480 to 2000x1500, every file's bytes distinct: rclip reuses the vector of a file whose
fingerprint it has seen, which would skip work). Time only on an otherwise idle machine.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_description, usable_cores  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = "/tmp/vitb32-openclip"   # an open_clip directory clip reads; generated when absent
DEFAULT_PHOTOS = "/tmp/search-photos"
ARCH = "ViT-B-32-256"                     # what rclip 3.x runs
RCLIP_MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
RCLIP_VOCAB = "tokenizer/bpe_simple_vocab_16e6.txt.gz"
SEED = 0


# ---------------------------------------------------------------------------------------------------------------
# The clip side: command lines and JSON keys of `clip index` / `clip search`. Adjust here.
# ---------------------------------------------------------------------------------------------------------------

def clip_index_command(args, db):
    return [args.clip, *args.clip_global, "index", args.photos, "--db", db, "--model", args.model, "--json"]


def clip_search_command(args, db):
    return [args.clip, *args.clip_global, "search", "--db", db, args.query, "--top-k", str(args.top_k), "--json"]


def parse_clip_index(stdout):
    """`clip index --json`'s summary {"added", "updated", "removed", "unchanged", "reused", "failed": [...], ...}
    -> (photos embedded or reused, the report). The last line is taken when it prints JSON lines."""
    report = last_json(stdout)
    if report.get("failed"):
        raise SystemExit(f"clip index failed on {len(report['failed'])} photos: {report['failed'][:3]}")
    counted = [report[k] for k in ("added", "reused") if isinstance(report.get(k), int)]
    return (sum(counted) if counted else None), report


def parse_clip_search(stdout):
    """`clip search --json` -> the result paths. Accepts a list, an object holding the list under "results" (or
    "matches", "hits"), or JSON lines; a result is a path or an object with "path" (or "file", "filepath")."""
    text = stdout.strip()
    try:
        report = json.loads(text)
    except json.JSONDecodeError:
        report = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = report
    if isinstance(report, dict):
        rows = next((report[k] for k in ("results", "matches", "hits") if k in report), [])
    return [next((r[k] for k in ("path", "file", "filepath") if k in r), None) if isinstance(r, dict) else r
            for r in rows]


def last_json(text):
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------------------------
# rclip
# ---------------------------------------------------------------------------------------------------------------

# Runs rclip's console entry point unchanged. The only patch: a stand-in `huggingface_hub` module whose every
# attribute raises, so that a missing model file ends the run with a message instead of a download (rclip imports
# huggingface_hub only inside its download functions, which it calls only for files absent from RCLIP_DATADIR).
LAUNCHER = r"""
import sys, types
class _Offline(types.ModuleType):
    def __getattr__(self, name):
        raise SystemExit("rclip tried to reach the Hugging Face Hub (huggingface_hub." + name + "): a model file is "
                         "missing from RCLIP_DATADIR")
sys.modules["huggingface_hub"] = _Offline("huggingface_hub")
from rclip.main import main
sys.argv = ["rclip", *sys.argv[1:]]
sys.exit(main())
"""

# Runs inside rclip's environment: rclip's own Model on fixed inputs, for the export check.
PROBE = r"""
import sys, types, numpy as np
sys.modules["huggingface_hub"] = types.ModuleType("huggingface_hub")
from rclip import model, model_download
import onnxruntime, rclip
m = model.Model()
pixels = np.load(sys.argv[1])
image = m.compute_preprocessed_image_features(list(pixels))
text = m.compute_text_features([sys.argv[3]])
tokens = m._tokenizer([sys.argv[3]])
np.savez(sys.argv[2], image=image, text=text, tokens=tokens)
import importlib.metadata as md
print(md.version("rclip"), onnxruntime.__version__, np.__version__, md.version("pillow"))
"""


def rclip_env(args):
    env = dict(os.environ, RCLIP_DATADIR=args.rclip_datadir, HF_HUB_OFFLINE="1")
    env.pop("RCLIP_MODEL_CACHE_DIR", None)
    return env


def run_rclip(args, argv):
    """Wall seconds of one rclip process run in PHOTO_DIR, and its result paths."""
    start = time.perf_counter()
    done = subprocess.run([args.rclip_python, "-c", LAUNCHER, *argv], cwd=args.photos, env=rclip_env(args),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"rclip failed (exit {done.returncode}): rclip {' '.join(argv)}\n{done.stderr[-3000:]}")
    paths = [line.split("\t", 1)[1].strip('"') for line in done.stdout.splitlines()[1:] if "\t" in line]
    return seconds, paths, done.stderr


def fresh_rclip_db(args):
    for path in glob.glob(os.path.join(args.rclip_datadir, "db.sqlite3*")):
        os.remove(path)


def rclip_vectors(args, paths):
    con = sqlite3.connect(os.path.join(args.rclip_datadir, "db.sqlite3"))
    try:
        rows = dict(con.execute("SELECT filepath, vector FROM images WHERE deleted IS NULL").fetchall())
    finally:
        con.close()
    return np.stack([np.frombuffer(rows[p], np.float32) for p in paths])


def measure_rclip(args, photos):
    out = {"index_seconds": [], "query_seconds": [], "query_rescan_seconds": []}
    for _ in range(args.index_rounds):
        fresh_rclip_db(args)
        seconds, paths, stderr = run_rclip(args, [args.query])
        out["index_seconds"].append(seconds)
        count = sqlite_count(args)
        if count != len(photos):
            raise SystemExit(f"rclip indexed {count} photos of {len(photos)}:\n{stderr[-3000:]}")
    for _ in range(args.query_rounds):
        seconds, paths, _ = run_rclip(args, ["-n", args.query])
        out["query_seconds"].append(seconds)
        check_results("rclip -n", paths, args.top_k)
    for _ in range(args.query_rounds):
        seconds, paths, _ = run_rclip(args, [args.query])
        out["query_rescan_seconds"].append(seconds)
        check_results("rclip", paths, args.top_k)
    out["top"] = paths
    # where a query's time goes: starting Python and importing rclip (numpy, Pillow, onnxruntime, tqdm) alone
    for _ in range(args.query_rounds):
        start = time.perf_counter()
        subprocess.run([args.rclip_python, "-c", "import rclip.main, onnxruntime"], env=rclip_env(args), check=True)
        out.setdefault("import_seconds", []).append(time.perf_counter() - start)
    return out


def sqlite_count(args):
    con = sqlite3.connect(os.path.join(args.rclip_datadir, "db.sqlite3"))
    try:
        return con.execute("SELECT COUNT(*) FROM images WHERE deleted IS NULL").fetchone()[0]
    finally:
        con.close()


def check_results(name, paths, k):
    if len(paths) != k:
        raise SystemExit(f"{name} returned {len(paths)} results, expected {k}")


# ---------------------------------------------------------------------------------------------------------------
# clip
# ---------------------------------------------------------------------------------------------------------------

def run_clip(args, command):
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"clip failed (exit {done.returncode}):\n  {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def measure_clip(args, photos):
    db = os.path.join(args.workdir, "clip-index.db")
    out = {"index_seconds": [], "query_seconds": []}
    for _ in range(args.index_rounds):
        for path in glob.glob(db + "*"):
            os.remove(path) if os.path.isfile(path) else shutil.rmtree(path)
        seconds, stdout = run_clip(args, clip_index_command(args, db))
        out["index_seconds"].append(seconds)
        count, out["index_report"] = parse_clip_index(stdout)
        if count is not None and count != len(photos):
            raise SystemExit(f"clip indexed {count} photos of {len(photos)}")
    for _ in range(args.query_rounds):
        seconds, stdout = run_clip(args, clip_search_command(args, db))
        out["query_seconds"].append(seconds)
        out["top"] = parse_clip_search(stdout)
        check_results("clip search", out["top"], args.top_k)
    out["search_report"] = last_json(stdout) if stdout.strip() else None
    return out


def clip_embeddings(args, paths, text):
    """Normalised image and text embeddings from `clip embed` (an existing command), for the comparison."""
    with tempfile.TemporaryDirectory() as tmp:
        images, texts = os.path.join(tmp, "i.npy"), os.path.join(tmp, "t.npy")
        for flag, values, out in (("--image", paths, images), ("--text", [text], texts)):
            run_clip(args, [args.clip, *args.clip_global, "embed", "--model", args.model, flag, *values,
                            "--normalize", "--output", out, "--quiet"])
        return np.load(images), np.load(texts)


# ---------------------------------------------------------------------------------------------------------------
# Model: one set of random weights, as an open_clip directory for clip and as rclip's ONNX files
# ---------------------------------------------------------------------------------------------------------------

def preprocess_cfg():
    # open_clip's defaults for ViT-B-32-256 datacomp_s34b_b86k: OpenAI's mean and std, bicubic, shortest side.
    return {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic", "resize_mode": "shortest"}


def load_or_make_model(args):
    """The torch model whose weights both engines get, and whether clip's --model holds the same weights."""
    import open_clip
    import torch
    from safetensors.torch import load_file, save_file

    config_path = os.path.join(args.model, "open_clip_config.json")
    weights_path = os.path.join(args.model, "open_clip_model.safetensors")
    arch_cfg = open_clip.get_model_config(ARCH)
    if os.path.exists(config_path):
        model_cfg = json.load(open(config_path))["model_cfg"]
        if model_cfg == arch_cfg and os.path.exists(weights_path):
            model = open_clip.create_model(ARCH, pretrained=None)
            model.load_state_dict(load_file(weights_path))
            return model.eval(), True, f"{ARCH} weights from {weights_path}"
        size = model_cfg.get("vision_cfg", {}).get("image_size")
        print(f"warning: {args.model} is not a {ARCH} (image_size {size}); rclip gets a random {ARCH} (seed {SEED}):"
              " the two engines do different amounts of work per photo and the embeddings are not compared",
              file=sys.stderr)
        torch.manual_seed(SEED)
        return open_clip.create_model(ARCH, pretrained=None).eval(), False, f"random {ARCH}, seed {SEED}"
    torch.manual_seed(SEED)
    model = open_clip.create_model(ARCH, pretrained=None).eval()
    os.makedirs(args.model, exist_ok=True)
    json.dump({"model_cfg": arch_cfg, "preprocess_cfg": preprocess_cfg()}, open(config_path, "w"), indent=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights_path)
    print(f"wrote a random {ARCH} (seed {SEED}) to {args.model}", file=sys.stderr)
    return model, True, f"random {ARCH}, seed {SEED}"


def weights_digest(model):
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def export_for_rclip(args, model):
    """rclip's model files in the private RCLIP_DATADIR (skipped when they already hold these weights)."""
    import open_clip
    import torch

    model_dir = os.path.join(args.rclip_datadir, RCLIP_MODEL_SUBDIR)
    marker = os.path.join(model_dir, "exported-from.json")
    digest = weights_digest(model)
    if os.path.exists(marker) and json.load(open(marker)).get("weights") == digest:
        return digest
    os.makedirs(model_dir, exist_ok=True)

    class Visual(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.visual(x)

    class Textual(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.encode_text(x)

    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    for name, module, probe in (("visual.onnx", Visual(model), torch.randn(1, 3, size, size)),
                                ("textual.onnx", Textual(model), torch.zeros(1, 77, dtype=torch.long))):
        torch.onnx.export(module.eval(), (probe,), os.path.join(model_dir, name), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=18, dynamo=False)
    vocab = os.path.join(args.rclip_datadir, RCLIP_VOCAB)
    os.makedirs(os.path.dirname(vocab), exist_ok=True)
    shutil.copy2(os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz"), vocab)
    json.dump({"weights": digest, "arch": ARCH}, open(marker, "w"))
    print(f"exported {ARCH} to ONNX in {model_dir}", file=sys.stderr)
    return digest


def check_export(args, model):
    """rclip's Model (ONNX Runtime, its tokenizer) against PyTorch on the same inputs. Returns rclip's versions."""
    import open_clip
    import torch

    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    pixels = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "pixels.npy"), pixels)
        done = subprocess.run([args.rclip_python, "-c", PROBE, os.path.join(tmp, "pixels.npy"),
                               os.path.join(tmp, "out.npz"), args.query], env=rclip_env(args), capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise SystemExit(f"rclip's Model failed on the exported files:\n{done.stderr[-3000:]}")
        got = np.load(os.path.join(tmp, "out.npz"))
        got = {k: got[k] for k in got.files}
    tokens = open_clip.get_tokenizer(ARCH)([args.query]).numpy()
    if not np.array_equal(tokens, got["tokens"]):
        raise SystemExit("rclip's tokenizer and open_clip's disagree on the query")
    with torch.inference_mode():
        image = torch.nn.functional.normalize(model.encode_image(torch.from_numpy(pixels)), dim=-1).numpy()
        text = torch.nn.functional.normalize(model.encode_text(torch.from_numpy(tokens)), dim=-1).numpy()
    diff = max(float(np.abs(image - got["image"]).max()), float(np.abs(text - got["text"]).max()))
    print(f"rclip (ONNX Runtime) vs PyTorch on the exported weights: max |diff| of normalised features {diff:.1e}",
          file=sys.stderr)
    if diff > 1e-4:
        raise SystemExit(f"the exported ONNX files do not match PyTorch ({diff:.1e})")
    versions = dict(zip(("rclip", "onnxruntime", "numpy", "pillow"), done.stdout.split()))
    versions["export_max_diff"] = diff
    return versions


# ---------------------------------------------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------------------------------------------

SOURCES = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field",
           "retina", "ihc", "camera", "coins", "moon", "brick", "grass", "gravel", "page"]
SIZES = [(640, 480), (1024, 768), (1280, 960), (1600, 1200), (2000, 1500), (768, 1024), (1200, 1600)]


def rclip_fingerprint(path):
    """rclip's duplicate key (its compute_file_hash: the first MiB and the last KiB), plus the size it also uses."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        size = f.seek(0, 2)
        if size > 1024:
            f.seek(-1024, 2)
            h.update(f.read(1024))
    return h.hexdigest(), size


def make_photos(directory, count):
    """`count` distinct JPEGs: a random crop of a scikit-image photo, maybe mirrored, colour-shifted, resized."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(SEED)
    sources = []
    for name in SOURCES:
        try:
            array = getattr(data, name)()
        except Exception:   # a photo not bundled with this scikit-image (fetched on demand): skipped
            continue
        image = Image.fromarray(array[..., :3] if array.ndim == 3 else array).convert("RGB")
        sources.append((name, image))
    os.makedirs(directory, exist_ok=True)
    seen = set()
    for i in range(count):
        name, image = sources[i % len(sources)]
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        w, h = image.size
        aspect = width / height
        cw = int(min(w, h * aspect) * rng.uniform(0.6, 1.0))
        ch = int(cw / aspect)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        tile = image.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        shift = (rng.uniform(0.8, 1.2, 3)).astype(np.float32)
        tile = Image.fromarray(np.clip(np.asarray(tile, np.float32) * shift, 0, 255).astype(np.uint8))
        tile = tile.resize((width, height), Image.Resampling.BICUBIC)
        path = os.path.join(directory, f"{i:04d}_{name}_{width}x{height}.jpg")
        tile.save(path, quality=int(rng.integers(85, 96)))
        key = rclip_fingerprint(path)
        if key in seen:
            raise SystemExit(f"{path} duplicates an earlier photo's bytes")
        seen.add(key)
    print(f"wrote {count} photos to {directory}", file=sys.stderr)


def list_photos(directory):
    return sorted(os.path.abspath(p) for p in glob.glob(os.path.join(directory, "**", "*"), recursive=True)
                  if p.lower().endswith((".jpg", ".jpeg", ".png")))


# ---------------------------------------------------------------------------------------------------------------

def summary(seconds):
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "runs": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default=DEFAULT_PHOTOS)
    parser.add_argument("--make-photos", type=int, default=200, help="how many to make when PHOTO_DIR has none")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="open_clip directory for clip (made when absent)")
    parser.add_argument("--clip", default=os.path.join(ROOT, "target", "release", "clip"))
    parser.add_argument("--threads", type=int, help="clip --threads (default: clip's own, every core)")
    parser.add_argument("--rclip-python", default="/tmp/rclip-venv/bin/python")
    parser.add_argument("--workdir", default="/tmp/rclip-bench", help="rclip's RCLIP_DATADIR and clip's index")
    parser.add_argument("--query", default="a photo of a cat")
    parser.add_argument("--top-k", type=int, default=10, help="clip's --top-k; rclip's default top is 10")
    parser.add_argument("--index-rounds", type=int, default=3)
    parser.add_argument("--query-rounds", type=int, default=5)
    parser.add_argument("--compare", type=int, default=8, help="photos whose embeddings are compared")
    parser.add_argument("--no-clip", action="store_true", help="rclip only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.photos = os.path.abspath(args.photos)
    args.rclip_datadir = os.path.join(args.workdir, "rclip-data")
    args.clip_global = ["--threads", str(args.threads)] if args.threads else []
    if args.top_k != 10:
        raise SystemExit("rclip is run with its default of 10 results; keep --top-k 10")
    if not args.no_clip and not (os.path.isfile(args.clip) and os.access(args.clip, os.X_OK)):
        raise SystemExit(f"no clip binary at {args.clip}: build it (cargo build --release -p clip-cli), pass --clip "
                         "PATH, or measure rclip alone with --no-clip")
    if not os.path.exists(args.rclip_python):
        raise SystemExit(f"no Python at {args.rclip_python}: python3 -m venv /tmp/rclip-venv && "
                         "/tmp/rclip-venv/bin/pip install rclip (or pass --rclip-python)")
    os.makedirs(args.rclip_datadir, exist_ok=True)

    if not list_photos(args.photos):
        make_photos(args.photos, args.make_photos)
    photos = list_photos(args.photos)
    pixels = sum(_image_pixels(p) for p in photos[:50]) / min(50, len(photos))

    model, same_weights, weights = load_or_make_model(args)
    digest = export_for_rclip(args, model)
    versions = check_export(args, model)
    import open_clip
    import torch
    torch_threads = torch.get_num_threads()
    del model

    result = {"photos": len(photos), "mean_megapixels_first50": pixels / 1e6, "query": args.query,
              "weights": weights, "weights_digest": digest, "cores": usable_cores(), "rclip_versions": versions,
              "torch": torch.__version__, "open_clip": open_clip.__version__, "torch_threads": torch_threads}
    result["cpu"], result["cpu_flags"] = cpu_description()
    result["rclip"] = measure_rclip(args, photos)
    if not args.no_clip:
        result["clip"] = measure_clip(args, photos)
        if same_weights and args.compare:
            sample = photos[:: max(1, len(photos) // args.compare)][: args.compare]
            ours_images, ours_text = clip_embeddings(args, sample, args.query)
            theirs = rclip_vectors(args, sample)
            same = np.sum(ours_images * theirs, 1)
            across = (theirs @ theirs.T)[np.triu_indices(len(sample), 1)]
            result["embedding_cosine"] = {
                "images_min": float(same.min()), "images_median": float(np.median(same)),
                "text": float(rclip_text_cosine(args, ours_text[0])),
                # the baseline: how alike rclip finds two different photos with these weights
                "different_photos_mean": float(across.mean()) if len(across) else None,
            }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_result(result, args)
    return 0


def rclip_text_cosine(args, ours):
    code = PROBE_TEXT
    done = subprocess.run([args.rclip_python, "-c", code, args.query], env=rclip_env(args), capture_output=True,
                          text=True, check=True)
    theirs = np.array(json.loads(done.stdout), dtype=np.float32)
    return float(ours @ theirs)


PROBE_TEXT = r"""
import sys, json, types
sys.modules["huggingface_hub"] = types.ModuleType("huggingface_hub")
from rclip import model
print(json.dumps(model.Model().compute_text_features([sys.argv[1]])[0].tolist()))
"""


def _image_pixels(path):
    from PIL import Image
    with Image.open(path) as image:
        return image.size[0] * image.size[1]


def print_result(r, args):
    v = r["rclip_versions"]
    print(f"cpu: {r['cpu']} [{' '.join(r['cpu_flags'])}]")
    print(f"{r['cores']} cores; rclip {v['rclip']} (onnxruntime {v['onnxruntime']}, intra-op threads = "
          f"{r['cores']}, {min(16, os.cpu_count() or 1)} decoding threads); clip threads: "
          f"{args.threads or 'every core'}; torch {r['torch']} ({r['torch_threads']} threads, export only)")
    print(f"{r['photos']} photos in {args.photos} (~{r['mean_megapixels_first50']:.1f} MP each), weights: "
          f"{r['weights']} ({r['weights_digest']}); query {r['query']!r}, top 10; whole-process wall time")
    rows = [("rclip", r["rclip"])] + ([("clip", r["clip"])] if "clip" in r else [])
    print(f"{'engine':<8}{'index s':>10}{'photos/s':>10}{'query s':>10}{'query+rescan s':>16}")
    for name, m in rows:
        index = statistics.median(m["index_seconds"])
        query = statistics.median(m["query_seconds"])
        rescan = statistics.median(m["query_rescan_seconds"]) if "query_rescan_seconds" in m else None
        print(f"{name:<8}{index:>10.2f}{r['photos'] / index:>10.1f}{query:>10.3f}"
              + (f"{rescan:>16.3f}" if rescan is not None else f"{'':>16}"))
    print(f"medians of {args.index_rounds} index and {args.query_rounds} query runs; rclip's index run includes one "
          "query (it indexes as part of a search); of rclip's query time, starting Python and importing rclip "
          f"takes {statistics.median(r['rclip']['import_seconds']):.3f} s")
    if "clip" in r:
        rc, cc = r["rclip"], r["clip"]
        index_ratio = statistics.median(rc["index_seconds"]) / statistics.median(cc["index_seconds"])
        query_ratio = statistics.median(rc["query_seconds"]) / statistics.median(cc["query_seconds"])
        print(f"clip vs rclip: indexing {index_ratio:.2f}x the photos/s, query {query_ratio:.2f}x faster (rclip -n)")
        if "embedding_cosine" in r:
            e = r["embedding_cosine"]
            print(f"embeddings, same weights, each engine's own preprocessing and tokenizer: same photo cosine "
                  f"median {e['images_median']:.5f} (min {e['images_min']:.5f}; two different photos: "
                  f"{e['different_photos_mean']:.2f}), query text {e['text']:.5f}")


if __name__ == "__main__":
    sys.exit(main())
