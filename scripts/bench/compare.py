"""Same machine, same run: PyTorch (f32, bf16 weights, dynamic int8), optionally ONNX Runtime, and `clip bench`.

Usage (full-size random checkpoints, never committed; generated on demand when MODEL does not hold one):
    cargo build --release -p clip-cli
    python scripts/bench/compare.py /tmp/vitb32 --onnx --iters 7                       # ViT-B/32 (transformers)
    python scripts/bench/compare.py /tmp/vitl14 --arch vit-l-14 --onnx --batch 1,8     # ViT-L/14
    python scripts/bench/compare.py /tmp/rn50 --arch rn50 --onnx                       # RN50 (OpenAI layout)
  options: [--batch 1,8,32] [--iters 5] [--dtypes f32,bf16,int8] [--torch-dtypes f32,bf16,int8] [--onnx]
           [--threads N] [--probe N] [--json PATH]

MODEL is a transformers CLIPModel directory (ViT archs; `scripts/make_full_vitb32.py` writes one when it has no
model.safetensors), or an OpenAI .pt file (TorchScript or state dict, any arch), or with --arch rn50 a directory
holding RN50.pt (`scripts/make_full_openai.py --names RN50 --format state_dict` writes one when absent).

Engines, each timed on random pixels and `clip.tokenize`d captions (median of --iters runs after a warm-up, every
usable core, or --threads):
- PyTorch f32 / bf16 / int8 (--torch-dtypes): the same checkpoint through transformers (directories) or clip-anytorch
  (.pt files): f32; every weight in bf16 with bf16 inputs (oneDNN; AMX where the CPU has it); and
  `quantize_dynamic(model, {nn.Linear}, qint8)` on the f32 model, which leaves convolutions f32 (so it barely
  changes a ResNet image tower: the output says how many Linear layers each tower had quantised).
- ONNX Runtime f32 (--onnx): both towers exported from the PyTorch f32 model, each checked against it first.
- clip f32 / bf16 / int8 (--dtypes): `clip bench --dtype D --json`.

Before timing, every engine embeds one probe batch (--probe synthetic images preprocessed by `clip preprocess`, and
captions): the minimum cosine of each engine's embeddings to PyTorch f32's shows that all engines ran the same
weights (clip f32 and ONNX should be ~1.0) and whether a reduced precision meets its bar (bf16 >= 0.9995,
int8 >= 0.995; the precision tests' bars). Random weights make the probe a weak test of precision: its spread (the
smallest cosine between two probe embeddings of the reference) is printed beside it.

Printed, each table under the CPU model, feature flags, caches and cores: items/s per engine with the ratio to
PyTorch f32; batch-1 latency (ms); the probe cosines; and per (tower, batch) clip's fastest dtype within its bar
against PyTorch's fastest variant within its bar, clip f32 against PyTorch f32 and ONNX Runtime f32, with the
issue #13 targets (ViT-B/32 image and text batch 32, ViT-L/14 batch 8, RN50 batch 32, batch-1 latency) marked met
or not. PyTorch's fastest is the fastest --torch-dtypes variant within its bar, int8 included (the stricter reading);
`--torch-dtypes f32,bf16` gives the issue's "f32 or bf16 weights". --json PATH writes all of it (rows, probe,
summary, targets, machine, clip's own reports).
Time benchmarks only on an otherwise idle machine; ratios compare engines measured one after another in one run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_variants  # noqa: E402
from machine import machine_info, machine_lines, usable_cores  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, "target", "release", "clip")
CAPTION = "a photo of {} small dogs playing on a red couch in the living room"
TOWERS = ("image", "text")
# Minimum cosine to PyTorch f32 for a reduced precision to count ("fastest within its bar"); f32 must agree anyway.
BARS = {"f32": 0.9999, "bf16": 0.9995, "int8": 0.995}
# issue #13: (arch, tower, batch, what, bound); what: "best" = fastest-within-bar ratio, "latency" = batch-1 latency
# ratio (ours / PyTorch's fastest, lower is better), "f32_ort" / "f32_torch" = clip f32 against ORT f32 / PyTorch f32.
TARGETS = [
    ("vit-b-32", "image", 32, "best", 1.25), ("vit-b-32", "image", 1, "latency", 0.8),
    ("vit-b-32", "image", 32, "f32_ort", 1.0), ("vit-b-32", "image", 32, "f32_torch", 1.15),
    ("vit-b-32", "text", 32, "best", 1.25),
    ("vit-l-14", "image", 8, "best", 1.25), ("vit-l-14", "image", 1, "latency", 0.8),
    ("rn50", "image", 32, "best", 1.25), ("rn50", "image", 1, "latency", 0.8),
]


def dtype_of(engine):
    return engine.rsplit(" ", 1)[1]


def median_time(fn, iters, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def captions(n):
    return [CAPTION.format(i + 2) for i in range(n)]


def token_ids(n):
    import clip as openai_clip  # clip-anytorch; its tokenizer is the one clip reproduces id for id

    return openai_clip.tokenize(captions(n))


def resolve_model(path, arch):
    """(family, path given to both clip and PyTorch), generating a random checkpoint when there is none."""
    if os.path.isfile(path) or path.endswith(".pt"):
        if not os.path.isfile(path):
            raise SystemExit(f"{path}: no such file")
        return "openai", path
    if arch == "rn50":
        pt = os.path.join(path, "RN50.pt")
        if not os.path.isfile(pt):
            print(f"generating a random RN50 checkpoint (OpenAI layout, state dict) in {path}", file=sys.stderr)
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_full_openai.py"), "--out", path,
                            "--names", "RN50", "--format", "state_dict"], check=True)
        return "openai", pt
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        print(f"generating a random {arch} checkpoint in {path}", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_full_vitb32.py"), path, "--arch", arch],
                       check=True)
    return "hf", path


def clip_command(sub, model, threads, *rest):
    cmd = [BINARY, sub, "--model", model, "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    return cmd + list(rest)


def make_probe(model, threads, n, workdir):
    """n synthetic photos (smooth random colour fields, not the model's input size, so resize and crop run) written
    as PNG, their pixels as `clip preprocess` makes them for this model, and n captions' token ids."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        coarse = rng.integers(0, 256, size=(5 + i, 6 + i, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((300 + 7 * i, 260 + 5 * i), Image.BICUBIC)
        noise = rng.integers(-12, 13, size=(260 + 5 * i, 300 + 7 * i, 3))
        pixels = np.clip(np.asarray(image).astype(np.int64) + noise, 0, 255).astype(np.uint8)
        paths.append(os.path.join(workdir, f"probe{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    out = os.path.join(workdir, "probe_pixels.npy")
    subprocess.run(clip_command("preprocess", model, threads, "--output", out, *paths), check=True)
    return paths, torch.from_numpy(np.load(out)), token_ids(n)


def clip_engine(model, dtype, batches, iters, threads, probe_paths, n_probe, workdir):
    """clip bench's seconds per (tower, batch), its report, and clip embed's probe embeddings."""
    out = subprocess.run(clip_command("bench", model, threads, "--batch", ",".join(map(str, batches)), "--iters",
                                      str(iters), "--dtype", dtype, "--json"),
                         check=True, capture_output=True, text=True)
    report = json.loads(out.stdout)
    seconds = {(r["tower"], r["batch"]): r["seconds"] for r in report["rows"]}
    probe = {}
    for tower, inputs in (("image", ["--image", *probe_paths]), ("text", ["--text", *captions(n_probe)])):
        path = os.path.join(workdir, f"clip_{dtype}_{tower}.npy")
        subprocess.run(clip_command("embed", model, threads, "--dtype", dtype, "--output", path, *inputs),
                       check=True)
        probe[tower] = torch.from_numpy(np.load(path))
    return seconds, report, probe


def time_torch(engine, batches, iters):
    seconds = {}
    with torch.inference_mode():
        for b in batches:
            pixels = engine.image_input(torch.randn(b, 3, engine.image_size, engine.image_size))
            seconds[("image", b)] = median_time(lambda: engine.image(pixels), iters)
        for b in batches:
            ids = engine.text_input(token_ids(b))
            seconds[("text", b)] = median_time(lambda: engine.text(ids), iters)
    return seconds


def torch_probe(engine, pixels, ids):
    with torch.inference_mode():
        return {"image": engine.features(engine.image(engine.image_input(pixels))),
                "text": engine.features(engine.text(engine.text_input(ids)))}


def onnx_engine(family, model_path, batches, iters, threads, pixels, ids, workdir):
    """ONNX Runtime on graphs exported from the PyTorch f32 model, after checking that each reproduces PyTorch on
    the probe batch: a benchmark of a wrong graph would mean nothing. None (and a note) when export fails."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SystemExit("--onnx needs onnxruntime: pip install onnxruntime")
    engine = torch_variants.load(family, model_path, "f32")
    modules = torch_variants.onnx_module(engine)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    feeds = {"image": ("pixel_values", pixels), "text": ("input_ids", ids.to(torch.int64))}
    sessions, probe, notes = {}, {}, []
    for tower in TOWERS:
        name, feed = feeds[tower]
        path = os.path.join(workdir, f"clip_{tower}.onnx")
        try:
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(modules[tower], (feed,), path, input_names=[name], output_names=["features"],
                              dynamic_axes={name: {0: "b"}}, opset_version=17, dynamo=False)
        except Exception as e:  # noqa: BLE001 - any exporter failure means: no ONNX column
            note = f"ONNX Runtime skipped: exporting the {tower} tower failed ({type(e).__name__}: {e})"
            print(note, file=sys.stderr)
            return None, None, [note]
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            want = modules[tower](feed).numpy()
        got = session.run(None, {name: feed.numpy()})[0]
        diff = float(np.abs(got - want).max() / np.abs(want).max())
        notes.append(f"onnxruntime {ort.__version__} {tower} tower vs PyTorch f32: max |diff| / max |ref| = {diff:.1e}")
        print(notes[-1], file=sys.stderr)
        if diff > 1e-4:
            raise SystemExit(f"the exported {tower} graph does not match PyTorch ({diff:.1e}); not benchmarking it")
        sessions[tower] = (session, name)
        probe[tower] = torch.from_numpy(got)
    torch_variants.release(engine)
    seconds = {}
    for tower in TOWERS:
        session, name = sessions[tower]
        for b in batches:
            if tower == "image":
                feed = torch.randn(b, 3, engine.image_size, engine.image_size).numpy()
            else:
                feed = token_ids(b).to(torch.int64).numpy()
            seconds[(tower, b)] = median_time(lambda: session.run(None, {name: feed}), iters)
    return seconds, probe, notes


def agreement(got, want):
    """(min cosine over the batch, max |diff| / max |ref|) of one engine's probe embeddings to the reference's."""
    cos = torch.nn.functional.cosine_similarity(got.double(), want.double(), dim=-1)
    return float(cos.min()), float((got - want).abs().max() / want.abs().max())


def spread(embeddings):
    """Smallest cosine between two different rows: near 1 means the model barely tells the probe inputs apart."""
    e = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    sims = e @ e.T
    sims.fill_diagonal_(float("inf"))
    return float(sims.min())


def fastest_within_bar(engines, probe_stats, tower, b, prefix):
    """(engine, seconds) of the fastest engine named `prefix ...` whose probe cosine meets its dtype's bar."""
    best = None
    for name, seconds in engines.items():
        if not name.startswith(prefix) or (tower, b) not in seconds:
            continue
        if probe_stats[name][tower]["min_cosine"] < BARS[dtype_of(name)] and dtype_of(name) != "f32":
            continue
        if best is None or seconds[(tower, b)] < best[1]:
            best = (name, seconds[(tower, b)])
    return best


def ratio(a, b):
    """Throughput ratio of seconds-per-batch a against b (> 1: a is faster)."""
    return b / a


def print_header(title, extra):
    print()
    for line in machine_lines():
        print(line)
    for line in extra:
        print(f"     {line}")
    print(title)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL",
                        help="transformers CLIPModel directory (ViT), OpenAI .pt file, or with --arch rn50 a "
                             "directory for RN50.pt; a random checkpoint is generated when absent")
    parser.add_argument("--arch", default="vit-b-32", choices=["vit-b-32", "vit-l-14", "rn50"],
                        help="architecture of the generated checkpoint; also picks the issue #13 targets checked")
    parser.add_argument("--batch", default="1,8,32", help="batch sizes (include 1 for latency)")
    parser.add_argument("--iters", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--dtypes", default="f32,bf16,int8", help="clip dtypes to run")
    parser.add_argument("--torch-dtypes", default="f32,bf16,int8",
                        help="PyTorch variants to time: f32, bf16 (bf16 weights and inputs), int8 (quantize_dynamic)")
    parser.add_argument("--onnx", action="store_true", help="also run ONNX Runtime f32 (exported and checked here)")
    parser.add_argument("--threads", type=int, default=0, help="threads for every engine (default: usable cores)")
    parser.add_argument("--probe", type=int, default=4, help="probe images and captions for the cosine check (>= 2)")
    parser.add_argument("--json", metavar="PATH", help="also write rows, probe, summary and machine info as JSON")
    args = parser.parse_args()
    if not os.access(BINARY, os.X_OK):
        raise SystemExit(f"{BINARY} not found: cargo build --release -p clip-cli")
    batches = [int(b) for b in args.batch.split(",")]
    dtypes = [d for d in args.dtypes.split(",") if d]
    torch_dtypes = [d for d in args.torch_dtypes.split(",") if d]
    for d in dtypes + torch_dtypes:
        if d not in BARS:
            raise SystemExit(f"unknown dtype {d!r} (f32, bf16, int8)")
    if args.probe < 2:
        raise SystemExit("--probe must be at least 2")
    threads = args.threads or usable_cores()
    torch.set_num_threads(threads)
    family, model = resolve_model(args.model, args.arch)
    machine = machine_info()

    engines, probes, notes, clip_reports = {}, {}, [], {}
    with tempfile.TemporaryDirectory(prefix="clip-compare-") as workdir:
        probe_paths, probe_pixels, probe_ids = make_probe(model, args.threads, args.probe, workdir)
        for dtype in dtypes:
            print(f"clip {dtype} ...", file=sys.stderr)
            engines[f"clip {dtype}"], clip_reports[dtype], probes[f"clip {dtype}"] = clip_engine(
                model, dtype, batches, args.iters, args.threads, probe_paths, args.probe, workdir)
        # PyTorch f32 is the reference every probe is compared with, so it is loaded even when not timed.
        for variant in ["f32"] + [d for d in torch_dtypes if d != "f32"]:
            print(f"PyTorch {variant} ...", file=sys.stderr)
            engine = torch_variants.load(family, model, variant)
            notes += engine.notes
            probes[f"torch {variant}"] = torch_probe(engine, probe_pixels, probe_ids)
            if variant in torch_dtypes:
                engines[f"torch {variant}"] = time_torch(engine, batches, args.iters)
            torch_variants.release(engine)
            del engine
        if args.onnx:
            print("ONNX Runtime f32 ...", file=sys.stderr)
            seconds, probe, onnx_notes = onnx_engine(family, model, batches, args.iters, threads, probe_pixels,
                                                     probe_ids, workdir)
            notes += onnx_notes
            if seconds is not None:
                engines["ort f32"], probes["ort f32"] = seconds, probe

    reference = probes["torch f32"]
    probe_stats = {}
    for name, emb in probes.items():
        probe_stats[name] = {}
        for tower in TOWERS:
            cos, diff = agreement(emb[tower], reference[tower])
            probe_stats[name][tower] = {"min_cosine": cos, "rel_max_diff": diff}
    spreads = {tower: spread(reference[tower]) for tower in TOWERS}
    if "clip f32" in probe_stats and min(probe_stats["clip f32"][t]["min_cosine"] for t in TOWERS) < BARS["f32"]:
        notes.append("WARNING: clip f32 and PyTorch f32 disagree on the probe batch: they did not run the same model")

    names = [f"torch {d}" for d in torch_dtypes] + (["ort f32"] if "ort f32" in engines else []) + \
            [f"clip {d}" for d in dtypes]
    clip_kernels = {d: r["machine"].get("kernel") for d, r in clip_reports.items()}
    versions = [f"torch {torch.__version__}" + (f", onnxruntime {__import__('onnxruntime').__version__}"
                                                if "ort f32" in engines else "")
                + f"; {threads} threads; {args.arch} ({family}) {model}",
                "clip kernels: " + ", ".join(f"{d} {k}" for d, k in clip_kernels.items())]

    # Throughput table.
    base = "torch f32" if "torch f32" in engines else None
    print_header(f"items/s (median of {args.iters} after a warm-up)"
                 + ("; (x) = ratio to PyTorch f32" if base else ""), versions)
    print(f"{'tower':<6}{'batch':>6}" + "".join(f"{n:>17}" for n in names))
    for tower in TOWERS:
        for b in batches:
            cells = []
            for n in names:
                s = engines[n][(tower, b)]
                x = f" {ratio(s, engines[base][(tower, b)]):>5.2f}x" if base and n != base else " " * 7
                cells.append(f"{b / s:>10.2f}{x}")
            print(f"{tower:<6}{b:>6}" + "".join(cells))

    # Batch-1 latency.
    latency = {}
    if 1 in batches:
        print_header("batch-1 latency (ms)", versions)
        print(f"{'tower':<6}{'':>6}" + "".join(f"{n:>17}" for n in names))
        for tower in TOWERS:
            latency[tower] = {n: engines[n][(tower, 1)] * 1000 for n in names}
            print(f"{tower:<6}{'':>6}" + "".join(f"{latency[tower][n]:>17.1f}" for n in names))

    # Probe agreement.
    print_header(f"probe: {args.probe} images / captions; min cosine and max |diff| / max |ref| to PyTorch f32; "
                 f"spread (smallest cosine between two reference embeddings): image {spreads['image']:.4f}, "
                 f"text {spreads['text']:.4f}", versions)
    print(f"{'engine':<12}{'image cos':>12}{'text cos':>12}{'image diff':>12}{'text diff':>12}{'bar':>9}  within")
    for name in [n for n in probe_stats if n != "torch f32"]:
        st = probe_stats[name]
        bar = BARS[dtype_of(name)]
        within = all(st[t]["min_cosine"] >= bar for t in TOWERS)
        print(f"{name:<12}{st['image']['min_cosine']:>12.6f}{st['text']['min_cosine']:>12.6f}"
              f"{st['image']['rel_max_diff']:>12.1e}{st['text']['rel_max_diff']:>12.1e}{bar:>9}  "
              f"{'yes' if within else 'NO'}")
        for t in TOWERS:
            st[t]["within_bar"] = st[t]["min_cosine"] >= bar
        st["bar"] = bar

    # Fastest within the bar, and the f32-against-f32 ratios.
    summary = []
    print_header("clip's fastest dtype within its cosine bar against PyTorch's fastest variant within its bar "
                 "(x > 1: clip faster); clip f32 against PyTorch f32 and ONNX Runtime f32", versions)
    print(f"{'tower':<6}{'batch':>6}{'clip best':>22}{'PyTorch fastest':>24}{'ratio':>8}{'ms/batch':>16}"
          f"{'f32/torch f32':>15}{'f32/ort f32':>13}")
    for tower in TOWERS:
        for b in batches:
            ours = fastest_within_bar(engines, probe_stats, tower, b, "clip ")
            theirs = fastest_within_bar(engines, probe_stats, tower, b, "torch ")
            row = {"tower": tower, "batch": b}
            if ours:
                row.update(clip_best=dtype_of(ours[0]), clip_best_items_per_second=b / ours[1])
            if theirs:
                row.update(torch_fastest=dtype_of(theirs[0]), torch_fastest_items_per_second=b / theirs[1])
            if ours and theirs:
                row["best_ratio"] = ratio(ours[1], theirs[1])
                row["best_latency_ratio"] = ours[1] / theirs[1]
            f32 = engines.get("clip f32", {}).get((tower, b))
            for other, key in (("torch f32", "f32_vs_torch_f32"), ("ort f32", "f32_vs_ort_f32")):
                if f32 and other in engines:
                    row[key] = ratio(f32, engines[other][(tower, b)])
            summary.append(row)
            cell = lambda e: f"{b / e[1]:.2f} ({dtype_of(e[0])})" if e else "-"  # noqa: E731
            ms = f"{ours[1] * 1000:.0f} / {theirs[1] * 1000:.0f}" if ours and theirs else "-"
            fmt = lambda k: f"{row[k]:.2f}x" if k in row else "-"  # noqa: E731
            print(f"{tower:<6}{b:>6}{cell(ours):>22}{cell(theirs):>24}{fmt('best_ratio'):>8}{ms:>16}"
                  f"{fmt('f32_vs_torch_f32'):>15}{fmt('f32_vs_ort_f32'):>13}")

    # The issue's targets for this architecture.
    targets = []
    rows = {(r["tower"], r["batch"]): r for r in summary}
    print_header(f"issue #13 targets for {args.arch} (meaningful only from an idle machine and enough --iters)",
                 versions)
    for arch, tower, b, what, bound in TARGETS:
        if arch != args.arch:
            continue
        key = {"best": "best_ratio", "latency": "best_latency_ratio", "f32_ort": "f32_vs_ort_f32",
               "f32_torch": "f32_vs_torch_f32"}[what]
        label = {"best": f"{tower} batch {b}: clip's fastest / PyTorch's fastest >= {bound}x",
                 "latency": f"{tower} batch-1 latency: clip's fastest / PyTorch's fastest <= {bound}x",
                 "f32_ort": f"{tower} batch {b}: clip f32 / ONNX Runtime f32 >= {bound}x",
                 "f32_torch": f"{tower} batch {b}: clip f32 / PyTorch f32 >= {bound}x"}[what]
        value = rows.get((tower, b), {}).get(key)
        met = None if value is None else (value <= bound if what == "latency" else value >= bound)
        state = "not measured (batch, dtype or engine not run)" if value is None else \
            f"{value:.2f}x {'met' if met else 'NOT met'}"
        print(f"  {label}: {state}")
        targets.append({"target": label, "tower": tower, "batch": b, "what": what, "bound": bound, "value": value,
                        "met": met})

    if notes:
        print()
        for note in notes:
            print(note)
    if args.json:
        machine.update(torch=torch.__version__, threads=threads, clip_kernels=clip_kernels)
        if "ort f32" in engines:
            machine["onnxruntime"] = __import__("onnxruntime").__version__
        out = {"arch": args.arch, "family": family, "model": model, "iters": args.iters, "batches": batches,
               "machine": machine,
               "rows": [{"engine": n, "tower": t, "batch": b, "seconds": s, "items_per_second": b / s}
                        for n in names for (t, b), s in engines[n].items()],
               "latency_ms": latency, "probe": {"images": args.probe, "spread": spreads, "engines": probe_stats},
               "summary": summary, "targets": targets, "notes": notes, "clip_reports": clip_reports}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
