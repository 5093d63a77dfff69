//! Architecture from tensor shapes, in one place and over the model's layout only (each format maps its names
//! first): the rules of clip-anytorch's `build_model`, which every OpenAI-layout checkpoint follows. Widths,
//! depths, resolutions and vocabulary come from shapes; what shapes cannot tell (heads, activation, pooling)
//! the caller gives, OpenAI's rule being `width / 64` heads.

use crate::error::{ClipError, Result};
use crate::model::{
    Activation, ClipConfig, ResNetConfig, TextConfig, TextPooling, VisionConfig, VisionTowerConfig,
};
use crate::weights::Weights;

/// LayerNorm epsilon of every OpenAI / open_clip tower (PyTorch's default).
pub(crate) const LAYER_NORM_EPS: f64 = 1e-5;

/// What shapes do not say about a model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unshaped {
    pub activation: Activation,
    pub pooling: TextPooling,
}

/// The whole model under `w` (the store's root after mapping): a ResNet when `vision_model.attnpool` is present,
/// else a ViT; heads by OpenAI's rule. `text_projection.weight` `[embed, width]` gives the embedding size.
pub(crate) fn clip_config(w: &Weights, unshaped: Unshaped) -> Result<ClipConfig> {
    let visual = w.pp("vision_model");
    let vision = if visual.contains("attnpool.positional_embedding") {
        VisionTowerConfig::ResNet(resnet(&visual)?)
    } else {
        VisionTowerConfig::Vit(vit(&visual, None, unshaped.activation)?)
    };
    let text = text(&w.pp("text_model"), None, unshaped)?;
    let proj = w.shape("text_projection.weight")?;
    let projection_dim = dim(&proj, 0, w, "text_projection.weight")?;
    Ok(ClipConfig {
        vision,
        text,
        projection_dim,
        // OpenAI's initial value, ln(1 / 0.07); the checkpoint holds the trained one.
        logit_scale_init: (1.0f64 / 0.07).ln() as f32,
    })
}

/// The text tower under `w` (`text_model`): vocab and width from `embeddings.token_embedding.weight`, context
/// from the position embedding, layers from the block count, MLP width from `fc1`.
pub(crate) fn text(w: &Weights, heads: Option<usize>, unshaped: Unshaped) -> Result<TextConfig> {
    let tok_name = "embeddings.token_embedding.weight";
    let tok = w.shape(tok_name)?;
    let vocab_size = dim(&tok, 0, w, tok_name)?;
    let width = dim(&tok, 1, w, tok_name)?;
    let pos_name = "embeddings.position_embedding.weight";
    let context_length = dim(&w.shape(pos_name)?, 0, w, pos_name)?;
    let (layers, intermediate_size) = blocks(w, width)?;
    Ok(TextConfig {
        vocab_size,
        context_length,
        width,
        layers,
        heads: heads_of(w, width, heads)?,
        intermediate_size,
        activation: unshaped.activation,
        layer_norm_eps: LAYER_NORM_EPS,
        pooling: unshaped.pooling,
    })
}

/// The ViT under `w` (`vision_model`): width and patch from the patch embedding, resolution = patch x
/// round(sqrt(positions - 1)) (so ViT-L/14@336px needs no special case), layers and MLP width from the blocks.
pub(crate) fn vit(
    w: &Weights,
    heads: Option<usize>,
    activation: Activation,
) -> Result<VisionConfig> {
    let conv_name = "embeddings.patch_embedding.weight";
    let conv = w.shape(conv_name)?;
    let width = dim(&conv, 0, w, conv_name)?;
    let patch_size = dim(&conv, 3, w, conv_name)?;
    let pos_name = "embeddings.position_embedding.weight";
    let grid = square_grid(w, pos_name, dim(&w.shape(pos_name)?, 0, w, pos_name)?)?;
    let (layers, intermediate_size) = blocks(w, width)?;
    Ok(VisionConfig {
        image_size: patch_size * grid,
        patch_size,
        width,
        layers,
        heads: heads_of(w, width, heads)?,
        intermediate_size,
        activation,
        layer_norm_eps: LAYER_NORM_EPS,
    })
}

/// The ModifiedResNet under `w` (`vision_model`): stage depths from the block indices under `layer1..4`, width
/// from `layer1.0.conv1`, resolution 32 x round(sqrt(positions - 1)) of the attention pool, output from its
/// `c_proj`; pool heads `width * 32 / 64`.
pub(crate) fn resnet(w: &Weights) -> Result<ResNetConfig> {
    let mut layers = [0usize; 4];
    for (i, l) in layers.iter_mut().enumerate() {
        *l = w.count_blocks(&format!("layer{}", i + 1))?;
    }
    let conv_name = "layer1.0.conv1.weight";
    let width = dim(&w.shape(conv_name)?, 0, w, conv_name)?;
    let pos_name = "attnpool.positional_embedding";
    let grid = square_grid(w, pos_name, dim(&w.shape(pos_name)?, 0, w, pos_name)?)?;
    let proj_name = "attnpool.c_proj.weight";
    let output_dim = dim(&w.shape(proj_name)?, 0, w, proj_name)?;
    Ok(ResNetConfig {
        image_size: grid * 32,
        layers,
        width,
        heads: (width * 32 / 64).max(1),
        output_dim,
    })
}

/// Encoder depth and MLP width (`encoder.layers.0.mlp.fc1.weight` rows; `4 * width` without layers).
fn blocks(w: &Weights, width: usize) -> Result<(usize, usize)> {
    let layers = w.pp("encoder").count_blocks("layers")?;
    let intermediate = if layers > 0 {
        let name = "encoder.layers.0.mlp.fc1.weight";
        dim(&w.shape(name)?, 0, w, name)?
    } else {
        4 * width
    };
    Ok((layers, intermediate))
}

fn heads_of(w: &Weights, width: usize, heads: Option<usize>) -> Result<usize> {
    let heads = heads.unwrap_or(width / 64).max(1);
    if !width.is_multiple_of(heads) {
        return Err(bad(
            w,
            format!("width {width} is not a multiple of {heads} heads"),
        ));
    }
    Ok(heads)
}

/// The side of a square grid of `positions - 1` patches (plus the class / mean token).
fn square_grid(w: &Weights, name: &str, positions: usize) -> Result<usize> {
    let grid = (positions.saturating_sub(1) as f64).sqrt().round() as usize;
    if grid == 0 || grid * grid + 1 != positions {
        return Err(bad(
            w,
            format!(
                "tensor {} has {positions} positions, not a square grid plus one",
                w.key(name)
            ),
        ));
    }
    Ok(grid)
}

fn dim(shape: &[usize], axis: usize, w: &Weights, name: &str) -> Result<usize> {
    shape.get(axis).copied().ok_or_else(|| {
        bad(
            w,
            format!(
                "tensor {} has shape {shape:?}, expected at least {} dimensions",
                w.key(name),
                axis + 1
            ),
        )
    })
}

fn bad(w: &Weights, reason: String) -> ClipError {
    ClipError::Checkpoint {
        path: w.store().path().to_path_buf(),
        reason,
    }
}
