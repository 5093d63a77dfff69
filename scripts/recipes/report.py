#!/usr/bin/env python3
"""Summarises a run of scripts/recipes/shapes.sh: the loss curves (PNG), zero-shot accuracy of every model on
both label sets, and the retrieval recall of the from-scratch model on its held-out pairs.

    python scripts/recipes/report.py WORK [--png docs/shapes_loss.png]
"""
import argparse
import json
import os


def read_log(path):
    steps, losses, val = [], [], []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if "loss" in row:
                steps.append(row["step"])
                losses.append(row["loss"])
            if "val" in row:
                val.append((row["step"], row["val"]))
    return steps, losses, val


def smooth(values, k=20):
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("--png", default=None)
    a = p.parse_args()
    png = a.png or os.path.join(a.work, "shapes_loss.png")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps, losses, val = read_log(os.path.join(a.work, "scratch", "log.jsonl"))
    axes[0].plot(steps, losses, color="#9ab", linewidth=0.8, label="training loss (batch)")
    axes[0].plot(steps, smooth(losses), color="#147", label="training loss (mean of 20 steps)")
    if val:
        axes[0].plot([s for s, _ in val], [m["clip_val_loss"] for _, m in val], "o-", color="#c40",
                     label="held-out loss")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("CLIP loss")
    axes[0].set_title("From scratch on the base shapes")
    axes[0].legend()
    for name, colour in [("lit", "#2a7"), ("full", "#a2a")]:
        path = os.path.join(a.work, name, "log.jsonl")
        if os.path.exists(path):
            s, l, _ = read_log(path)
            axes[1].plot(s, smooth(l, 5), color=colour, label=f"{name} fine-tuning (mean of 5 steps)")
    axes[1].set_xlabel("step")
    axes[1].set_title("Fine-tuning on the novel shapes")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(png, dpi=80)

    print("zero-shot top-1 accuracy (chance: base 1/12 = 8.3%, novel 1/4 = 25%)")
    print(f"{'model':<10} {'base':>8} {'novel':>8}")
    for model in ["scratch", "lit", "full", "wise"]:
        row = []
        for labels in ["base", "novel"]:
            path = os.path.join(a.work, f"eval_{model}_{labels}.json")
            row.append(json.load(open(path))["top1"] * 100 if os.path.exists(path) else float("nan"))
        print(f"{model:<10} {row[0]:>7.1f}% {row[1]:>7.1f}%")
    if val:
        step, m = val[-1]
        n = int(m["num_samples"])
        print(f"held-out retrieval at step {step} ({n} pairs, chance R@1 = {100 / n:.2f}%): "
              f"image->text R@1 {m['image_to_text_R@1'] * 100:.1f}%, R@5 {m['image_to_text_R@5'] * 100:.1f}%; "
              f"text->image R@1 {m['text_to_image_R@1'] * 100:.1f}%, R@5 {m['text_to_image_R@5'] * 100:.1f}%")
    print(f"loss curves: {png}")


if __name__ == "__main__":
    main()
