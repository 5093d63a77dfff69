//! The dual-encoder CLIP model, mirroring transformers' `CLIPModel` (`get_image_features`, `get_text_features`,
//! and the `logits_per_image` / `logits_per_text` of its `forward`): two towers, bias-free projections into a
//! shared space, and a learned temperature stored as a log.

use candle_core::{Device, Tensor, D};

use crate::checkpoint::Weights;
use crate::error::{ClipError, Result};
use crate::model::config::{ClipConfig, Precision, VisionTowerConfig};
use crate::model::layers::Linear;
use crate::model::resnet::ModifiedResNet;
use crate::model::text::TextTransformer;
use crate::model::vision::VisionTransformer;

/// The image tower: OpenAI released both kinds, and open_clip's `vision_cfg.layers` picks between them.
#[derive(Debug, Clone)]
pub enum VisionTower {
    Vit(VisionTransformer),
    /// Its attention pool already projects to the shared space, so the model has no separate visual projection.
    ResNet(ModifiedResNet),
}

impl VisionTower {
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        match self {
            Self::Vit(v) => v.set_precision(precision),
            Self::ResNet(r) => r.set_precision(precision),
        }
    }

    pub fn config(&self) -> VisionTowerConfig {
        match self {
            Self::Vit(v) => VisionTowerConfig::Vit(v.config().clone()),
            Self::ResNet(r) => VisionTowerConfig::ResNet(r.config().clone()),
        }
    }

    pub fn image_size(&self) -> usize {
        match self {
            Self::Vit(v) => v.config().image_size,
            Self::ResNet(r) => r.config().image_size,
        }
    }

    /// `[batch, 3, s, s]` normalised pixels -> pooled features (ViT: before the projection).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        match self {
            Self::Vit(v) => v.forward(pixels),
            Self::ResNet(r) => {
                let s = r.config().image_size;
                let dims = pixels.dims();
                if dims.len() != 4 || dims[0] == 0 || dims[1] != 3 || dims[2] != s || dims[3] != s {
                    return Err(ClipError::InvalidInput(format!(
                        "image tensor has shape {dims:?}, expected [batch, 3, {s}, {s}] (RGB, {s}x{s} pixels)"
                    )));
                }
                if !pixels.dtype().is_float() {
                    return Err(ClipError::InvalidInput(format!(
                        "image tensor has dtype {:?}, expected f32 (normalised pixel values)",
                        pixels.dtype()
                    )));
                }
                r.forward(&pixels.to_dtype(candle_core::DType::F32)?)
            }
        }
    }
}

/// A loaded CLIP model. Immutable after loading, `Send + Sync`: share one behind an `Arc`.
#[derive(Debug, Clone)]
pub struct ClipModel {
    config: ClipConfig,
    device: Device,
    vision_model: VisionTower,
    /// `None` for ResNet towers, whose attention pool projects.
    visual_projection: Option<Linear>,
    text_model: TextTransformer,
    text_projection: Linear,
    /// `exp` of the stored `logit_scale`.
    logit_scale: f32,
}

