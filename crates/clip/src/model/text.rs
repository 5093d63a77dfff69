//! The causal text transformer, mirroring transformers' `CLIPTextEmbeddings` + `CLIPTextModel` (OpenAI's
//! `encode_text` without the projection): token + position embeddings, causal encoder, `final_layer_norm`,
//! pooling at the end-of-text token.

use candle_core::{DType, Tensor};

use crate::error::{ClipError, Result};
use crate::model::config::{TextConfig, TextPooling};
use crate::model::nn::{causal_mask, Encoder, EncoderCache, EncoderShape, LayerNorm};
use crate::model::params::{Grads, Params};
use crate::weights::Weights;

/// The text transformer up to the pooled, final-LayerNorm end-of-text state (`pooler_output`), without projection.
#[derive(Debug, Clone)]
pub(crate) struct TextTransformer {
    config: TextConfig,
    token_embedding: Tensor,
    position_embedding: Tensor,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    /// The name prefix the tower was read under (for training's backward pass).
    prefix: String,
}

impl TextTransformer {
    /// Reads the tower from `w` (normally the `text_model.` prefix).
    pub fn load(w: &Weights, config: &TextConfig) -> Result<Self> {
        let c = config;
        let emb = w.pp("embeddings");
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
            token_embedding: emb
                .pp("token_embedding")
                .take("weight", &[c.vocab_size, c.width])?,
            position_embedding: emb
                .pp("position_embedding")
                .take("weight", &[c.context_length, c.width])?,
            encoder: Encoder::load(&w.pp("encoder"), &shape)?,
            final_layer_norm: LayerNorm::load(
                &w.pp("final_layer_norm"),
                c.width,
                c.layer_norm_eps,
            )?,
            prefix: w.key(""),
        })
    }

    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    /// Checks `ids` is `[batch, len]` of integers with `1 <= len <= context_length` and every id in the vocabulary;
    /// returns the rows.
    pub fn check_input(&self, ids: &Tensor) -> Result<Vec<Vec<u32>>> {
        let c = &self.config;
        let dims = ids.dims();
        if dims.len() != 2 {
            return Err(ClipError::InvalidInput(format!(
                "token ids have shape {dims:?}, expected [batch, length]"
            )));
        }
        let (b, len) = (dims[0], dims[1]);
        if b == 0 || len == 0 {
            return Err(ClipError::InvalidInput(format!(
                "token ids have shape {dims:?}: nothing to encode"
            )));
        }
        if len > c.context_length {
            return Err(ClipError::InvalidInput(format!(
                "{len} tokens per text, but the model's context length is {}",
                c.context_length
            )));
        }
        let rows: Vec<Vec<i64>> = match ids.dtype() {
            DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64 => {
                ids.to_dtype(DType::I64)?.to_vec2()?
            }
            other => {
                return Err(ClipError::InvalidInput(format!(
                    "token ids have dtype {other:?}, expected an integer type (u32)"
                )))
            }
        };
        rows.into_iter()
            .enumerate()
            .map(|(r, row)| {
                row.into_iter()
                    .enumerate()
                    .map(|(i, id)| match u32::try_from(id) {
                        Ok(v) if (v as usize) < c.vocab_size => Ok(v),
                        _ => Err(ClipError::InvalidInput(format!(
                            "token id {id} at text {r}, position {i} is outside the vocabulary (size {})",
                            c.vocab_size
                        ))),
                    })
                    .collect()
            })
            .collect()
    }

    /// The position pooled for each text (see [`TextPooling`]).
    pub fn pool_positions(&self, rows: &[Vec<u32>]) -> Vec<usize> {
        rows.iter()
            .map(|row| match self.config.pooling {
                TextPooling::Argmax => {
                    // First maximum: `Iterator::max_by_key` would return the last one.
                    let mut best = 0;
                    for (i, &id) in row.iter().enumerate() {
                        if id > row[best] {
                            best = i;
                        }
                    }
                    best
                }
                TextPooling::FirstEos(eos) => row.iter().position(|&id| id == eos).unwrap_or(0),
            })
            .collect()
    }

    /// Runs embeddings and the first `layers` encoder layers (all when `None`) over `rows` (all of one length),
    /// without the final LayerNorm: `[batch, len, width]`.
    pub fn encode_rows(&self, rows: &[Vec<u32>], layers: Option<usize>) -> Result<Tensor> {
        let device = self.token_embedding.device();
        let b = rows.len();
        let len = rows.first().map_or(0, Vec::len);
        let flat: Vec<u32> = rows.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, b * len, device)?;
        let tokens =
            self.token_embedding
                .index_select(&ids, 0)?
                .reshape((b, len, self.config.width))?;
        let x = tokens.broadcast_add(&self.position_embedding.narrow(0, 0, len)?)?;
        let mask = causal_mask(len, device)?;
        self.encoder.forward_layers(&x, Some(&mask), layers)
    }

    /// The final LayerNorm, for callers that take intermediate states from [`Self::encode_rows`].
    pub fn final_layer_norm(&self) -> &LayerNorm {
        &self.final_layer_norm
    }

    /// Pooled output `[batch, width]`: the final-LayerNorm state at each text's pooled position.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (rows, positions) = self.pooled_rows(ids)?;
        let x = self.encode_rows(&rows, None)?;
        let pooled = gather_rows(&x, &positions)?;
        // LayerNorm is per position, so normalising only the pooled rows is the same as normalising all first.
        self.final_layer_norm.forward(&pooled)
    }

    /// The checked rows, cut after the last pooled position (causal attention: no position influences an
    /// earlier one, so later positions cannot change the result), and each row's pooled position.
    fn pooled_rows(&self, ids: &Tensor) -> Result<(Vec<Vec<u32>>, Vec<usize>)> {
        let rows = self.check_input(ids)?;
        let positions = self.pool_positions(&rows);
        let len = positions.iter().max().map_or(1, |&p| p + 1);
        let rows = rows.into_iter().map(|r| r[..len].to_vec()).collect();
        Ok((rows, positions))
    }

    /// [`Self::forward`] keeping what the backward pass needs.
    pub fn forward_train(&self, ids: &Tensor) -> Result<(Tensor, TextCache)> {
        let (rows, positions) = self.pooled_rows(ids)?;
        let device = self.token_embedding.device();
        let (b, len, width) = (rows.len(), rows[0].len(), self.config.width);
        let flat: Vec<u32> = rows.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, b * len, device)?;
        let x = self
            .token_embedding
            .index_select(&ids, 0)?
            .reshape((b, len, width))?
            .broadcast_add(&self.position_embedding.narrow(0, 0, len)?)?;
        let mask = causal_mask(len, device)?;
        let (x, encoder) = self.encoder.forward_train(&x, Some(&mask))?;
        let pooled_in = gather_rows(&x, &positions)?;
        let pooled = self.final_layer_norm.forward(&pooled_in)?;
        let cache = TextCache {
            ids,
            positions,
            len,
            encoder,
            pooled_in,
        };
        Ok((pooled, cache))
    }

    /// Adds the tower's parameter gradients for the gradient `dpooled` of its pooled output.
    pub fn backward(
        &self,
        cache: &TextCache,
        dpooled: &Tensor,
        params: &Params,
        grads: &mut Grads,
    ) -> Result<()> {
        let c = &self.config;
        let (b, len, width) = (cache.positions.len(), cache.len, c.width);
        let drows = self
            .final_layer_norm
            .backward(&cache.pooled_in, dpooled, grads)?
            .to_vec2::<f32>()?;
        // Only the pooled positions reach the output.
        let mut dx = vec![0f32; b * len * width];
        for (i, (&p, row)) in cache.positions.iter().zip(&drows).enumerate() {
            dx[(i * len + p) * width..(i * len + p + 1) * width].copy_from_slice(row);
        }
        let dx = Tensor::from_vec(dx, (b, len, width), dpooled.device())?;
        let dx = self.encoder.backward(&cache.encoder, &dx, params, grads)?;
        let name = |n: &str| format!("{}embeddings.{n}", self.prefix);
        let dpos = dx.sum(0)?;
        let dpos = if len < c.context_length {
            let rest = Tensor::zeros((c.context_length - len, width), DType::F32, dx.device())?;
            Tensor::cat(&[&dpos, &rest], 0)?
        } else {
            dpos
        };
        grads.add(&name("position_embedding.weight"), &dpos)?;
        let dtok = Tensor::zeros((c.vocab_size, width), DType::F32, dx.device())?.index_add(
            &cache.ids,
            &dx.reshape((b * len, width))?,
            0,
        )?;
        grads.add(&name("token_embedding.weight"), &dtok)
    }
}

/// Row `positions[i]` of text `i`: `[batch, width]` out of `[batch, len, width]`.
fn gather_rows(x: &Tensor, positions: &[usize]) -> Result<Tensor> {
    let (b, len, width) = x.dims3()?;
    let index: Vec<u32> = positions
        .iter()
        .enumerate()
        .map(|(i, &p)| (i * len + p) as u32)
        .collect();
    let index = Tensor::from_vec(index, b, x.device())?;
    Ok(x.reshape((b * len, width))?.index_select(&index, 0)?)
}

/// What [`TextTransformer::backward`] needs from the forward pass.
#[derive(Debug)]
pub(crate) struct TextCache {
    ids: Tensor,
    positions: Vec<usize>,
    len: usize,
    encoder: EncoderCache,
    pooled_in: Tensor,
}
