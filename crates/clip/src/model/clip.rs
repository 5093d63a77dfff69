//! The dual-encoder CLIP model, mirroring transformers' `CLIPModel` (`get_image_features`, `get_text_features`,
//! and the `logits_per_image` / `logits_per_text` of its `forward`): two towers, bias-free projections into a
//! shared space, and a learned temperature stored as a log.

use candle_core::{Device, Tensor, D};

use crate::error::{ClipError, Result};
use crate::kernels::Precision;
use crate::model::config::{ClipConfig, VisionTowerConfig};
use crate::model::nn::Linear;
use crate::model::params::{Grads, Params};
use crate::model::resnet::ModifiedResNet;
use crate::model::text::{TextCache, TextTransformer};
use crate::model::vision::{VisionCache, VisionTransformer};
use crate::weights::Weights;

/// The image tower: a ViT, or OpenAI's ModifiedResNet.
#[derive(Debug, Clone)]
enum VisionTower {
    Vit(VisionTransformer),
    /// Its attention pool already projects to the shared space, so the model has no separate visual projection.
    ResNet(ModifiedResNet),
    /// Loaded for text only (a text search needs no image tower, and loads in less than half the time).
    Absent,
}

impl VisionTower {
    /// `[batch, 3, s, s]` normalised pixels -> pooled features (ViT: before the projection).
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
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
            Self::Absent => Err(ClipError::InvalidInput(
                "this model was loaded for text only: it has no image tower".into(),
            )),
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
    /// Builds the model from the one layout every format is mapped onto (transformers' `CLIPModel` names:
    /// `vision_model.*`, `visual_projection.weight`, `text_model.*`, `text_projection.weight`, `logit_scale`;
    /// a ResNet tower under `vision_model.` with OpenAI's names). Linear layers are packed in the precision the
    /// store was opened with.
    pub(crate) fn load(w: &Weights, config: ClipConfig) -> Result<Self> {
        Self::load_towers(w, config, true)
    }

    /// [`Self::load`], leaving the image tower out unless `image_tower` (its tensors are then skipped, not read).
    pub(crate) fn load_towers(w: &Weights, config: ClipConfig, image_tower: bool) -> Result<Self> {
        config.validate().map_err(|reason| ClipError::Config {
            path: w.store().path().to_path_buf(),
            reason,
        })?;
        let (vision_model, visual_projection) = match &config.vision {
            _ if !image_tower => {
                w.store().skip_prefix("vision_model.");
                w.store().skip_prefix("visual_projection.");
                (VisionTower::Absent, None)
            }
            VisionTowerConfig::Vit(v) => (
                VisionTower::Vit(VisionTransformer::load(&w.pp("vision_model"), v)?),
                Some(Linear::load_no_bias(
                    &w.pp("visual_projection"),
                    v.width,
                    config.projection_dim,
                )?),
            ),
            VisionTowerConfig::ResNet(r) => (
                VisionTower::ResNet(ModifiedResNet::load(&w.pp("vision_model"), r)?),
                None,
            ),
        };
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
            vision_model,
            visual_projection,
            text_model,
            text_projection,
            logit_scale: log_scale.exp(),
        })
    }

    /// The model of `params` (in the model's layout), its linear layers packed for `precision`: how training
    /// turns updated parameters back into a model.
    pub(crate) fn from_params(
        config: &ClipConfig,
        params: &Params,
        precision: Precision,
    ) -> Result<Self> {
        let store = params.store("training parameters", precision);
        Self::load(&store.root(), config.clone())
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
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

/// Which towers a training step updates (a locked tower runs its inference forward and gets no gradients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trainable {
    pub vision: bool,
    pub text: bool,
}

/// What [`ClipModel::backward`] needs from [`ClipModel::forward_train`]: each trained tower's cache and the
/// pooled output its projection multiplied.
#[derive(Debug)]
pub(crate) struct ClipCache {
    vision: Option<(VisionCache, Tensor)>,
    text: Option<(TextCache, Tensor)>,
}

impl ClipModel {
    /// Image features of `pixels` (`None`: none computed) and text features of `ids`, as [`Self::encode_image`]
    /// and [`Self::encode_text`] compute them, keeping what the backward pass needs for the trained towers.
    pub(crate) fn forward_train(
        &self,
        pixels: Option<&Tensor>,
        ids: &Tensor,
        trainable: Trainable,
    ) -> Result<(Option<Tensor>, Tensor, ClipCache)> {
        let mut cache = ClipCache {
            vision: None,
            text: None,
        };
        let image = match pixels {
            None => None,
            Some(pixels) if trainable.vision => {
                let (VisionTower::Vit(tower), Some(projection)) =
                    (&self.vision_model, &self.visual_projection)
                else {
                    return Err(ClipError::InvalidInput(
                        "training needs a ViT image tower (a ModifiedResNet one is not supported yet)".into(),
                    ));
                };
                let (pooled, vision_cache) =
                    tower.forward_train(&pixels.to_device(&self.device)?)?;
                let features = projection.forward(&pooled)?;
                cache.vision = Some((vision_cache, pooled));
                Some(features)
            }
            Some(pixels) => Some(self.encode_image(pixels)?),
        };
        let text = if trainable.text {
            let (pooled, text_cache) = self
                .text_model
                .forward_train(&ids.to_device(&self.device)?)?;
            let features = self.text_projection.forward(&pooled)?;
            cache.text = Some((text_cache, pooled));
            features
        } else {
            self.encode_text(ids)?
        };
        Ok((image, text, cache))
    }

    /// Adds the gradients of the trained towers' parameters for the gradients of their features.
    pub(crate) fn backward(
        &self,
        cache: &ClipCache,
        dimage: Option<&Tensor>,
        dtext: &Tensor,
        params: &Params,
        grads: &mut Grads,
    ) -> Result<()> {
        if let (Some((vision_cache, pooled)), Some(dimage)) = (&cache.vision, dimage) {
            if let (VisionTower::Vit(tower), Some(projection)) =
                (&self.vision_model, &self.visual_projection)
            {
                let dpooled = projection.backward(pooled, dimage, params, grads)?;
                tower.backward(vision_cache, &dpooled, params, grads)?;
            }
        }
        if let Some((text_cache, pooled)) = &cache.text {
            let dpooled = self
                .text_projection
                .backward(pooled, dtext, params, grads)?;
            self.text_model
                .backward(text_cache, &dpooled, params, grads)?;
        }
        Ok(())
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
