//! `CLIPEncoderLayer` (`x + attn(ln1(x))`, then `x + mlp(ln2(x))`) and `CLIPEncoder`, the stack of them.

use candle_core::Tensor;

use super::{Attention, LayerNorm, Mlp};
use crate::error::Result;
use crate::model::config::Activation;
use crate::weights::Weights;

/// The shape of one tower's transformer, shared by both towers' configs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncoderShape {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    fn load(w: &Weights, s: &EncoderShape) -> Result<Self> {
        Ok(Self {
            layer_norm1: LayerNorm::load(&w.pp("layer_norm1"), s.width, s.layer_norm_eps)?,
            self_attn: Attention::load(&w.pp("self_attn"), s.width, s.heads)?,
            layer_norm2: LayerNorm::load(&w.pp("layer_norm2"), s.width, s.layer_norm_eps)?,
            mlp: Mlp::load(&w.pp("mlp"), s.width, s.intermediate_size, s.activation)?,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = self
            .self_attn
            .forward_residual(&self.layer_norm1.forward(x)?, mask, x)?;
        self.mlp
            .forward_residual(&self.layer_norm2.forward(&x)?, &x)
    }
}

/// The stack of layers, read from `layers.{i}.*`.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn load(w: &Weights, s: &EncoderShape) -> Result<Self> {
        let w = w.pp("layers");
        let layers = (0..s.layers)
            .map(|i| EncoderLayer::load(&w.pp(i), s))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// Runs the first `n` layers (all of them when `None`); intermediate states serve e.g. clip-skip.
    pub fn forward_layers(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        n: Option<usize>,
    ) -> Result<Tensor> {
        let n = n.unwrap_or(self.layers.len()).min(self.layers.len());
        let mut x = x.clone();
        for layer in &self.layers[..n] {
            x = layer.forward(&x, mask)?;
        }
        Ok(x)
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.forward_layers(x, mask, None)
    }
}
