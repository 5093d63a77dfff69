//! The MLP non-linearities on tensors: QuickGELU on the fused kernel, erf and tanh GELU through candle.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::kernels::activation::quick_gelu;
use crate::model::config::Activation;

/// Applies `act` element-wise.
pub(crate) fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::QuickGelu if x.dtype() == DType::F32 && x.device().is_cpu() => {
            let mut values = x.flatten_all()?.to_vec1::<f32>()?;
            quick_gelu(&mut values);
            Tensor::from_vec(values, x.shape(), x.device())?
        }
        Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?)?,
        Activation::Gelu => x.gelu_erf()?,
        // candle's `gelu` is the tanh approximation.
        Activation::GeluTanh => x.gelu()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn activations_match_formulas() {
        let xs = [-3.0f32, -1.0, -0.1, 0.0, 0.5, 2.0];
        let t = Tensor::new(&xs, &Device::Cpu).unwrap();
        let quick = activate(&t, Activation::QuickGelu)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let tanh = activate(&t, Activation::GeluTanh)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let erf = activate(&t, Activation::Gelu)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            let q = x64 / (1.0 + (-1.702 * x64).exp());
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let g = 0.5 * x64 * (1.0 + (c * (x64 + 0.044715 * x64.powi(3))).tanh());
            assert!((quick[i] as f64 - q).abs() < 1e-6, "quick_gelu({x})");
            assert!((tanh[i] as f64 - g).abs() < 1e-6, "gelu_tanh({x})");
        }
        // erf GELU reference values from torch 2.15 `nn.functional.gelu`.
        let expect = [
            -0.004_050_225,
            -0.158_655_26,
            -0.046_017_22,
            0.0,
            0.345_731_23,
            1.954_499_7,
        ];
        for (e, g) in expect.iter().zip(&erf) {
            assert!((e - g).abs() < 1e-6, "{e} vs {g}");
        }
    }
}
