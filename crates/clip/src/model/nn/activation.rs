//! The MLP non-linearities on tensors: QuickGELU and erf GELU on the fused kernels (tanh GELU through candle),
//! and their gradients in one fused pass.

use candle_core::{DType, Tensor};

use super::with_f32_values;
use crate::error::Result;
use crate::kernels::activation::{activation_backward, gelu_erf_copy, quick_gelu_copy, Smooth};
use crate::model::config::Activation;

/// Applies `act` element-wise.
pub(crate) fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::QuickGelu if x.dtype() == DType::F32 && x.device().is_cpu() => {
            let x = x.contiguous()?;
            let values = with_f32_values(&x, quick_gelu_copy)?;
            Tensor::from_vec(values, x.shape(), x.device())?
        }
        Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?)?,
        Activation::Gelu if x.dtype() == DType::F32 && x.device().is_cpu() => {
            let x = x.contiguous()?;
            let values = with_f32_values(&x, gelu_erf_copy)?;
            Tensor::from_vec(values, x.shape(), x.device())?
        }
        Activation::Gelu => x.gelu_erf()?,
        // candle's `gelu` is the tanh approximation.
        Activation::GeluTanh => x.gelu()?,
    })
}

/// The kernel form of `act`, for the fused backward pass.
pub(crate) fn smooth(act: Activation) -> Smooth {
    match act {
        Activation::QuickGelu => Smooth::QuickGelu,
        Activation::Gelu => Smooth::GeluErf,
        Activation::GeluTanh => Smooth::GeluTanh,
    }
}

/// `dy * act'(pre)`: the gradient through the activation, in one fused pass.
pub(crate) fn activation_backward_tensor(
    pre: &Tensor,
    dy: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    let pre = pre.contiguous()?;
    let dy = dy.contiguous()?;
    let values = with_f32_values(&pre, |p| {
        with_f32_values(&dy, |d| activation_backward(smooth(act), p, d))
    })??;
    Ok(Tensor::from_vec(values, pre.shape(), pre.device())?)
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

    #[test]
    fn derivatives_match_finite_differences() {
        let xs: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.1).collect();
        let t = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
        for act in [
            Activation::QuickGelu,
            Activation::Gelu,
            Activation::GeluTanh,
        ] {
            let ones = t.ones_like().unwrap();
            let grad = activation_backward_tensor(&t, &ones, act)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let h = 1e-2f32;
            let plus = activate(&t.affine(1.0, f64::from(h)).unwrap(), act).unwrap();
            let minus = activate(&t.affine(1.0, -f64::from(h)).unwrap(), act).unwrap();
            let fd = ((plus - minus).unwrap() / f64::from(2.0 * h))
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for ((x, g), f) in xs.iter().zip(&grad).zip(&fd) {
                assert!((g - f).abs() < 2e-3, "{act:?} at {x}: {g} vs {f}");
            }
        }
    }
}
