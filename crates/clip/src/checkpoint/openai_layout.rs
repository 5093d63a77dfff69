//! OpenAI's CLIP state-dict layout (clip-anytorch `clip/model.py`, shared by open_clip's `model.py` and by the
//! text encoders inside Stable Diffusion checkpoints) read into this crate's towers. This file is the one table
//! that maps OpenAI's module names onto our structs:
//!
//! | OpenAI key (under a prefix)                     | our part                                   |
//! |-------------------------------------------------|--------------------------------------------|
//! | `token_embedding.weight` `[vocab, width]`       | text token embedding                       |
//! | `positional_embedding` `[context, width]`       | text position embedding                    |
//! | `transformer.resblocks.N.ln_1` / `ln_2`         | `EncoderLayer` layer norms                 |
//! | `transformer.resblocks.N.attn.in_proj_weight/bias` (packed q,k,v), `attn.out_proj` | `Attention::load_packed` |
//! | `transformer.resblocks.N.mlp.c_fc` / `c_proj`   | `Mlp` fc1 / fc2                            |
//! | `ln_final`                                      | text final layer norm                      |
//! | `text_projection` `[width, embed]` (`x @ P`)    | returned as is / transposed into a `Linear`|
//! | `visual.conv1.weight` (no bias), `visual.class_embedding`, `visual.positional_embedding`, `visual.ln_pre`, `visual.transformer.resblocks.N.*`, `visual.ln_post`, `visual.proj` `[width, embed]` | ViT image tower |
//!
//! Entry points for other modules (e.g. Stable Diffusion conditioning):
//! - [`load_text_transformer`]`(store, prefix, config) -> (TextTransformer, Option<Tensor>)`: the projection, when
//!   the checkpoint has `{prefix}.text_projection`, is returned as stored, `[width, embed]`, to be used as `x @ P`.
//! - [`infer_text_config`]`(store, prefix, heads, activation)`: the text architecture from tensor shapes, as
//!   clip-anytorch's `build_model` reads it (`heads` defaults to `width / 64`, OpenAI's rule).
//!
//! - [`load_clip`]`(store, arch)`: a whole model (`visual.*` ViT or ModifiedResNet, text keys at the root,
//!   `logit_scale`), strict: leftovers other than known buffers are an error.
//!
//! `prefix` is a dotted key prefix with or without the trailing dot (`""`, `"cond_stage_model.model"`,
//! `"conditioner.embedders.1.model."`). Every tensor read is marked consumed in the store, so the caller's
//! [`TensorStore::finish`] still catches leftovers; unused buffers like `attn_mask` are not read here.

use candle_core::Tensor;

use crate::checkpoint::{TensorStore, Weights};
use crate::error::{ClipError, Result};
use crate::model::clip::{ClipModel, VisionTower};
use crate::model::config::{
    Activation, ClipConfig, ModelArch, TextConfig, VisionConfig, VisionTowerConfig,
};
use crate::model::layers::{Attention, Encoder, EncoderLayer, LayerNorm, Linear, Mlp};
use crate::model::resnet::ModifiedResNet;
use crate::model::text::TextTransformer;
use crate::model::vision::VisionTransformer;

/// LayerNorm epsilon of every OpenAI / open_clip tower (PyTorch's default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// `eos_token_id` that makes [`TextTransformer`] pool at the first maximum id, which is exactly OpenAI's and
/// open_clip's `text.argmax(dim=-1)` rule (with the real tokenizer the end-of-text id 49407 is the maximum).
pub const ARGMAX_POOLING: u32 = 2;

/// Weights view under `prefix` (trailing dot optional, empty for the root).
pub fn scoped<'a>(store: &'a TensorStore, prefix: &str) -> Weights<'a> {
    let p = prefix.trim_end_matches('.');
    if p.is_empty() {
        store.root()
    } else {
        store.root().pp(p)
    }
}

fn config_error(store: &TensorStore, reason: String) -> ClipError {
    ClipError::Checkpoint {
        path: store.path().to_path_buf(),
        reason,
    }
}

/// The stored shape of `w.key(name)`, or a "missing tensor" error naming it.
pub(crate) fn shape_of(w: &Weights, name: &str) -> Result<Vec<usize>> {
    let key = w.key(name);
    w.store()
        .shape(&key)
        .map(<[usize]>::to_vec)
        .ok_or_else(|| ClipError::MissingTensor {
            path: w.store().path().to_path_buf(),
            name: key,
        })
}

