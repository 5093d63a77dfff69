//! The ViT image tower, mirroring transformers' `CLIPVisionEmbeddings` + `CLIPVisionModel` (OpenAI's
//! `VisionTransformer`): bias-free patch conv, class token, positional embedding, `pre_layrnorm`, encoder,
//! `post_layernorm` on the class token.

use candle_core::{DType, Tensor};

use crate::error::{ClipError, Result};
use crate::kernels::Precision;
use crate::model::config::VisionConfig;
use crate::model::nn::{Encoder, EncoderShape, LayerNorm, Linear};
use crate::weights::Weights;

/// The vision transformer up to the pooled, post-LayerNorm class token (`pooler_output`), without projection.
#[derive(Debug, Clone)]
pub(crate) struct VisionTransformer {
    config: VisionConfig,
    class_embedding: Tensor,
    /// The `[width, 3, p, p]` conv kernel as one bias-free linear layer over flattened `(c, y, x)` patches (a
    /// stride-p conv is one matmul over the unfolded patches). Kept in f32 whatever the precision.
    patch_embedding: Linear,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
}

impl VisionTransformer {
    /// Reads the tower from `w` (normally the `vision_model.` prefix).
    pub fn load(w: &Weights, config: &VisionConfig) -> Result<Self> {
        let c = config;
        let emb = w.pp("embeddings");
        let p = c.patch_size;
        let class_embedding = emb.take("class_embedding", &[c.width])?;
        let patch_embedding =
            emb.pp("patch_embedding")
                .with_values("weight", &[c.width, 3, p, p], |v| {
                    Linear::from_values(v, c.width, 3 * p * p, None, Precision::F32)
                })?;
        let position_embedding = emb
            .pp("position_embedding")
            .take("weight", &[c.num_positions(), c.width])?;
        let shape = EncoderShape {
            width: c.width,
            layers: c.layers,
            heads: c.heads,
            intermediate_size: c.intermediate_size,
            activation: c.activation,
            layer_norm_eps: c.layer_norm_eps,
        };
        Ok(Self {
            config: config.clone(),
            class_embedding,
            patch_embedding,
            position_embedding,
            // "layrnorm" is the published checkpoints' spelling.
            pre_layrnorm: LayerNorm::load(&w.pp("pre_layrnorm"), c.width, c.layer_norm_eps)?,
            encoder: Encoder::load(&w.pp("encoder"), &shape)?,
            post_layernorm: LayerNorm::load(&w.pp("post_layernorm"), c.width, c.layer_norm_eps)?,
        })
    }

    /// Checks `pixels` is `[batch, 3, image_size, image_size]` floating point and returns it as f32.
    fn check_input(&self, pixels: &Tensor) -> Result<Tensor> {
        let s = self.config.image_size;
        let dims = pixels.dims();
        if dims.len() != 4 || dims[1] != 3 || dims[2] != s || dims[3] != s {
            return Err(ClipError::InvalidInput(format!(
                "image tensor has shape {dims:?}, expected [batch, 3, {s}, {s}] (RGB, {s}x{s} pixels)"
            )));
        }
        if dims[0] == 0 {
            return Err(ClipError::InvalidInput("image batch is empty".into()));
        }
        match pixels.dtype() {
            DType::F32 => Ok(pixels.clone()),
            DType::F16 | DType::BF16 | DType::F64 => Ok(pixels.to_dtype(DType::F32)?),
            other => Err(ClipError::InvalidInput(format!(
                "image tensor has dtype {other:?}, expected f32 (normalised pixel values)"
            ))),
        }
    }

    /// Token embeddings `[batch, 1 + grid^2, width]`: class token then patches, plus positions.
    fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (b, _, _, _) = pixels.dims4()?;
        let (g, p) = (c.grid_size(), c.patch_size);
        // A strided conv ignores pixels beyond the last whole patch.
        let pixels = if g * p != c.image_size {
            pixels.narrow(2, 0, g * p)?.narrow(3, 0, g * p)?
        } else {
            pixels.clone()
        };
        // [b, 3, g*p, g*p] -> [b, g, g, 3, p, p]: each row holds one patch in the kernel's (c, y, x) order.
        let patches = pixels
            .reshape((b, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, 3 * p * p))?;
        let patch_embeds = self
            .patch_embedding
            .forward(&patches)?
            .reshape((b, g * g, c.width))?;
        let class = self
            .class_embedding
            .reshape((1, 1, c.width))?
            .broadcast_as((b, 1, c.width))?;
        let tokens = Tensor::cat(&[&class, &patch_embeds], 1)?;
        Ok(tokens.broadcast_add(&self.position_embedding)?)
    }

    /// Pooled output `[batch, width]`: the class token after the encoder and `post_layernorm`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let pixels = self.check_input(pixels)?;
        let x = self.embed(&pixels)?;
        let x = self.pre_layrnorm.forward(&x)?;
        let x = self.encoder.forward(&x, None)?;
        let class = x.narrow(1, 0, 1)?.squeeze(1)?;
        self.post_layernorm.forward(&class)
    }
}
