//! `CLIPMLP`: fc1 -> activation -> fc2 (OpenAI's `c_fc` / `c_proj`).

use candle_core::Tensor;

use super::{activate, Linear};
use crate::error::Result;
use crate::kernels::activation::quick_gelu;
use crate::model::config::Activation;
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
            other => activate(&self.fc1.forward(x)?, other),
        }
    }
}
