"""Same machine, same run: PyTorch (transformers CLIPModel) vs `clip bench`, optionally ONNX Runtime.

Usage (a full-size random checkpoint, never committed; generated on demand when MODEL_DIR does not hold one):
    cargo build --release -p clip-cli
    python scripts/bench/compare.py /tmp/vitb32 [--arch vit-b-32|vit-l-14] [--batch 1,8,32] [--iters 5]
                                    [--dtypes f32,bf16,int8] [--onnx]

Prints images/s and texts/s per batch size for PyTorch f32, ONNX Runtime f32 (with --onnx; its exported graphs
are first checked against PyTorch) and clip at each dtype, with each engine's ratio to PyTorch (batch-1 latency
ratio is the inverse of the batch-1 throughput ratio). Every engine uses all cores. Time benchmarks only on an
otherwise idle machine. ViT-L/14: `python scripts/bench/compare.py /tmp/vitl14 --arch vit-l-14 --batch 1,8`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from transformers import CLIPModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPTION = "a photo of {} small dogs playing on a red couch in the living room"


def median_time(fn, iters, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_rows(model_dir, batches, iters):
    import clip as openai_clip  # clip-anytorch, for clip.tokenize

    torch.set_num_threads(os.cpu_count())
    model = CLIPModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    size = model.config.vision_config.image_size
    rows = []
    with torch.inference_mode():
        for b in batches:
            pixels = torch.randn(b, 3, size, size)
            t = median_time(lambda: model.get_image_features(pixel_values=pixels), iters)
            rows.append(("image", b, t))
        for b in batches:
            ids = openai_clip.tokenize([CAPTION.format(i + 2) for i in range(b)])
            t = median_time(lambda: model.get_text_features(input_ids=ids), iters)
            rows.append(("text", b, t))
    return rows


def onnx_rows(model_dir, batches, iters):
    """ONNX Runtime on the same checkpoint (both towers exported from transformers), after checking that its
    outputs match PyTorch's on one batch: a benchmark of a wrong graph would mean nothing."""
    import clip as openai_clip
    import numpy as np
    import onnxruntime as ort

    model = CLIPModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    size = model.config.vision_config.image_size

    def features(out):
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    class Vision(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return features(self.m.get_image_features(pixel_values=pixel_values))

    class Text(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return features(self.m.get_text_features(input_ids=input_ids))

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    sessions = {}
    probe_ids = openai_clip.tokenize([CAPTION.format(i + 2) for i in range(2)]).to(torch.int64)
    probes = {"image": ("pixel_values", torch.randn(2, 3, size, size)), "text": ("input_ids", probe_ids)}
    for tower, module in (("image", Vision(model)), ("text", Text(model))):
        name, probe = probes[tower]
        path = f"/tmp/clip_{tower}.onnx"
        torch.onnx.export(module, (probe,), path, input_names=[name], output_names=["features"],
                          dynamic_axes={name: {0: "b"}}, opset_version=17, dynamo=False)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            want = module(probe).numpy()
        got = session.run(None, {name: probe.numpy()})[0]
        diff = float(np.abs(got - want).max() / np.abs(want).max())
        print(f"onnxruntime {ort.__version__} {tower} tower vs PyTorch: max |diff| / max |ref| = {diff:.1e}")
        if diff > 1e-4:
            raise SystemExit(f"the exported {tower} graph does not match PyTorch ({diff:.1e}); not benchmarking it")
        sessions[tower] = (session, name)
    rows = []
    for tower in ("image", "text"):
        session, name = sessions[tower]
        for b in batches:
            if tower == "image":
                feed = torch.randn(b, 3, size, size).numpy()
            else:
                feed = openai_clip.tokenize([CAPTION.format(i + 2) for i in range(b)]).to(torch.int64).numpy()
            t = median_time(lambda: session.run(None, {name: feed}), iters)
            rows.append((tower, b, t))
    return rows


def clip_rows(model_dir, batches, iters, dtype="f32"):
    binary = os.path.join(ROOT, "target", "release", "clip")
    out = subprocess.run([binary, "bench", "--model", model_dir, "--batch", ",".join(map(str, batches)),
                          "--iters", str(iters), "--dtype", dtype, "--json", "--quiet"], check=True,
                         capture_output=True, text=True)
    report = json.loads(out.stdout)
    return {(r["tower"], r["batch"]): r["seconds"] for r in report["rows"]}, report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--batch", default="1,8,32")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--dtypes", default="f32,bf16,int8", help="clip dtypes to run (f32 first is the baseline)")
    parser.add_argument("--onnx", action="store_true", help="also run ONNX Runtime (exported and checked here)")
    parser.add_argument("--arch", default="vit-b-32", choices=["vit-b-32", "vit-l-14"],
                        help="architecture of the random checkpoint generated when MODEL_DIR has none")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.model_dir, "model.safetensors")):
        generator = os.path.join(ROOT, "scripts", "make_full_vitb32.py")
        print(f"generating a random {args.arch} checkpoint in {args.model_dir}", file=sys.stderr)
        subprocess.run([sys.executable, generator, args.model_dir, "--arch", args.arch], check=True)
    batches = [int(b) for b in args.batch.split(",")]
    dtypes = args.dtypes.split(",")

    engines = {}
    reports = {}
    for dtype in dtypes:
        engines[f"clip {dtype}"], reports[dtype] = clip_rows(args.model_dir, batches, args.iters, dtype)
    engines["torch f32"] = {(t, b): s for t, b, s in torch_rows(args.model_dir, batches, args.iters)}
    if args.onnx:
        engines["ort f32"] = {(t, b): s for t, b, s in onnx_rows(args.model_dir, batches, args.iters)}

    machine = next(iter(reports.values()))["machine"]
    print(f"cpu: {machine['cpu']} [{' '.join(machine['cpu_flags'])}]")
    for dtype, report in reports.items():
        print(f"clip {dtype}: kernel {report['machine']['kernel']}, load {report['load_seconds']:.3f} s, peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB")
    print(f"machine: {os.cpu_count()} cores; torch {torch.__version__}; items/s (median of {args.iters}), "
          "x = ratio to torch f32")
    names = ["torch f32"] + (["ort f32"] if args.onnx else []) + [f"clip {d}" for d in dtypes]
    print(f"{'tower':<6}{'batch':>6}" + "".join(f"{n:>16}" for n in names))
    for tower in ("image", "text"):
        for b in batches:
            base = engines["torch f32"][(tower, b)]
            cells = []
            for n in names:
                s = engines[n][(tower, b)]
                cells.append(f"{b / s:>9.2f}" + (f" {base / s:>5.2f}x" if n != "torch f32" else " " * 7))
            print(f"{tower:<6}{b:>6}" + "".join(cells))
    print("batch-1 latency ratio = 1 / the batch-1 throughput ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
