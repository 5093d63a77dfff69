//! `nn.LayerNorm` over the last dimension, on the fused one-pass kernel.

use candle_core::{DType, Tensor};

use super::with_f32_values;
use crate::error::{ClipError, Result};
use crate::kernels::layer_norm::layer_norm;
use crate::kernels::norm_grad::layer_norm_backward;
use crate::model::params::Grads;
use crate::weights::Weights;

#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f64,
    /// The name prefix of `weight` / `bias` (for training's backward pass).
    prefix: String,
}

impl LayerNorm {
    /// Reads `weight` and `bias`, both `[dim]`.
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        let values =
            |name: &str| -> Result<Vec<f32>> { w.with_values(name, &[dim], <[f32]>::to_vec) };
        Ok(Self {
            weight: values("weight")?,
            bias: values("bias")?,
            eps,
            prefix: w.key(""),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let dim = self.weight.len();
        if x.dims().last() != Some(&dim) {
            return Err(ClipError::InvalidInput(format!(
                "layer norm over {dim} features, got shape {:?}",
                x.dims()
            )));
        }
        let mut out = vec![0f32; x.elem_count()];
        with_f32_values(&x, |values| {
            layer_norm(
                values,
                dim,
                &self.weight,
                &self.bias,
                self.eps as f32,
                &mut out,
            )
        })?;
        Ok(Tensor::from_vec(out, x.shape(), x.device())?)
    }

    /// Training's backward pass: the input `x` of the forward pass and the gradient `dy` of its output give the
    /// gain and bias gradients (added to `grads`) and the gradient of `x`; the statistics are recomputed from `x`.
    pub fn backward(&self, x: &Tensor, dy: &Tensor, grads: &mut Grads) -> Result<Tensor> {
        let dim = self.weight.len();
        let (x2, dy2) = (
            x.to_dtype(DType::F32)?.contiguous()?,
            dy.to_dtype(DType::F32)?.contiguous()?,
        );
        if x2.elem_count() != dy2.elem_count() || !x2.elem_count().is_multiple_of(dim) {
            return Err(ClipError::InvalidInput(format!(
                "layer norm backward: input {:?} and gradient {:?} do not match {dim} features",
                x.dims(),
                dy.dims()
            )));
        }
        let g = with_f32_values(&x2, |xv| {
            with_f32_values(&dy2, |dyv| {
                layer_norm_backward(xv, dyv, &self.weight, self.eps as f32)
            })
        })??;
        grads.add(
            &format!("{}weight", self.prefix),
            &Tensor::from_vec(g.dgain, dim, x.device())?,
        )?;
        grads.add(
            &format!("{}bias", self.prefix),
            &Tensor::from_vec(g.dbias, dim, x.device())?,
        )?;
        Ok(Tensor::from_vec(g.dx, x.shape(), x.device())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn layer_norm_large_mean() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1000.0f32, 1001.0, 1002.0, 1003.0]], &dev).unwrap();
        let ln = LayerNorm {
            weight: vec![1.0; 4],
            bias: vec![0.0; 4],
            eps: 1e-5,
            prefix: String::new(),
        };
        let y = ln.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        // torch 2.15 `nn.functional.layer_norm` of the same row.
        let expect = [-1.341_635_5f32, -0.447_211_83, 0.447_211_83, 1.341_635_5];
        for (e, g) in expect.iter().zip(&y[0]) {
            assert!((e - g).abs() < 1e-5, "{e} vs {g}");
        }
    }
}
