//! OpenAI's released checkpoints (`RN50.pt` ... `ViT-L-14-336px.pt`): a TorchScript archive or a `torch.save`
//! state dict in OpenAI's layout, with the architecture inferred from tensor shapes exactly as clip-anytorch
//! 2.6's `clip/model.py::build_model` does, then loaded with [`super::openai_layout`].
//!
//! `build_model`'s rules: a ViT has `visual.proj`; its width and patch come from `visual.conv1.weight`, its
//! layers from the number of `visual.*.attn.in_proj_weight`, its resolution = patch x round(sqrt(positions - 1))
//! of `visual.positional_embedding` (so ViT-L/14@336px needs no special case). A ResNet's stage depths are the
//! distinct block indices under `visual.layer{1..4}`, its width `visual.layer1.0.conv1.weight.shape[0]`, its
//! resolution 32 x round(sqrt(positions - 1)) of `visual.attnpool.positional_embedding`. Both: embed dim =
//! `text_projection.shape[1]`, context = `positional_embedding.shape[0]`, vocab = `token_embedding.weight.shape[0]`,
//! text width = `ln_final.weight.shape[0]`, heads = width / 64 (ResNet pool: width * 32 / 64), text layers =
//! distinct `transformer.resblocks.N`. Every OpenAI model uses QuickGELU.

use std::path::Path;

use candle_core::Device;

use crate::checkpoint::openai_layout::{self, count_blocks, infer_text_config, shape_of};
use crate::checkpoint::torchscript::{open_archive, ArchiveKind};
use crate::checkpoint::TensorStore;
use crate::error::{ClipError, Result};
use crate::model::clip::ClipModel;
use crate::model::config::{Activation, ModelArch, Precision, ResNetConfig, VisionTowerConfig};

/// The architecture of an OpenAI-layout state dict, inferred from its shapes as `build_model` does.
pub fn infer_arch(store: &TensorStore) -> Result<ModelArch> {
    let root = store.root();
    let visual = root.pp("visual");
    let bad = |reason: String| ClipError::Checkpoint {
        path: store.path().to_path_buf(),
        reason,
    };
    let vision = if visual.contains("proj") {
        // build_model counts `visual.*.attn.in_proj_weight`; the resblock count is the same number.
        let v = openai_layout::infer_vit_config(&visual, None, Activation::QuickGelu)?;
        VisionTowerConfig::Vit(v)
    } else if visual.contains("attnpool.positional_embedding") {
        let mut layers = [0usize; 4];
        for (i, l) in layers.iter_mut().enumerate() {
            *l = count_blocks(&visual, &format!("layer{}", i + 1))?;
        }
        let width = shape_of(&visual, "layer1.0.conv1.weight")?
            .first()
            .copied()
            .unwrap_or(0);
        let pos = shape_of(&visual, "attnpool.positional_embedding")?;
        let positions = pos.first().copied().unwrap_or(0);
        let grid = (positions.saturating_sub(1) as f64).sqrt().round() as usize;
        if grid == 0 || grid * grid + 1 != positions {
            return Err(bad(format!(
                "visual.attnpool.positional_embedding has {positions} positions, not a square grid plus one"
            )));
        }
        let output_dim = shape_of(&visual, "attnpool.c_proj.weight")?
            .first()
            .copied()
            .unwrap_or(0);
        VisionTowerConfig::ResNet(ResNetConfig {
            image_size: grid * 32,
            layers,
            width,
            heads: (width * 32 / 64).max(1),
            output_dim,
        })
    } else {
        return Err(bad(
            "not an OpenAI CLIP checkpoint: neither visual.proj (ViT) nor visual.attnpool (ResNet) found".into(),
        ));
    };
    let text = infer_text_config(store, "", None, Activation::QuickGelu)?;
    let proj = shape_of(&root, "text_projection")?;
    let embed_dim = match proj.as_slice() {
        [_, e] => *e,
        _ => {
            return Err(bad(format!(
                "text_projection has shape {proj:?}, expected [width, embed_dim]"
            )))
        }
    };
    Ok(ModelArch {
        vision,
        text,
        embed_dim,
    })
}

/// A loaded OpenAI checkpoint: the model, its inferred architecture and which archive kind the file was.
#[derive(Debug)]
pub struct OpenAiCheckpoint {
    pub model: ClipModel,
    pub arch: ModelArch,
    pub kind: ArchiveKind,
}

/// Reads an OpenAI `.pt` file (TorchScript archive or `torch.save` state dict), infers the architecture and
/// builds the model strictly, its linear layers packed for `precision`.
pub fn load_openai_file(
    path: &Path,
    device: &Device,
    precision: Precision,
) -> Result<OpenAiCheckpoint> {
    let (kind, store) = open_archive(path, device)?;
    store.set_precision(precision);
    let arch = infer_arch(&store)?;
    let model = openai_layout::load_clip(&store, &arch)?;
    Ok(OpenAiCheckpoint { model, arch, kind })
}
