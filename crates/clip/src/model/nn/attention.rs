//! `CLIPAttention`: multi-head self-attention with separate, biased q/k/v/out projections, on the fused
//! attention kernel.
//!
//! At load time q, k and v are stacked into one `[3 * width, width]` projection (one GEMM instead of three) and
//! the `head_dim^-0.5` scale is folded into the query rows, which is `q * scale` computed ahead of time. In bf16
//! the checkpoint's own q rows are rounded, as bf16 autocast does, and the scale is applied to the scores.

use candle_core::{DType, Device, Tensor};

use super::{with_f32_values, Linear};
use crate::error::Result;
use crate::kernels::attention::{attention, AttentionShape};
use crate::kernels::attention_grad::attention_backward;
use crate::kernels::linear_grad::linear_grads;
use crate::kernels::Precision;
use crate::model::params::{Grads, Params};
use crate::weights::Weights;

#[derive(Debug, Clone)]
pub(crate) struct Attention {
    qkv: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
    /// `Some(head_dim^-0.5)` when the scale is applied to the scores rather than folded into the q rows.
    score_scale: Option<f64>,
    /// The name prefix of `q_proj`, `k_proj`, `v_proj`, `out_proj` (for training's backward pass).
    prefix: String,
}

impl Attention {
    /// Reads `q_proj`, `k_proj`, `v_proj` and `out_proj` (`weight` `[width, width]`, `bias` `[width]`).
    pub fn load(w: &Weights, width: usize, heads: usize) -> Result<Self> {
        let head_dim = width / heads;
        let scale = (head_dim as f32).powf(-0.5);
        let score_scale = (w.precision() == Precision::Bf16).then_some(f64::from(scale));
        let q_factor = if score_scale.is_some() { 1.0 } else { scale };
        // q, k and v stacked straight from the checkpoint, q scaled on the way.
        let mut weight = Vec::with_capacity(3 * width * width);
        let mut bias = Vec::with_capacity(3 * width);
        for (name, factor) in [("q_proj", q_factor), ("k_proj", 1.0), ("v_proj", 1.0)] {
            let p = w.pp(name);
            p.with_values("weight", &[width, width], |v| {
                weight.extend(v.iter().map(|x| x * factor))
            })?;
            p.with_values("bias", &[width], |v| {
                bias.extend(v.iter().map(|x| x * factor))
            })?;
        }
        Ok(Self {
            qkv: Linear::from_values(&weight, 3 * width, width, Some(bias), w.precision()),
            out_proj: Linear::load(&w.pp("out_proj"), width, width)?,
            heads,
            head_dim,
            score_scale,
            prefix: w.key(""),
        })
    }

