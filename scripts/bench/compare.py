"""Same machine, same run: PyTorch (transformers CLIPModel) vs `clip bench`, optionally ONNX Runtime.

Usage (a full-size random checkpoint, never committed):
    python scripts/make_full_vitb32.py /tmp/vitb32
    cargo build --release -p clip-cli
    python scripts/bench/compare.py /tmp/vitb32 [--batch 1,8,32] [--iters 5] [--onnx]

Prints images/s and texts/s per batch size for PyTorch f32, clip f32 and clip bf16, with each clip / PyTorch
ratio (batch-1 latency ratio is the inverse of the batch-1 throughput ratio). Both engines use all
cores (torch.set_num_threads(os.cpu_count())). Time benchmarks only on an otherwise idle machine.
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
    import onnxruntime as ort

    model = CLIPModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    size = model.config.vision_config.image_size

    class Vision(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            out = self.m.get_image_features(pixel_values=pixel_values)
            return out if isinstance(out, torch.Tensor) else out.pooler_output

    path = "/tmp/clip_vision.onnx"
    torch.onnx.export(Vision(model), (torch.randn(1, 3, size, size),), path, input_names=["pixel_values"],
                      output_names=["features"], dynamic_axes={"pixel_values": {0: "b"}}, opset_version=17, dynamo=False)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rows = []
    for b in batches:
        pixels = torch.randn(b, 3, size, size).numpy()
        t = median_time(lambda: session.run(None, {"pixel_values": pixels}), iters)
        rows.append(("image", b, t))
    return rows


def clip_rows(model_dir, batches, iters, dtype="f32"):
    binary = os.path.join(ROOT, "target", "release", "clip")
    out = subprocess.run([binary, "bench", "--model", model_dir, "--batch", ",".join(map(str, batches)),
                          "--iters", str(iters), "--dtype", dtype, "--json"], check=True, capture_output=True, text=True)
    report = json.loads(out.stdout)
    return [(r["tower"], r["batch"], r["seconds"]) for r in report["rows"]], report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--batch", default="1,8,32")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--onnx", action="store_true")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]

    ours, report = clip_rows(args.model_dir, batches, args.iters)
    bf16 = {(t, b): s for t, b, s in clip_rows(args.model_dir, batches, args.iters, "bf16")[0]}
    theirs = {(t, b): s for t, b, s in torch_rows(args.model_dir, batches, args.iters)}
    ort_times = {(t, b): s for t, b, s in onnx_rows(args.model_dir, batches, args.iters)} if args.onnx else {}
    print(f"machine: {os.cpu_count()} cores; torch {torch.__version__}; clip load {report['load_seconds']:.3f} s; "
          f"clip peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB")
    print(f"{'tower':<6}{'batch':>6}{'torch f32/s':>13}{'clip f32/s':>12}{'ratio':>7}{'clip bf16/s':>13}{'ratio':>7}"
          + ("{:>13}".format("ort items/s") if ort_times else ""))
    for tower, b, s in ours:
        t = theirs[(tower, b)]
        h = bf16[(tower, b)]
        line = f"{tower:<6}{b:>6}{b / t:>13.2f}{b / s:>12.2f}{t / s:>7.2f}{b / h:>13.2f}{t / h:>7.2f}"
        if (tower, b) in ort_times:
            line += f"{b / ort_times[(tower, b)]:>13.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
