"""PyTorch engines for compare.py: one checkpoint run as f32, with bf16 weights, and with dynamic int8 Linear layers.

Two families load the same files `clip` reads:
- `hf`: a transformers `CLIPModel` directory (`get_image_features` / `get_text_features`);
- `openai`: an OpenAI `.pt` file (TorchScript archive or `torch.save` state dict, e.g. RN50) through clip-anytorch
  (`clip.load(path, device="cpu", jit=False)`, `encode_image` / `encode_text`).

Variants:
- `f32`: the model as loaded, float32.
- `bf16`: every weight in torch.bfloat16 and inputs cast to bf16 (oneDNN runs the matrix products and convolutions
  in bf16, through AMX where the CPU has it). clip-anytorch's `LayerNorm` computes in f32 and expects f32 weights
  (OpenAI's own fp16 convention), so its LayerNorms keep f32 weights; transformers' run in bf16.
- `int8`: `torch.ao.quantization.quantize_dynamic(model, Linear, dtype=torch.qint8)` on the f32 model. It only
  replaces `nn.Linear` modules; convolutions, attention's fused in-projection (`nn.MultiheadAttention`) and a
  ResNet's attention pooling (which reads its Linear weights directly) stay f32. `Engine.notes` says how many
  Linear layers of each tower were quantised.
"""
import warnings

import torch

VARIANTS = ("f32", "bf16", "int8")


class Engine:
    """One PyTorch model in one variant. `image(x)` / `text(ids)` run the towers on inputs already prepared by
    `image_input` / `text_input` (so a timed call does no conversion); `features` turns an output into float32."""

    def __init__(self, name, model, image_fn, text_fn, input_dtype, image_size, notes=()):
        self.name = name
        self.model = model
        self.image_fn = image_fn
        self.text_fn = text_fn
        self.input_dtype = input_dtype
        self.image_size = image_size
        self.notes = list(notes)

    def image_input(self, pixels):
        return pixels.to(self.input_dtype)

    def text_input(self, ids):
        return ids

    def image(self, pixels):
        return self.image_fn(self.model, pixels)

    def text(self, ids):
        return self.text_fn(self.model, ids)

    @staticmethod
    def features(out):
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return out.float()


def _hf_image(model, pixels):
    return model.get_image_features(pixel_values=pixels)


def _hf_text(model, ids):
    return model.get_text_features(input_ids=ids)


def _openai_image(model, pixels):
    return model.encode_image(pixels)


def _openai_text(model, ids):
    return model.encode_text(ids)


def _quantized_linears(model, image_prefixes):
    """'image tower: q of n Linear layers int8, text tower: ...' for a quantize_dynamic result."""
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    counts = {"image": [0, 0], "text": [0, 0]}
    for name, module in model.named_modules():
        tower = "image" if name.startswith(image_prefixes) else "text"
        if isinstance(module, dynamic):
            counts[tower][0] += 1
            counts[tower][1] += 1
        elif isinstance(module, torch.nn.Linear):
            counts[tower][1] += 1
    return ", ".join(f"{t} tower {q} of {n} Linear layers" for t, (q, n) in counts.items())


def _quantize(model, spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def load_hf(model_dir, variant):
    from transformers import CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dtype = torch.bfloat16 if variant == "bf16" else torch.float32
    model = CLIPModel.from_pretrained(model_dir, dtype=dtype).eval()
    size = model.config.vision_config.image_size
    notes = []
    if variant == "int8":
        model = _quantize(model, {torch.nn.Linear})
        notes.append("PyTorch int8 = quantize_dynamic(nn.Linear, qint8): "
                     + _quantized_linears(model, ("vision_model", "visual_projection"))
                     + " quantised; patch embedding and attention products stay f32")
    return Engine(f"torch {variant}", model, _hf_image, _hf_text, dtype, size, notes)


def load_openai(path, variant):
    import clip as openai_clip  # clip-anytorch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = openai_clip.load(path, device="cpu", jit=False)  # on the CPU clip.load returns float32
    model = model.float().eval()
    size = model.visual.input_resolution
    dtype = torch.float32
    notes = []
    if variant == "bf16":
        model = model.to(torch.bfloat16)
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.float()  # clip.model.LayerNorm computes in f32 (OpenAI's fp16 convention)
        dtype = torch.bfloat16
    elif variant == "int8":
        # AttentionPool2d passes q/k/v/c_proj.weight to F.multi_head_attention_forward itself, so a quantised
        # module there would break it; nn.MultiheadAttention's out_proj is not an nn.Linear by type and is skipped.
        names = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear and ".attnpool." not in f".{n}."}
        model = _quantize(model, names)
        notes.append("PyTorch int8 = quantize_dynamic(nn.Linear, qint8): "
                     + _quantized_linears(model, ("visual",))
                     + " quantised; convolutions, attention pooling and nn.MultiheadAttention's projections stay f32")
    return Engine(f"torch {variant}", model, _openai_image, _openai_text, dtype, size, notes)


def load(family, model_path, variant):
    if variant not in VARIANTS:
        raise SystemExit(f"unknown PyTorch variant {variant!r} (choose from {', '.join(VARIANTS)})")
    return (load_hf if family == "hf" else load_openai)(model_path, variant)


def onnx_module(engine):
    """The f32 engine's two towers as modules `torch.onnx.export` can trace: {tower: module}."""

    class Tower(torch.nn.Module):
        def __init__(self, model, fn):
            super().__init__()
            self.m = model
            self.fn = fn

        def forward(self, x):
            return Engine.features(self.fn(self.m, x))

    # eval(): export restores the wrapper's training flag over the whole tree afterwards, and a wrapper left in
    # training mode would put a ResNet's BatchNorm layers into batch statistics.
    return {"image": Tower(engine.model, engine.image_fn).eval(), "text": Tower(engine.model, engine.text_fn).eval()}


def release(engine):
    """Drop a model's memory before loading the next variant."""
    engine.model = None
