#!/usr/bin/env python3
"""A full-size random-weight checkpoint shaped like openai/clip-vit-base-patch32 (or, with --arch vit-l-14,
openai/clip-vit-large-patch14), with reference outputs.

Pinned reference versions: torch==2.15.0 transformers==5.23.0 safetensors==0.8.0 clip-anytorch==2.6.0

    /work/pyenv/venv/bin/python scripts/make_full_vitb32.py OUT_DIR [--arch vit-b-32|vit-l-14]

writes OUT_DIR/config.json (the published config's fields, written by hand: including its legacy
`eos_token_id: 2`, so transformers pools at the argmax of the ids), OUT_DIR/model.safetensors (f32, ~600 MB, the
published key layout), OUT_DIR/preprocessor_config.json and OUT_DIR/reference.safetensors (one image, one text,
their features and logits from transformers' `CLIPModel`). Not committed; used by the ignored Rust test

    CLIP_FULL_VITB32_DIR=OUT_DIR cargo test -p clip --release --test model_parity -- --ignored

and by benchmarks. Deterministic (fixed seeds).
"""

import json
import math
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

warnings.filterwarnings("ignore")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import clip  # clip-anytorch: OpenAI's tokenizer

# The architecture fields of the published openai/clip-vit-base-patch32 config.json (generation-only fields of
# the transformers 4.x era omitted: they do not affect the model).
CONFIG = {
    "architectures": ["CLIPModel"],
    "initializer_factor": 1.0,
    "logit_scale_init_value": 2.6592,
    "model_type": "clip",
    "projection_dim": 512,
    "text_config": {
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "dropout": 0.0,
        "eos_token_id": 2,
        "hidden_act": "quick_gelu",
        "hidden_size": 512,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 2048,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "model_type": "clip_text_model",
        "num_attention_heads": 8,
        "num_hidden_layers": 12,
        "pad_token_id": 1,
        "projection_dim": 512,
        "vocab_size": 49408,
    },
    "text_config_dict": None,
    "torch_dtype": "float32",
    "transformers_version": None,
    "vision_config": {
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "hidden_act": "quick_gelu",
        "hidden_size": 768,
        "image_size": 224,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-05,
        "model_type": "clip_vision_model",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "patch_size": 32,
        "projection_dim": 512,
    },
    "vision_config_dict": None,
}

# openai/clip-vit-large-patch14's architecture fields, over the ViT-B/32 ones.
VIT_L_14 = {
    "projection_dim": 768,
    "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "projection_dim": 768},
    "vision_config": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "patch_size": 14,
        "projection_dim": 768,
    },
}

PREPROCESSOR = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}


def main() -> int:
    args = sys.argv[1:]
    arch = "vit-b-32"
    if len(args) == 3 and args[1] == "--arch" and args[2] in ("vit-b-32", "vit-l-14"):
        arch = args[2]
        args = args[:1]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if arch == "vit-l-14":
        CONFIG["projection_dim"] = VIT_L_14["projection_dim"]
        for tower in ("text_config", "vision_config"):
            CONFIG[tower].update(VIT_L_14[tower])
    config = CLIPConfig.from_dict(CONFIG)
    assert config.text_config.eos_token_id == 2
    model = CLIPModel(config).eval()  # transformers' own init: the published shapes and scales
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # Non-trivial norms (the default init leaves them at 1 / 0) and OpenAI's temperature.
        for name, p in model.named_parameters():
            if "norm" in name or "layrnorm" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.05 * torch.randn(p.shape, generator=gen))
        model.logit_scale.fill_(math.log(100.0))

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")

    colour = torch.randn((1, 3, 1, 1), generator=gen)
    coarse = torch.nn.functional.interpolate(
        torch.randn((1, 3, 7, 7), generator=gen), size=(224, 224), mode="bilinear", align_corners=False
    )
    pixels = (colour + coarse + 0.3 * torch.randn((1, 3, 224, 224), generator=gen)).contiguous()
    ids = clip.tokenize(["a photo of a cat"]).to(torch.int64)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels).pooler_output
        text = model.get_text_features(input_ids=ids).pooler_output
        both = model(input_ids=ids, pixel_values=pixels)
    save_file(
        {
            "pixel_values": pixels,
            "input_ids": ids,
            "image_features": image.contiguous(),
            "text_features": text.contiguous(),
            "logits_per_image": both.logits_per_image.clone(),
            "logits_per_text": both.logits_per_text.clone(),
        },
        str(out / "reference.safetensors"),
    )
    print(f"wrote {out}: logits_per_image {both.logits_per_image.item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