impl ClipModel {
    /// Computes with `precision`: `Bf16` rounds every transformer linear layer and projection to bf16 weights
    /// and bf16-rounded activations with f32 accumulation (AVX512-BF16 where the CPU has it); `Int8` quantises
    /// their weights per output channel and their inputs per row at run time, with i32 accumulation
    /// (AVX512-VNNI where present). LayerNorm, softmax, attention scores, convolutions and residuals stay f32.
    /// Call it once on a freshly loaded model: going back to f32 does not restore the rounded weights.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.vision_model.set_precision(precision)?;
        if let Some(p) = &mut self.visual_projection {
            p.set_precision(precision)?;
        }
        self.text_model.set_precision(precision)?;
        self.text_projection.set_precision(precision)
    }

    /// Builds the model from tensors named as in Hugging Face's `CLIPModel` state dict (`vision_model.*`,
    /// `visual_projection.weight`, `text_model.*`, `text_projection.weight`, `logit_scale`) under `w`.
    pub fn load(w: &Weights, config: ClipConfig) -> Result<Self> {
        config.validate().map_err(|reason| ClipError::Config {
            path: w.store().path().to_path_buf(),
            reason,
        })?;
        let vision_model = VisionTransformer::load(&w.pp("vision_model"), &config.vision)?;
        let visual_projection = Linear::load_no_bias(
            &w.pp("visual_projection"),
            config.vision.width,
            config.projection_dim,
        )?;
        let text_model = TextTransformer::load(&w.pp("text_model"), &config.text)?;
        let text_projection = Linear::load_no_bias(
            &w.pp("text_projection"),
            config.text.width,
            config.projection_dim,
        )?;
        let log_scale = w.take("logit_scale", &[])?.to_scalar::<f32>()?;
        Ok(Self {
            config,
            device: w.device().clone(),
            vision_model: VisionTower::Vit(vision_model),
            visual_projection: Some(visual_projection),
            text_model,
            text_projection,
            logit_scale: log_scale.exp(),
        })
    }

    /// Assembles a model from towers loaded by another checkpoint layout (OpenAI / open_clip). `text_projection`
    /// maps text width to `config.projection_dim`; `log_logit_scale` is the stored (log) value. For a ResNet
    /// tower, `config.vision` only describes its image size (the tower's own config is [`Self::vision_tower`]).
    pub fn from_parts(
        config: ClipConfig,
        device: &Device,
        vision: VisionTower,
        visual_projection: Option<Linear>,
        text_model: TextTransformer,
        text_projection: Linear,
        log_logit_scale: f32,
    ) -> Self {
        Self {
            config,
            device: device.clone(),
            vision_model: vision,
            visual_projection,
            text_model,
            text_projection,
            logit_scale: log_logit_scale.exp(),
        }
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The device the weights live on; inputs are moved here.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The ViT image tower, if the model has one (see [`Self::vision_tower`]).
    pub fn vision_model(&self) -> Option<&VisionTransformer> {
        match &self.vision_model {
            VisionTower::Vit(v) => Some(v),
            VisionTower::ResNet(_) => None,
        }
    }

    pub fn vision_tower(&self) -> &VisionTower {
        &self.vision_model
    }

    pub fn text_model(&self) -> &TextTransformer {
        &self.text_model
    }

    /// Image features `[batch, projection_dim]` (not normalised) from normalised pixels
    /// `[batch, 3, image_size, image_size]`, as `CLIPModel.get_image_features`.
    pub fn encode_image(&self, pixels: &Tensor) -> Result<Tensor> {
        let pixels = pixels.to_device(&self.device)?;
        let pooled = self.vision_model.forward(&pixels)?;
        match &self.visual_projection {
            Some(p) => p.forward(&pooled),
            None => Ok(pooled),
        }
    }

    /// Text features `[batch, projection_dim]` (not normalised) from token ids `[batch, len]`
    /// (`len <= context_length`), as `CLIPModel.get_text_features` without an attention mask.
    pub fn encode_text(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = ids.to_device(&self.device)?;
        let pooled = self.text_model.forward(&ids)?;
        self.text_projection.forward(&pooled)
    }

    /// The similarity temperature: `exp` of the stored `logit_scale` (100 for OpenAI's weights).
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// `(logits_per_image [Bi, Bt], logits_per_text [Bt, Bi])` from raw features: both L2-normalised, their
    /// cosine similarities multiplied by [`Self::logit_scale`], as `CLIPModel.forward`.
    pub fn logits(
        &self,
        image_features: &Tensor,
        text_features: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let p = self.config.projection_dim;
        for (what, t) in [("image", image_features), ("text", text_features)] {
            let dims = t.dims();
            if dims.len() != 2 || dims[1] != p {
                return Err(ClipError::InvalidInput(format!(
                    "{what} features have shape {dims:?}, expected [batch, {p}]"
                )));
            }
        }
        let image = l2_normalize(&image_features.to_device(&self.device)?)?;
        let text = l2_normalize(&text_features.to_device(&self.device)?)?;
        let per_text = (text.matmul(&image.t()?)? * f64::from(self.logit_scale))?;
        let per_image = per_text.t()?.contiguous()?;
        Ok((per_image, per_text))
    }
}

/// Divides each row by its Euclidean norm (transformers' `_get_vector_norm`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(candle_core::DType::F32)?;
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ClipModel>();
    }
}