/// Number of blocks `{w}.{group}.N.*`: the largest `N` plus one, requiring every index below it to be present (the
/// reference counts distinct indices; a gap would make that count name the wrong blocks).
pub(crate) fn count_blocks(w: &Weights, group: &str) -> Result<usize> {
    let head = format!("{}.", w.key(group));
    let mut seen = std::collections::BTreeSet::new();
    for name in w.store().names() {
        if let Some(rest) = name.strip_prefix(&head) {
            if let Some(Ok(i)) = rest.split('.').next().map(str::parse::<usize>) {
                seen.insert(i);
            }
        }
    }
    let n = seen.len();
    if seen.iter().next_back().is_some_and(|&last| last + 1 != n) {
        return Err(config_error(
            w.store(),
            format!("blocks under {head}* are not numbered 0..{n}"),
        ));
    }
    Ok(n)
}

fn dim(shape: &[usize], axis: usize, w: &Weights, name: &str) -> Result<usize> {
    shape.get(axis).copied().ok_or_else(|| {
        config_error(
            w.store(),
            format!(
                "tensor {} has shape {shape:?}, expected at least {} dimensions",
                w.key(name),
                axis + 1
            ),
        )
    })
}

/// The text architecture from tensor shapes under `prefix`, as `build_model` infers it: vocab and width from
/// `token_embedding.weight`, context from `positional_embedding`, layers from the `transformer.resblocks.N`
/// count, MLP width from `mlp.c_fc.weight`. `heads` defaults to `width / 64`.
pub fn infer_text_config(
    store: &TensorStore,
    prefix: &str,
    heads: Option<usize>,
    activation: Activation,
) -> Result<TextConfig> {
    let w = scoped(store, prefix);
    let tok = shape_of(&w, "token_embedding.weight")?;
    let vocab_size = dim(&tok, 0, &w, "token_embedding.weight")?;
    let width = dim(&tok, 1, &w, "token_embedding.weight")?;
    let pos = shape_of(&w, "positional_embedding")?;
    let context_length = dim(&pos, 0, &w, "positional_embedding")?;
    let layers = count_blocks(&w.pp("transformer"), "resblocks")?;
    let intermediate_size = if layers > 0 {
        let fc = shape_of(&w, "transformer.resblocks.0.mlp.c_fc.weight")?;
        dim(&fc, 0, &w, "transformer.resblocks.0.mlp.c_fc.weight")?
    } else {
        4 * width
    };
    let heads = heads.unwrap_or(width / 64).max(1);
    if width % heads != 0 {
        return Err(config_error(
            store,
            format!("text width {width} is not a multiple of {heads} heads"),
        ));
    }
    Ok(TextConfig {
        vocab_size,
        context_length,
        width,
        layers,
        heads,
        intermediate_size,
        activation,
        layer_norm_eps: LAYER_NORM_EPS,
        eos_token_id: ARGMAX_POOLING,
    })
}