    /// `residual + attention(x)`, the sum formed in the output projection's buffer. `x`: `[batch, seq, width]`;
    /// `mask`: additive `[seq, seq]` (e.g. [`causal_mask`]) or `None`.
    pub fn forward_residual(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor> {
        let heads = self.heads_output(x, mask)?;
        self.out_proj.forward_residual(&heads, residual)
    }

    /// The heads' outputs side by side, `[batch, seq, width]`, before the output projection.
    fn heads_output(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        // [batch, tokens, 3 * width]: per token, q of every head, then k, then v.
        let qkv = self.qkv.forward(x)?;
        self.attend(x, &qkv, mask)
    }

    /// The fused attention kernel over the stacked projection's output.
    fn attend(&self, x: &Tensor, qkv: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, tokens, width) = x.dims3()?;
        let mask = match mask {
            Some(m) => Some(m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        let shape = AttentionShape {
            batch,
            tokens,
            heads: self.heads,
            head_dim: self.head_dim,
        };
        let mut y = vec![0f32; batch * tokens * width];
        with_f32_values(qkv, |values| {
            attention(
                values,
                shape,
                self.score_scale.unwrap_or(1.0) as f32,
                mask.as_deref(),
                &mut y,
            )
        })?;
        Ok(Tensor::from_vec(y, (batch, tokens, width), x.device())?)
    }
}

impl Attention {
    /// [`Self::forward_residual`] keeping what the backward pass needs (the attention itself is recomputed
    /// there from the stacked projection's output, as memory-efficient attention does).
    pub fn forward_train(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<(Tensor, AttentionCache)> {
        let qkv = self.qkv.forward(x)?;
        let heads = self.attend(x, &qkv, mask)?;
        let y = self.out_proj.forward_residual(&heads, residual)?;
        let cache = AttentionCache {
            x: x.clone(),
            qkv,
            heads,
            mask: mask.cloned(),
        };
        Ok((y, cache))
    }

    /// The gradient of the attention's input, the projections' gradients added to `grads`.
    pub fn backward(
        &self,
        cache: &AttentionCache,
        dy: &Tensor,
        params: &Params,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let dheads = self
            .out_proj
            .backward(&cache.heads, dy, params, grads)?
            .contiguous()?;
        let (batch, tokens, width) = cache.x.dims3()?;
        let shape = AttentionShape {
            batch,
            tokens,
            heads: self.heads,
            head_dim: self.head_dim,
        };
        let scale = self.score_scale.unwrap_or(1.0) as f32;
        let mask = match &cache.mask {
            Some(m) => Some(m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        let mut dqkv = vec![0f32; batch * tokens * 3 * width];
        with_f32_values(&cache.qkv, |qkv| {
            with_f32_values(&dheads, |d| {
                attention_backward(qkv, d, shape, scale, mask.as_deref(), &mut dqkv)
            })
        })??;
        // The stacked projection computed q with its rows scaled by `q_factor` (the folded head_dim^-0.5):
        // its effective weight is [q_factor Wq; Wk; Wv].
        let q_factor = match self.score_scale {
            Some(_) => 1.0,
            None => (self.head_dim as f32).powf(-0.5),
        };
        let name = |proj: &str, part: &str| format!("{}{proj}.{part}", self.prefix);
        let mut stacked = Vec::with_capacity(3 * width * width);
        for (i, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            let factor = if i == 0 { q_factor } else { 1.0 };
            with_f32_values(params.get(&name(proj, "weight"))?, |w| {
                stacked.extend(w.iter().map(|v| v * factor))
            })?;
        }
        let rows = batch * tokens;
        let x = cache.x.contiguous()?;
        let g = with_f32_values(&x, |xv| {
            linear_grads(xv, &dqkv, &stacked, rows, width, 3 * width, true)
        })?;
        let db = g.db.unwrap_or_default();
        let device = cache.x.device();
        for (i, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            let factor = if i == 0 { q_factor } else { 1.0 };
            let dw: Vec<f32> = g.dw[i * width * width..(i + 1) * width * width]
                .iter()
                .map(|v| v * factor)
                .collect();
            let dbias: Vec<f32> = db[i * width..(i + 1) * width]
                .iter()
                .map(|v| v * factor)
                .collect();
            grads.add(
                &name(proj, "weight"),
                &Tensor::from_vec(dw, (width, width), device)?,
            )?;
            grads.add(
                &name(proj, "bias"),
                &Tensor::from_vec(dbias, width, device)?,
            )?;
        }
        Ok(Tensor::from_vec(g.dx, (batch, tokens, width), device)?)
    }
}

/// What [`Attention::backward`] needs from the forward pass.
#[derive(Debug)]
pub(crate) struct AttentionCache {
    x: Tensor,
    qkv: Tensor,
    heads: Tensor,
    mask: Option<Tensor>,
}

/// Additive causal mask `[len, len]`: 0 on and below the diagonal, -inf above (a token sees itself and earlier ones).
pub(crate) fn causal_mask(len: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (len, len), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_shape() {
        let m = causal_mask(3, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0], vec![0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert_eq!(m[2], vec![0.0, 0.0, 0.0]);
    }
}
