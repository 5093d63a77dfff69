//! `nn.Linear`: `y = x W^T + b` with `W` stored `[out, in]` as PyTorch does, the weight packed once, at load,
//! for the GEMM kernel of the store's [`Precision`].

use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::with_f32_values;
use crate::error::{ClipError, Result};
use crate::kernels::bf16_gemm::{linear_bf16, PackedBf16};
use crate::kernels::f32_gemm::{linear_f32, PackedF32};
use crate::kernels::int8_gemm::{linear_int8, PackedInt8};
use crate::kernels::residual::add_assign;
use crate::kernels::Precision;
use crate::weights::Weights;

#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: LinearWeight,
    bias: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
enum LinearWeight {
    F32(Arc<PackedF32>),
    Bf16(Arc<PackedBf16>),
    Int8(Arc<PackedInt8>),
}

impl Linear {
    /// Reads `weight` `[out, in]` and `bias` `[out]`.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        let bias = w.with_values("bias", &[out_dim], <[f32]>::to_vec)?;
        w.with_values("weight", &[out_dim, in_dim], |values| {
            Self::from_values(values, out_dim, in_dim, Some(bias), w.precision())
        })
    }

    /// Reads only `weight` (CLIP's projections have no bias).
    pub fn load_no_bias(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        w.with_values("weight", &[out_dim, in_dim], |values| {
            Self::from_values(values, out_dim, in_dim, None, w.precision())
        })
    }

    /// Packs `values` (`[out, in]` row-major) for `precision`'s kernel: bf16 rounds them, int8 quantises them
    /// per output channel.
    pub fn from_values(
        values: &[f32],
        out_dim: usize,
        in_dim: usize,
        bias: Option<Vec<f32>>,
        precision: Precision,
    ) -> Self {
        let (n, k) = (out_dim, in_dim);
        let weight = match precision {
            Precision::F32 => LinearWeight::F32(Arc::new(PackedF32::pack(values, n, k))),
            Precision::Bf16 => LinearWeight::Bf16(Arc::new(PackedBf16::pack(values, n, k))),
            Precision::Int8 => LinearWeight::Int8(Arc::new(PackedInt8::pack(values, n, k))),
        };
        Self { weight, bias }
    }

    pub fn out_dim(&self) -> usize {
        match &self.weight {
            LinearWeight::F32(w) => w.out_dim(),
            LinearWeight::Bf16(w) => w.out_dim(),
            LinearWeight::Int8(w) => w.out_dim(),
        }
    }

    pub fn in_dim(&self) -> usize {
        match &self.weight {
            LinearWeight::F32(w) => w.in_dim(),
            LinearWeight::Bf16(w) => w.in_dim(),
            LinearWeight::Int8(w) => w.in_dim(),
        }
    }

    /// Applies the layer to the last dimension of `x` as one GEMM over all leading dimensions.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, |_| {})
    }

    /// [`Self::forward`] plus `residual` (the output's shape), added in the output buffer: the encoder's skip
    /// connection without another tensor.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let residual = residual.to_dtype(DType::F32)?.contiguous()?;
        let mut expected = x.dims().to_vec();
        if let Some(last) = expected.last_mut() {
            *last = self.out_dim();
        }
        if residual.dims() != expected.as_slice() {
            return Err(ClipError::InvalidInput(format!(
                "residual has shape {:?}, the layer's output {expected:?}",
                residual.dims()
            )));
        }
        with_f32_values(&residual, |r| {
            self.forward_then(x, |out| add_assign(out, r))
        })?
    }

    /// [`Self::forward`], then `epilogue` on the output values in place (e.g. an activation).
    pub fn forward_then(&self, x: &Tensor, epilogue: impl FnOnce(&mut [f32])) -> Result<Tensor> {
        let dims = x.dims();
        let Some((&in_dim, lead)) = dims.split_last() else {
            return Err(ClipError::InvalidInput("linear layer on a scalar".into()));
        };
        if in_dim != self.in_dim() {
            return Err(ClipError::InvalidInput(format!(
                "linear layer expects {} input features, got {in_dim}",
                self.in_dim()
            )));
        }
        let rows = lead.iter().product::<usize>();
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let mut out = vec![0f32; rows * self.out_dim()];
        with_f32_values(&x, |input| {
            let bias = self.bias.as_deref();
            match &self.weight {
                LinearWeight::F32(w) => linear_f32(input, rows, w, bias, &mut out),
                LinearWeight::Bf16(w) => linear_bf16(input, rows, w, bias, &mut out),
                LinearWeight::Int8(w) => linear_int8(input, rows, w, bias, &mut out),
            }
        })?;
        epilogue(&mut out);
        let mut out_shape = lead.to_vec();
        out_shape.push(self.out_dim());
        Ok(Tensor::from_vec(out, out_shape, x.device())?)
    }
}
