"""Full-size random-weight stand-ins for OpenAI's nine released CLIP checkpoints (never committed).

For each name, builds clip-anytorch's `CLIP` with the released model's exact shapes (taken from the open_clip
config that crates/clip/configs/openai_models.json names for it), converts it with `convert_weights` (the f16/f32
mix of the published files), and saves it as the published files were made: `torch.jit.trace` + `save`, a
TorchScript archive named like the release (`RN50.pt`, `ViT-L-14-336px.pt`). `--format state_dict` writes
`torch.save(model.state_dict())` instead (faster, no tracing).

    python scripts/make_full_openai.py --out target/full_openai [--names RN50 ViT-B/32] [--format state_dict]

Then: CLIP_FULL_OPENAI_DIR=target/full_openai cargo test -p clip --test openai_parity -- --ignored
Sizes: from ~250 MB (ViT-B/32) to ~850 MB (RN50x64); all nine take about 5 GB.
"""
import argparse
import json
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
import open_clip  # noqa: E402
from clip.model import CLIP, convert_weights  # noqa: E402

REGISTRY = Path(__file__).resolve().parents[1] / "crates" / "clip" / "configs" / "openai_models.json"


def build(entry):
    cfg = open_clip.get_model_config(entry["open_clip_config"])
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    return CLIP(
        cfg["embed_dim"],
        v["image_size"],
        tuple(v["layers"]) if isinstance(v["layers"], list) else v["layers"],
        v["width"],
        v.get("patch_size"),
        t["context_length"],
        t["vocab_size"],
        t["width"],
        t["heads"],
        t["layers"],
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("target/full_openai"))
    ap.add_argument("--names", nargs="*", help="subset of the nine names (default: all)")
    ap.add_argument("--format", choices=["torchscript", "state_dict"], default="torchscript")
    args = ap.parse_args()
    entries = json.loads(REGISTRY.read_text())
    if args.names:
        entries = [e for e in entries if e["name"] in args.names]
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for e in entries:
        start = time.time()
        model = build(e)
        convert_weights(model)
        model.eval()
        path = args.out / e["file_name"]
        if args.format == "torchscript":
            res = e["image_size"]
            image = torch.zeros(1, 3, res, res, dtype=torch.float16)
            text = torch.zeros(1, 77, dtype=torch.int64)
            text[0, 0], text[0, 1] = 49406, 49407
            with torch.no_grad():
                traced = torch.jit.trace(model, (image, text), check_trace=False)
            traced.save(str(path))
        else:
            torch.save(model.state_dict(), path)
        print(f"{e['name']}: {path} ({path.stat().st_size / 1e6:.0f} MB, {time.time() - start:.0f} s)", flush=True)
        del model


if __name__ == "__main__":
    main()
