//! The ViT image tower, mirroring transformers' `CLIPVisionEmbeddings` + `CLIPVisionModel` (OpenAI's
//! `VisionTransformer`): bias-free patch conv, class token, positional embedding, `pre_layrnorm`, encoder,
//! `post_layernorm` on the class token.

use candle_core::{DType, Tensor};

use crate::error::{ClipError, Result};
use crate::model::config::VisionConfig;
use crate::model::nn::{Encoder, EncoderCache, EncoderShape, LayerNorm, Linear};
use crate::model::params::{Grads, Params};
use crate::weights::Weights;

/// The vision transformer up to the pooled, post-LayerNorm class token (`pooler_output`), without projection.
#[derive(Debug, Clone)]
pub(crate) struct VisionTransformer {
    config: VisionConfig,
    class_embedding: Tensor,
    /// The `[width, 3, p, p]` conv kernel as one bias-free linear layer over flattened `(c, y, x)` patches (a
    /// stride-p conv is one matmul over the unfolded patches), in the tower's precision like every other linear layer.
    patch_embedding: Linear,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    /// The name prefix the tower was read under (for training's backward pass).
    prefix: String,
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
                    Linear::from_values(v, c.width, 3 * p * p, None, w.precision())
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
            prefix: w.key(""),
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
        Ok(self.embed_patches(pixels)?.0)
    }

    /// [`Self::embed`] and the unfolded patches `[batch * grid^2, 3 * p * p]` it multiplied.
    fn embed_patches(&self, pixels: &Tensor) -> Result<(Tensor, Tensor)> {
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
        Ok((tokens.broadcast_add(&self.position_embedding)?, patches))
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

    /// [`Self::forward`] keeping what the backward pass needs.
    pub fn forward_train(&self, pixels: &Tensor) -> Result<(Tensor, VisionCache)> {
        let pixels = self.check_input(pixels)?;
        let (tokens, patches) = self.embed_patches(&pixels)?;
        let x = self.pre_layrnorm.forward(&tokens)?;
        let (x, encoder) = self.encoder.forward_train(&x, None)?;
        let class = x.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.post_layernorm.forward(&class)?;
        let cache = VisionCache {
            patches,
            tokens,
            encoder,
            class,
        };
        Ok((pooled, cache))
    }

    /// Adds the tower's parameter gradients for the gradient `dpooled` of its pooled output.
    pub fn backward(
        &self,
        cache: &VisionCache,
        dpooled: &Tensor,
        params: &Params,
        grads: &mut Grads,
    ) -> Result<()> {
        let c = &self.config;
        let (b, tokens, width) = cache.tokens.dims3()?;
        let dclass = self.post_layernorm.backward(&cache.class, dpooled, grads)?;
        // Only the class token reaches the output.
        let rest = Tensor::zeros((b, tokens - 1, width), DType::F32, dclass.device())?;
        let dout = Tensor::cat(&[&dclass.unsqueeze(1)?, &rest], 1)?;
        let dx = self
            .encoder
            .backward(&cache.encoder, &dout, params, grads)?;
        let dtokens = self.pre_layrnorm.backward(&cache.tokens, &dx, grads)?;
        let name = |n: &str| format!("{}embeddings.{n}", self.prefix);
        grads.add(&name("position_embedding.weight"), &dtokens.sum(0)?)?;
        grads.add(
            &name("class_embedding"),
            &dtokens.narrow(1, 0, 1)?.sum(0)?.squeeze(0)?,
        )?;
        let dpatches = dtokens
            .narrow(1, 1, tokens - 1)?
            .reshape((b * (tokens - 1), width))?;
        let p = c.patch_size;
        let dkernel = dpatches
            .t()?
            .matmul(&cache.patches)?
            .reshape((width, 3, p, p))?;
        grads.add(&name("patch_embedding.weight"), &dkernel)
    }
}

/// What [`VisionTransformer::backward`] needs from the forward pass.
#[derive(Debug)]
pub(crate) struct VisionCache {
    patches: Tensor,
    tokens: Tensor,
    encoder: EncoderCache,
    class: Tensor,
}
