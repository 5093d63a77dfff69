"""Writes the model registries under crates/clip/configs/ as data, from the installed reference packages.

- openai_models.json: clip-anytorch's `clip._MODELS` (the nine released names and their URLs, whose path holds
  the file's SHA-256) with each model's input resolution, taken from the matching open_clip model config.
- open_clip_models.json: open_clip's `model_configs/*.json` for the families this crate supports.
- open_clip_pretrained.json: open_clip's pretrained metadata (hf_hub id / url, mean, std, interpolation,
  resize_mode, quick_gelu) for those families.

Pinned versions: scripts/fixtures/requirements.txt (clip-anytorch 2.6.0, open_clip_torch 3.3.0).
Run from the repo root: python scripts/gen_pretrained_configs.py
"""
import json
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
from clip import clip as clip_module  # noqa: E402  (the module holding _MODELS)
import open_clip  # noqa: E402
from open_clip import pretrained as oc_pretrained  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "crates" / "clip" / "configs"

# The families named in the issue, their quickgelu twins, and the open_clip names of OpenAI's other releases.
BASE = ["ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-H-14", "ViT-bigG-14", "RN50",
        "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-L-14-336"]
FAMILIES = [n for b in BASE for n in (b, f"{b}-quickgelu")]

# clip-anytorch name -> open_clip architecture name.
OPENAI_TO_OPEN_CLIP = {
    "RN50": "RN50", "RN101": "RN101", "RN50x4": "RN50x4", "RN50x16": "RN50x16", "RN50x64": "RN50x64",
    "ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14", "ViT-L/14@336px": "ViT-L-14-336",
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    configs = {}
    for name in FAMILIES:
        cfg = open_clip.get_model_config(name)
        if cfg is None:
            raise SystemExit(f"open_clip has no config {name}")
        configs[name] = cfg
    models = []
    for name, url in clip_module._MODELS.items():
        arch = OPENAI_TO_OPEN_CLIP[name]
        sha256 = url.split("/")[-2]
        assert len(sha256) == 64
        models.append({
            "name": name,
            "url": url,
            "sha256": sha256,
            "file_name": url.split("/")[-1],
            "image_size": configs[arch]["vision_cfg"]["image_size"],
            "open_clip_config": f"{arch}-quickgelu",
        })
    pretrained = {}
    for name in FAMILIES:
        tags = {}
        for tag in oc_pretrained.list_pretrained_tags_by_model(name):
            cfg = oc_pretrained.get_pretrained_cfg(name, tag)
            entry = {k: cfg[k] for k in ("url", "hf_hub", "mean", "std", "interpolation", "resize_mode", "quick_gelu")
                     if k in cfg and cfg[k] not in ("", None)}
            for k in ("mean", "std"):
                if k in entry:
                    entry[k] = list(entry[k])
            tags[tag] = entry
        if tags:
            pretrained[name] = tags
    dump = lambda obj, file: (OUT / file).write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
    dump(models, "openai_models.json")
    dump(configs, "open_clip_models.json")
    dump(pretrained, "open_clip_pretrained.json")
    print(f"wrote {OUT}: {len(models)} OpenAI models, {len(configs)} open_clip configs, "
          f"{sum(len(t) for t in pretrained.values())} pretrained tags")


if __name__ == "__main__":
    main()
