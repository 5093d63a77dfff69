//! `CLIPMLP`: fc1 -> activation -> fc2 (OpenAI's `c_fc` / `c_proj`).

use candle_core::Tensor;

use super::activation::activation_backward_tensor;
use super::{activate, Linear};
use crate::error::Result;
use crate::kernels::activation::{gelu_erf, quick_gelu};
use crate::model::config::Activation;
use crate::model::params::{Grads, Params};
use crate::weights::Weights;

#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl Mlp {
    pub fn load(
        w: &Weights,
        width: usize,
        intermediate: usize,
        activation: Activation,
    ) -> Result<Self> {
        Ok(Self {
            fc1: Linear::load(&w.pp("fc1"), width, intermediate)?,
            fc2: Linear::load(&w.pp("fc2"), intermediate, width)?,
            activation,
        })
    }

    /// `residual + mlp(x)`, the sum formed in fc2's output buffer.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.fc2.forward_residual(&self.hidden(x)?, residual)
    }

    /// fc1 and the activation.
    fn hidden(&self, x: &Tensor) -> Result<Tensor> {
        match self.activation {
            // Applied to the GEMM's output buffer before it becomes a tensor: no extra copy.
            Activation::QuickGelu => self.fc1.forward_then(x, quick_gelu),
            Activation::Gelu => self.fc1.forward_then(x, gelu_erf),
            other => activate(&self.fc1.forward(x)?, other),
        }
    }

    /// [`Self::forward_residual`] keeping what the backward pass needs.
    pub fn forward_train(&self, x: &Tensor, residual: &Tensor) -> Result<(Tensor, MlpCache)> {
        let pre = self.fc1.forward(x)?;
        let hidden = activate(&pre, self.activation)?;
        let y = self.fc2.forward_residual(&hidden, residual)?;
        let cache = MlpCache {
            x: x.clone(),
            pre,
            hidden,
        };
        Ok((y, cache))
    }

    /// The gradient of the MLP's input (the residual's own gradient is the caller's `dy`).
    pub fn backward(
        &self,
        cache: &MlpCache,
        dy: &Tensor,
        params: &Params,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let dhidden = self.fc2.backward(&cache.hidden, dy, params, grads)?;
        let dpre = activation_backward_tensor(&cache.pre, &dhidden, self.activation)?;
        self.fc1.backward(&cache.x, &dpre, params, grads)
    }
}

/// What [`Mlp::backward`] needs from the forward pass: the input, fc1's output and the activation.
#[derive(Debug)]
pub(crate) struct MlpCache {
    x: Tensor,
    pre: Tensor,
    hidden: Tensor,
}
