#!/usr/bin/env python3
"""Training throughput, same machine, same run: PyTorch (transformers CLIPModel + open_clip's ClipLoss + torch
AdamW with open_clip's parameter groups) against `clip bench --train`, on one checkpoint directory.

Usage (a full-size random ViT-B/32 is made by scripts/make_full_vitb32.py; never committed):
    cargo build --release -p clip-cli
    python scripts/bench/train_compare.py /tmp/vitb32 [--batch 32] [--steps 3] [--dtypes f32,bf16] [--rounds 1]

Each engine runs in its own process (so peak RSS is its own), one warm-up step then `--steps` timed optimizer
steps (forward, loss, backward, AdamW) on a batch of synthetic pixels and captions; the median step is
reported as samples/s with the ratio clip / PyTorch f32. PyTorch bf16 is `torch.autocast("cpu", bfloat16)`
(f32 master weights, as clip's bf16). Rounds alternate the engines. Time only on an otherwise idle machine.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPTION = "a photo of {} small dogs playing on a red couch in the living room"


def torch_worker(model_dir, batch, steps, dtype):
    import torch
    import open_clip
    from open_clip.loss import ClipLoss
    from transformers import CLIPModel
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32).train()
    size = model.config.vision_config.image_size
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa
    named = list(model.named_parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
         {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.2}],
        lr=1e-5, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = ClipLoss()
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(batch, 3, size, size, generator=g) * 4 - 2
    ids = open_clip.tokenize([CAPTION.format(i + 2) for i in range(batch)])
    times, losses = [], []
    for i in range(1 + steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=(dtype == "bf16")):
            image = model.get_image_features(pixel_values=pixels).pooler_output
            text = model.get_text_features(input_ids=ids).pooler_output
        loss = loss_fn(F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1),
                       model.logit_scale.exp())
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.605170185988092)
        if i > 0:
            times.append(time.perf_counter() - start)
        losses.append(loss.item())
    step = statistics.median(times)
    print(json.dumps({
        "engine": f"pytorch {dtype}", "step_seconds": step, "samples_per_second": batch / step,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "losses": losses,
        "threads": torch.get_num_threads(), "version": torch.__version__,
    }))


def run_torch(model_dir, batch, steps, dtype):
    out = subprocess.run([sys.executable, __file__, "--worker", model_dir, "--batch", str(batch),
                          "--steps", str(steps), "--dtypes", dtype], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_clip(model_dir, batch, steps, dtype):
    binary = os.path.join(ROOT, "target", "release", "clip")
    out = subprocess.run([binary, "bench", "--train", "--model", model_dir, "--batch", str(batch),
                          "--iters", str(steps), "--dtype", dtype, "--json"], check=True, capture_output=True,
                         text=True)
    r = json.loads(out.stdout.strip())
    r["engine"] = f"clip {dtype}"
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--worker", action="store_true")
    a = p.parse_args()
    if a.worker:
        torch_worker(a.model_dir, a.batch, a.steps, a.dtypes)
        return
    dtypes = a.dtypes.split(",")
    results = {}
    for _ in range(a.rounds):
        for dtype in dtypes:
            for name, fn in [(f"pytorch {dtype}", run_torch), (f"clip {dtype}", run_clip)]:
                results.setdefault(name, []).append(fn(a.model_dir, a.batch, a.steps, dtype))
    base = statistics.median(r["samples_per_second"] for r in results["pytorch f32"])
    print(f"ViT training, batch {a.batch}, median of {a.steps} steps x {a.rounds} rounds, {os.cpu_count()} cores")
    for dtype in dtypes:
        machine = results[f"clip {dtype}"][0]["machine"]
        print(f"cpu: {machine['cpu']} [{' '.join(machine['cpu_flags'])}]; clip {dtype} kernel {machine['kernel']}")
    print(f"{'engine':<14} {'s/step':>8} {'samples/s':>10} {'vs torch f32':>13} {'peak RSS MiB':>13}")
    for name, rs in results.items():
        sps = statistics.median(r["samples_per_second"] for r in rs)
        rss = max(r["peak_rss_bytes"] or 0 for r in rs) / 2**20
        print(f"{name:<14} {a.batch / sps:>8.2f} {sps:>10.2f} {sps / base:>12.2f}x {rss:>13.0f}")
    print(json.dumps({k: v for k, v in results.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
