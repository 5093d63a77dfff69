#!/usr/bin/env python3
"""bf16 training's loss curve against f32's: the same `clip train` run (same start, data order, no
augmentation) once with `--dtype f32` and once with `--dtype bf16`, step by step.

Usage (data from scripts/recipes/shapes_data.py, e.g. the shapes recipe's WORK/data):
    cargo build --release -p clip-cli
    python scripts/bench/train_bf16_curve.py WORK/data/base/train.csv [--config scripts/recipes/shapes_model.json]
        [--model DIR] [--steps 100] [--batch 128] [--lr 1e-3]

Prints per-step losses every tenth step, the largest and mean relative difference |bf16 - f32| / f32 over all
steps, and the mean loss of the last ten steps of each run.
"""
import argparse
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(args, dtype, out):
    binary = os.path.join(ROOT, "target", "release", "clip")
    start = ["--model", args.model] if args.model else ["--config", args.config]
    subprocess.run([binary, "train", *start, "--train-data", args.data, "--batch-size", str(args.batch),
                    "--steps", str(args.steps), "--lr", str(args.lr), "--warmup", str(args.steps // 10),
                    "--no-shuffle", "--no-augment", "--seed", "0", "--dtype", dtype, "--quiet",
                    "--output", out], check=True)
    with open(os.path.join(out, "log.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [r["loss"] for r in rows if "loss" in r]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--config", default=os.path.join(ROOT, "scripts", "recipes", "shapes_model.json"))
    p.add_argument("--model", default=None)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        f32 = run(args, "f32", os.path.join(tmp, "f32"))
        bf16 = run(args, "bf16", os.path.join(tmp, "bf16"))
    rel = [abs(b - a) / abs(a) for a, b in zip(f32, bf16)]
    print(f"{'step':>5} {'f32 loss':>10} {'bf16 loss':>10} {'rel diff':>9}")
    for i in range(0, len(f32), 10):
        print(f"{i + 1:>5} {f32[i]:>10.5f} {bf16[i]:>10.5f} {rel[i]:>9.2e}")
    tail = min(10, len(f32))
    print(json.dumps({
        "steps": len(f32), "max_rel_diff": max(rel), "mean_rel_diff": sum(rel) / len(rel),
        "f32_last10_mean": sum(f32[-tail:]) / tail, "bf16_last10_mean": sum(bf16[-tail:]) / tail,
    }))


if __name__ == "__main__":
    main()
