//! `nn.LayerNorm` over the last dimension, on the fused one-pass kernel.

use candle_core::{DType, Tensor};

use super::with_f32_values;
use crate::error::{ClipError, Result};
use crate::kernels::layer_norm::layer_norm;
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
    /// gain and bias gradients (added to `grads`) and the gradient of `x`. The normalisation statistics are
    /// recomputed from `x` (in f64).
    pub fn backward(&self, x: &Tensor, dy: &Tensor, grads: &mut Grads) -> Result<Tensor> {
        let dim = self.weight.len();
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let dys = dy.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        if xs.len() != dys.len() || !xs.len().is_multiple_of(dim) {
            return Err(ClipError::InvalidInput(format!(
                "layer norm backward: input {:?} and gradient {:?} do not match {dim} features",
                x.dims(),
                dy.dims()
            )));
        }
        let mut dx = vec![0f32; xs.len()];
        let mut dgain = vec![0f64; dim];
        let mut dbias = vec![0f64; dim];
        for ((row, drow), out) in xs
            .chunks_exact(dim)
            .zip(dys.chunks_exact(dim))
            .zip(dx.chunks_exact_mut(dim))
        {
            let n = dim as f64;
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let rstd = 1.0 / (var + self.eps).sqrt();
            let (mut mean_g, mut mean_gx) = (0f64, 0f64);
            for i in 0..dim {
                let xhat = (f64::from(row[i]) - mean) * rstd;
                let g = f64::from(drow[i]) * f64::from(self.weight[i]);
                mean_g += g;
                mean_gx += g * xhat;
                dgain[i] += f64::from(drow[i]) * xhat;
                dbias[i] += f64::from(drow[i]);
            }
            mean_g /= n;
            mean_gx /= n;
            for i in 0..dim {
                let xhat = (f64::from(row[i]) - mean) * rstd;
                let g = f64::from(drow[i]) * f64::from(self.weight[i]);
                out[i] = (rstd * (g - mean_g - xhat * mean_gx)) as f32;
            }
        }
        let to_tensor = |v: Vec<f64>| -> Result<Tensor> {
            let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
            Ok(Tensor::from_vec(v, dim, x.device())?)
        };
        grads.add(&format!("{}weight", self.prefix), &to_tensor(dgain)?)?;
        grads.add(&format!("{}bias", self.prefix), &to_tensor(dbias)?)?;
        Ok(Tensor::from_vec(dx, x.shape(), x.device())?)
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