/// OpenAI's `Transformer` (`{w}.resblocks.N.*`, N < `layers`) as our [`Encoder`].
pub fn load_resblocks(
    w: &Weights,
    width: usize,
    layers: usize,
    heads: usize,
    intermediate: usize,
    activation: Activation,
) -> Result<Encoder> {
    let blocks = w.pp("resblocks");
    let layers = (0..layers)
        .map(|i| {
            let b = blocks.pp(i);
            let mlp = b.pp("mlp");
            Ok(EncoderLayer::from_parts(
                LayerNorm::load(&b.pp("ln_1"), width, LAYER_NORM_EPS)?,
                Attention::load_packed(&b.pp("attn"), width, heads)?,
                LayerNorm::load(&b.pp("ln_2"), width, LAYER_NORM_EPS)?,
                Mlp::from_parts(
                    Linear::load(&mlp.pp("c_fc"), width, intermediate)?,
                    Linear::load(&mlp.pp("c_proj"), intermediate, width)?,
                    activation,
                ),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Encoder::from_layers(layers))
}

/// Reads the text tower stored in OpenAI's layout under `prefix` into a [`TextTransformer`]. Returns the
/// projection `{prefix}.text_projection` `[width, embed]` as stored (used as `x @ P`) when present.
pub fn load_text_transformer(
    store: &TensorStore,
    prefix: &str,
    config: &TextConfig,
) -> Result<(TextTransformer, Option<Tensor>)> {
    let w = scoped(store, prefix);
    let c = config;
    let encoder = load_resblocks(
        &w.pp("transformer"),
        c.width,
        c.layers,
        c.heads,
        c.intermediate_size,
        c.activation,
    )?;
    let tower = TextTransformer::from_parts(
        c,
        w.pp("token_embedding")
            .take("weight", &[c.vocab_size, c.width])?,
        w.take("positional_embedding", &[c.context_length, c.width])?,
        encoder,
        LayerNorm::load(&w.pp("ln_final"), c.width, c.layer_norm_eps)?,
    );
    let projection = if w.contains("text_projection") {
        let shape = shape_of(&w, "text_projection")?;
        let embed = match shape.as_slice() {
            [width, embed] if *width == c.width => *embed,
            _ => {
                return Err(ClipError::ShapeMismatch {
                    path: store.path().to_path_buf(),
                    name: w.key("text_projection"),
                    expected: vec![c.width, shape.get(1).copied().unwrap_or(0)],
                    found: shape,
                })
            }
        };
        Some(w.take("text_projection", &[c.width, embed])?)
    } else {
        None
    };
    Ok((tower, projection))
}

/// A `[in, out]` matrix used as `x @ P` (OpenAI's `proj` / `text_projection`) as a bias-free [`Linear`].
pub fn projection_linear(p: &Tensor) -> Result<Linear> {
    Linear::from_parts(p.t()?.contiguous()?, None)
}

/// Reads OpenAI's `VisionTransformer` (`conv1`, `class_embedding`, `positional_embedding`, `ln_pre`,
/// `transformer.resblocks`, `ln_post`) under `w` (normally `visual`) and its projection `proj` `[width, embed]`
/// as a [`Linear`].
pub fn load_vision_transformer(
    w: &Weights,
    config: &VisionConfig,
    embed_dim: usize,
) -> Result<(VisionTransformer, Linear)> {
    let c = config;
    let p = c.patch_size;
    let encoder = load_resblocks(
        &w.pp("transformer"),
        c.width,
        c.layers,
        c.heads,
        c.intermediate_size,
        c.activation,
    )?;
    let tower = VisionTransformer::from_parts(
        c,
        w.take("class_embedding", &[c.width])?,
        w.pp("conv1").take("weight", &[c.width, 3, p, p])?,
        w.take("positional_embedding", &[c.num_positions(), c.width])?,
        LayerNorm::load(&w.pp("ln_pre"), c.width, c.layer_norm_eps)?,
        encoder,
        LayerNorm::load(&w.pp("ln_post"), c.width, c.layer_norm_eps)?,
    )?;
    let proj = w.take("proj", &[c.width, embed_dim])?;
    Ok((tower, projection_linear(&proj)?))
}

/// The ViT architecture from tensor shapes under `w` (normally `visual`), as `build_model` infers it: width and
/// patch from `conv1.weight`, layers from the resblock count, resolution = patch x round(sqrt(positions - 1)),
/// MLP width from `mlp.c_fc.weight`. `heads` defaults to `width / 64`.
pub fn infer_vit_config(
    w: &Weights,
    heads: Option<usize>,
    activation: Activation,
) -> Result<VisionConfig> {
    let conv = shape_of(w, "conv1.weight")?;
    let width = dim(&conv, 0, w, "conv1.weight")?;
    let patch_size = dim(&conv, 3, w, "conv1.weight")?;
    let pos = shape_of(w, "positional_embedding")?;
    let positions = dim(&pos, 0, w, "positional_embedding")?;
    let grid = ((positions.saturating_sub(1)) as f64).sqrt().round() as usize;
    if grid == 0 || grid * grid + 1 != positions {
        return Err(config_error(
            w.store(),
            format!(
                "tensor {} has {positions} positions, not a square grid plus the class token",
                w.key("positional_embedding")
            ),
        ));
    }
    let layers = count_blocks(&w.pp("transformer"), "resblocks")?;
    let intermediate_size = if layers > 0 {
        let fc = shape_of(w, "transformer.resblocks.0.mlp.c_fc.weight")?;
        dim(&fc, 0, w, "transformer.resblocks.0.mlp.c_fc.weight")?
    } else {
        4 * width
    };
    let heads = heads.unwrap_or(width / 64).max(1);
    if width % heads != 0 {
        return Err(config_error(
            w.store(),
            format!("vision width {width} is not a multiple of {heads} heads"),
        ));
    }
    Ok(VisionConfig {
        image_size: patch_size * grid,
        patch_size,
        width,
        layers,
        heads,
        intermediate_size,
        activation,
        layer_norm_eps: LAYER_NORM_EPS,
    })
}

/// Tensors some OpenAI-layout files carry that the model does not use: the first releases' scalar
/// `input_resolution` / `context_length` / `vocab_size` (deleted by `build_model` too) and attention masks.
fn skip_known_buffers(store: &TensorStore) {
    for name in ["input_resolution", "context_length", "vocab_size"] {
        store.skip(name);
    }
    let masks: Vec<String> = store
        .names()
        .filter(|n| *n == "attn_mask" || n.ends_with(".attn_mask"))
        .map(str::to_string)
        .collect();
    for n in masks {
        store.skip(&n);
    }
}

/// The `ClipConfig` summary of an OpenAI-layout architecture. A ResNet tower is described by its image size, pool
/// width and heads (`patch_size` 32 = its total stride); the tower itself reads [`ModelArch::vision`].
pub fn clip_config(arch: &ModelArch) -> ClipConfig {
    let vision = match &arch.vision {
        VisionTowerConfig::Vit(v) => v.clone(),
        VisionTowerConfig::ResNet(r) => VisionConfig {
            image_size: r.image_size,
            patch_size: 32,
            width: r.embed_dim(),
            layers: r.layers.iter().sum(),
            heads: r.heads,
            intermediate_size: r.embed_dim(),
            activation: Activation::QuickGelu,
            layer_norm_eps: LAYER_NORM_EPS,
        },
    };
    ClipConfig {
        vision,
        text: arch.text.clone(),
        projection_dim: arch.embed_dim,
        // OpenAI's initial value, ln(1 / 0.07); the checkpoint holds the trained one.
        logit_scale_init: (1.0f32 / 0.07).ln(),
    }
}

/// Builds a whole CLIP model stored in OpenAI's layout (root prefix) with architecture `arch`, strictly: every
/// tensor must be used except the known buffers.
pub fn load_clip(store: &TensorStore, arch: &ModelArch) -> Result<ClipModel> {
    // Sizes from a config file are checked against the limits before any buffer is sized by them.
    clip_config(arch)
        .validate()
        .map_err(|reason| config_error(store, reason))?;
    let root = store.root();
    let visual = root.pp("visual");
    let (vision, visual_projection) = match &arch.vision {
        VisionTowerConfig::Vit(v) => {
            let (tower, proj) = load_vision_transformer(&visual, v, arch.embed_dim)?;
            (VisionTower::Vit(tower), Some(proj))
        }
        VisionTowerConfig::ResNet(r) => {
            if r.output_dim != arch.embed_dim {
                return Err(config_error(
                    store,
                    format!(
                        "resnet output_dim {} differs from embed_dim {}",
                        r.output_dim, arch.embed_dim
                    ),
                ));
            }
            (VisionTower::ResNet(ModifiedResNet::load(&visual, r)?), None)
        }
    };
    let (text, projection) = load_text_transformer(store, "", &arch.text)?;
    let projection = projection.ok_or_else(|| ClipError::MissingTensor {
        path: store.path().to_path_buf(),
        name: "text_projection".into(),
    })?;
    if projection.dim(1)? != arch.embed_dim {
        return Err(ClipError::ShapeMismatch {
            path: store.path().to_path_buf(),
            name: "text_projection".into(),
            expected: vec![arch.text.width, arch.embed_dim],
            found: projection.dims().to_vec(),
        });
    }
    let log_scale = root.take("logit_scale", &[])?.to_scalar::<f32>()?;
    skip_known_buffers(store);
    store.finish()?;
    Ok(ClipModel::from_parts(
        clip_config(arch),
        store.device(),
        vision,
        visual_projection,
        text,
        projection_linear(&projection)?,
        log_scale,
    ))
}
