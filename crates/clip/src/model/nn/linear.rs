//! `nn.Linear`: `y = x W^T + b` with `W` stored `[out, in]` as PyTorch does, the weight packed once, at load,
//! for the GEMM kernel of the store's [`Precision`].

use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::with_f32_values;
use crate::error::{ClipError, Result};
use crate::kernels::bf16_gemm::{linear_bf16, linear_bf16_new, PackedBf16};
use crate::kernels::f32_gemm::{linear_f32, linear_f32_new, PackedF32};
use crate::kernels::int8_gemm::{linear_int8, linear_int8_new, PackedInt8};
use crate::kernels::linear_grad::linear_grads;
use crate::kernels::residual::add_assign;
use crate::kernels::Precision;
use crate::model::params::{Grads, Params};
use crate::weights::Weights;

#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: LinearWeight,
    bias: Option<Vec<f32>>,
    /// The name prefix its `weight` / `bias` were read under (for training's backward pass).
    prefix: String,
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
        let linear = w.with_values("weight", &[out_dim, in_dim], |values| {
            Self::from_values(values, out_dim, in_dim, Some(bias), w.precision())
        })?;
        Ok(linear.named(w.key("")))
    }

    /// Reads only `weight` (CLIP's projections have no bias).
    pub fn load_no_bias(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        let linear = w.with_values("weight", &[out_dim, in_dim], |values| {
            Self::from_values(values, out_dim, in_dim, None, w.precision())
        })?;
        Ok(linear.named(w.key("")))
    }

    fn named(mut self, prefix: String) -> Self {
        self.prefix = prefix;
        self
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
        Self {
            weight,
            bias,
            prefix: String::new(),
        }
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
        let mut out = with_f32_values(&x, |input| match &self.weight {
            LinearWeight::F32(w) => linear_f32_new(input, rows, w, self.bias.as_deref()),
            LinearWeight::Bf16(w) => linear_bf16_new(input, rows, w, self.bias.as_deref()),
            LinearWeight::Int8(w) => linear_int8_new(input, rows, w, self.bias.as_deref()),
        })?;
        epilogue(&mut out);
        let mut out_shape = lead.to_vec();
        out_shape.push(self.out_dim());
        Ok(Tensor::from_vec(out, out_shape, x.device())?)
    }

    /// The layer on `rows` rows of `in_dim` values (row-major) into `out` (`rows * out_dim` values): the GEMM
    /// without tensors, for callers that keep their own buffers (the ResNet's convolutions).
    pub fn forward_values_into(&self, input: &[f32], rows: usize, out: &mut [f32]) {
        let bias = self.bias.as_deref();
        match &self.weight {
            LinearWeight::F32(w) => linear_f32(input, rows, w, bias, out),
            LinearWeight::Bf16(w) => linear_bf16(input, rows, w, bias, out),
            LinearWeight::Int8(w) => linear_int8(input, rows, w, bias, out),
        }
    }

    /// Training's backward pass through a layer loaded by [`Self::load`] / [`Self::load_no_bias`]: given the
    /// input `x` of the forward pass and the gradient `dy` of its output, adds the weight (and bias) gradients
    /// under the layer's names and returns the gradient of `x`.
    pub fn backward(
        &self,
        x: &Tensor,
        dy: &Tensor,
        params: &Params,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let weight_name = format!("{}weight", self.prefix);
        let bias_name = self.bias.as_ref().map(|_| format!("{}bias", self.prefix));
        let weight = params.get(&weight_name)?;
        linear_backward(x, dy, weight, &weight_name, bias_name.as_deref(), grads)
    }
}

/// `y = x W^T + b` backwards for any leading dimensions: `dW = dy^T x`, `db = sum(dy)`, `dx = dy W`. `weight`
/// is `[out, in]` as stored; the gradients are added to `grads` under the given names.
pub(crate) fn linear_backward(
    x: &Tensor,
    dy: &Tensor,
    weight: &Tensor,
    weight_name: &str,
    bias_name: Option<&str>,
    grads: &mut Grads,
) -> Result<Tensor> {
    let (out_dim, in_dim) = weight.dims2()?;
    let rows = x.elem_count() / in_dim.max(1);
    let (x2, dy2) = (x.contiguous()?, dy.contiguous()?);
    let g = with_f32_values(&x2, |xv| {
        with_f32_values(&dy2, |dyv| {
            with_f32_values(weight, |wv| {
                linear_grads(xv, dyv, wv, rows, in_dim, out_dim, bias_name.is_some())
            })
        })
    })???;
    let device = x.device();
    grads.add(
        weight_name,
        &Tensor::from_vec(g.dw, (out_dim, in_dim), device)?,
    )?;
    if let (Some(name), Some(db)) = (bias_name, g.db) {
        grads.add(name, &Tensor::from_vec(db, out_dim, device)?)?;
    }
    Ok(Tensor::from_vec(g.dx, x.shape(), device)?)
}
