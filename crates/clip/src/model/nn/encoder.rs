//! `CLIPEncoderLayer` (`x + attn(ln1(x))`, then `x + mlp(ln2(x))`) and `CLIPEncoder`, the stack of them.

use candle_core::Tensor;

use super::attention::AttentionCache;
use super::mlp::MlpCache;
use super::{Attention, LayerNorm, Mlp};
use crate::error::Result;
use crate::model::config::Activation;
use crate::model::params::{Grads, Params};
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

    fn forward_train(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, LayerCache)> {
        let (x1, attn) = self
            .self_attn
            .forward_train(&self.layer_norm1.forward(x)?, mask, x)?;
        let (x2, mlp) = self
            .mlp
            .forward_train(&self.layer_norm2.forward(&x1)?, &x1)?;
        let cache = LayerCache {
            x: x.clone(),
            x1,
            attn,
            mlp,
        };
        Ok((x2, cache))
    }

    /// `x1 = x + attn(ln1(x))`, `x2 = x1 + mlp(ln2(x1))`, backwards.
    fn backward(
        &self,
        cache: &LayerCache,
        dx2: &Tensor,
        params: &Params,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let dmlp_in = self.mlp.backward(&cache.mlp, dx2, params, grads)?;
        let dx1 = (dx2 + self.layer_norm2.backward(&cache.x1, &dmlp_in, grads)?)?;
        let dattn_in = self.self_attn.backward(&cache.attn, &dx1, params, grads)?;
        Ok((dx1 + self.layer_norm1.backward(&cache.x, &dattn_in, grads)?)?)
    }
}

/// What one layer's backward pass needs: its input, the residual stream between its halves, and theirs.
#[derive(Debug)]
struct LayerCache {
    x: Tensor,
    x1: Tensor,
    attn: AttentionCache,
    mlp: MlpCache,
}

/// What [`Encoder::backward`] needs: each layer's cache, first layer first.
#[derive(Debug)]
pub(crate) struct EncoderCache {
    layers: Vec<LayerCache>,
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

    /// [`Self::forward`] keeping what the backward pass needs.
    pub fn forward_train(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, EncoderCache)> {
        let mut x = x.clone();
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (y, cache) = layer.forward_train(&x, mask)?;
            layers.push(cache);
            x = y;
        }
        Ok((x, EncoderCache { layers }))
    }

    /// The gradient of the encoder's input from the gradient of its output, layer gradients added to `grads`.
    pub fn backward(
        &self,
        cache: &EncoderCache,
        dy: &Tensor,
        params: &Params,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let mut d = dy.clone();
        for (layer, layer_cache) in self.layers.iter().zip(&cache.layers).rev() {
            d = layer.backward(layer_cache, &d, params, grads)?;
        }
        Ok(d)
    }
}
