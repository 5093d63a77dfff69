//! Transformer building blocks shared by both towers, mirroring transformers' `CLIPAttention`, `CLIPMLP`,
//! `CLIPEncoderLayer` and `CLIPEncoder` (pre-LayerNorm residual blocks) and PyTorch's `nn.LayerNorm`/`nn.Linear`.

use std::sync::Arc;

use candle_core::{DType, Device, Storage, Tensor};

use crate::checkpoint::Weights;
use crate::error::{ClipError, Result};
use crate::kernels::attention::{attention, quick_gelu, AttentionShape};
use crate::kernels::bf16_gemm::{linear_bf16, PackedBf16};
use crate::kernels::f32_gemm::{linear_f32, PackedF32};
use crate::kernels::int8_gemm::{linear_int8, PackedInt8};
use crate::kernels::layer_norm::layer_norm;
use crate::kernels::residual::add_assign;
use crate::model::config::{Activation, Precision};

/// `nn.LayerNorm` over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f64,
}

impl LayerNorm {
    /// Reads `weight` and `bias`, both `[dim]`.
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        let values = |name: &str| -> Result<Vec<f32>> {
            Ok(w.take(name, &[dim])?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?)
        };
        Ok(Self {
            weight: values("weight")?,
            bias: values("bias")?,
            eps,
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
}

/// `nn.Linear`: `y = x W^T + b` with `W` stored `[out, in]` as PyTorch does. The weight is packed once for the
/// GEMM kernels of the model's [`Precision`] (f32 as loaded; bf16 or int8 after [`Linear::set_precision`]).
#[derive(Debug, Clone)]
pub struct Linear {
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
    /// Reads `weight` `[out, in]` and `bias` `[out]`, packed in `w`'s precision.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        let bias = w.with_values("bias", &[out_dim], <[f32]>::to_vec)?;
        w.with_values("weight", &[out_dim, in_dim], |values| {
            Self::from_values(values, out_dim, in_dim, Some(bias), w.precision())
        })
    }

    /// Reads only `weight` (CLIP's projections have no bias), packed in `w`'s precision.
    pub fn load_no_bias(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        w.with_values("weight", &[out_dim, in_dim], |values| {
            Self::from_values(values, out_dim, in_dim, None, w.precision())
        })
    }

    /// Builds a layer from tensors already in hand (`weight` `[out, in]`, `bias` `[out]`).
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let bias = match bias {
            Some(b) => Some(b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        // Packed straight from the tensor's storage: no intermediate copy of the weight.
        let weight = weight.to_dtype(DType::F32)?.contiguous()?;
        with_f32_values(&weight, |values| {
            Self::from_values(values, out_dim, in_dim, bias, Precision::F32)
        })
    }

    /// Packs `values` (`[out, in]` row-major) for `precision`'s kernel.
    fn from_values(
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

    /// The weight `[out, in]` row-major as the kernel sees it (rounded or dequantised after a conversion).
    pub fn weight_values(&self) -> Vec<f32> {
        match &self.weight {
            LinearWeight::F32(w) => w.unpack(),
            LinearWeight::Bf16(w) => w.unpack(),
            LinearWeight::Int8(w) => w.unpack(),
        }
    }

    pub fn bias_values(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// Re-packs the weight for `precision`'s kernel: bf16 rounds it, int8 quantises it per output channel
    /// (meant to be called once, on f32 weights).
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        let (n, k) = (self.out_dim(), self.in_dim());
        match (precision, &self.weight) {
            (Precision::F32, LinearWeight::F32(_))
            | (Precision::Bf16, LinearWeight::Bf16(_))
            | (Precision::Int8, LinearWeight::Int8(_)) => {}
            _ => {
                let bias = self.bias.take();
                *self = Self::from_values(&self.weight_values(), n, k, bias, precision);
            }
        }
        Ok(())
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

/// Calls `f` with the values of a contiguous f32 CPU tensor, without copying them out.
fn with_f32_values<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(ClipError::InvalidInput(
            "the CPU kernels need tensors on the CPU".into(),
        ));
    };
    let values = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(ClipError::InvalidInput("non-contiguous tensor".into()));
    };
    Ok(f(&values[start..end]))
}

/// Applies `act` element-wise.
pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::QuickGelu if x.dtype() == DType::F32 && x.device().is_cpu() => {
            quick_gelu_f32(x)?
        }
        Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?)?,
        Activation::Gelu => x.gelu_erf()?,
        // candle's `gelu` is the tanh approximation.
        Activation::GeluTanh => x.gelu()?,
    })
}

/// QuickGELU in one vectorised pass over the values, split across the cores (candle's three separate ops each
/// read and write the whole activation, single-threaded for sigmoid).
fn quick_gelu_f32(x: &Tensor) -> Result<Tensor> {
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    quick_gelu(&mut values);
    Ok(Tensor::from_vec(values, x.shape(), x.device())?)
}

/// `CLIPMLP`: fc1 -> activation -> fc2.
#[derive(Debug, Clone)]
pub struct Mlp {
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

    /// Builds the MLP from layers already loaded (e.g. OpenAI's `c_fc` / `c_proj`).
    pub fn from_parts(fc1: Linear, fc2: Linear, activation: Activation) -> Self {
        Self {
            fc1,
            fc2,
            activation,
        }
    }

    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.fc1.set_precision(precision)?;
        self.fc2.set_precision(precision)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.hidden(x)?)
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

/// `CLIPAttention`: multi-head self-attention with separate, biased q/k/v/out projections.
///
/// At load time q, k and v are stacked into one `[3 * width, width]` projection (one GEMM instead of three) and
/// the `head_dim^-0.5` scale is folded into the query rows, which is `q * scale` computed ahead of time.
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
    /// `Some(head_dim^-0.5)` when the scale is applied to the scores rather than folded into the q rows (the
    /// bf16 path rounds the checkpoint's own weights, as bf16 autocast does, not the scaled ones).
    score_scale: Option<f64>,
}

impl Attention {
    /// Reads `q_proj`, `k_proj`, `v_proj` and `out_proj` (`weight` `[width, width]`, `bias` `[width]`), packed
    /// in `w`'s precision.
    pub fn load(w: &Weights, width: usize, heads: usize) -> Result<Self> {
        let head_dim = width / heads;
        let scale = (head_dim as f32).powf(-0.5);
        // bf16 keeps the checkpoint's own q rows (see `set_precision`) and scales the scores instead.
        let score_scale = (w.precision() == Precision::Bf16).then_some(f64::from(scale));
        let q_factor = if score_scale.is_some() { 1.0 } else { scale };
        // q, k and v stacked straight from the checkpoint, q scaled on the way.
        let mut weight = Vec::with_capacity(3 * width * width);
        let mut bias = Vec::with_capacity(3 * width);
        for (name, factor) in [("q_proj", q_factor), ("k_proj", 1.0), ("v_proj", 1.0)] {
            let p = w.pp(name);
            p.with_values("weight", &[width, width], |v| {
                weight.extend(v.iter().map(|x| x * factor))
            })?;
            p.with_values("bias", &[width], |v| {
                bias.extend(v.iter().map(|x| x * factor))
            })?;
        }
        Ok(Self {
            qkv: Linear::from_values(&weight, 3 * width, width, Some(bias), w.precision()),
            out_proj: Linear::load(&w.pp("out_proj"), width, width)?,
            heads,
            head_dim,
            score_scale,
        })
    }

    /// Reads PyTorch `nn.MultiheadAttention`'s layout (OpenAI / open_clip checkpoints): the packed
    /// `in_proj_weight` `[3 * width, width]` (q, k, v rows in that order), `in_proj_bias` `[3 * width]` and
    /// `out_proj.{weight,bias}`. The packed rows are already the stacked projection this type uses.
    pub fn load_packed(w: &Weights, width: usize, heads: usize) -> Result<Self> {
        let head_dim = width / heads;
        let scale = (head_dim as f64).powf(-0.5);
        let weight = w.take("in_proj_weight", &[3 * width, width])?;
        let bias = w.take("in_proj_bias", &[3 * width])?;
        let weight = Tensor::cat(
            &[
                &weight.narrow(0, 0, width)?.affine(scale, 0.0)?,
                &weight.narrow(0, width, 2 * width)?,
            ],
            0,
        )?;
        let bias = Tensor::cat(
            &[
                &bias.narrow(0, 0, width)?.affine(scale, 0.0)?,
                &bias.narrow(0, width, 2 * width)?,
            ],
            0,
        )?;
        Ok(Self {
            qkv: Linear::from_parts(weight, Some(bias))?,
            out_proj: Linear::load(&w.pp("out_proj"), width, width)?,
            heads,
            head_dim,
            score_scale: None,
        })
    }

    /// Re-packs the projections for `precision`. bf16 rounds the checkpoint's own q rows, as bf16 autocast
    /// does, so the folded `head_dim^-0.5` is taken back out of them and applied to the scores instead.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if precision == Precision::Bf16 && self.score_scale.is_none() {
            let scale = (self.head_dim as f32).powf(-0.5);
            let width = self.heads * self.head_dim;
            let mut weight = self.qkv.weight_values();
            let mut bias = self.qkv.bias_values().map(<[f32]>::to_vec);
            for v in &mut weight[..width * width] {
                *v /= scale;
            }
            if let Some(b) = &mut bias {
                for v in &mut b[..width] {
                    *v /= scale;
                }
            }
            self.qkv = Linear::from_values(&weight, 3 * width, width, bias, Precision::F32);
            self.score_scale = Some(f64::from(scale));
        }
        self.qkv.set_precision(precision)?;
        self.out_proj.set_precision(precision)
    }

    /// `x`: `[batch, seq, width]`; `mask`: additive `[seq, seq]` (e.g. [`causal_mask`]) or `None`.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let heads = self.heads_output(x, mask)?;
        self.out_proj.forward(&heads)
    }

    /// `residual + attention(x)`, the sum formed in the output projection's buffer.
    pub fn forward_residual(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor> {
        let heads = self.heads_output(x, mask)?;
        self.out_proj.forward_residual(&heads, residual)
    }

    /// The heads' outputs side by side, `[batch, seq, width]`, before the output projection.
    fn heads_output(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, tokens, width) = x.dims3()?;
        // [batch, tokens, 3 * width]: per token, q of every head, then k, then v.
        let qkv = self.qkv.forward(x)?;
        let mask = match mask {
            Some(m) => Some(m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        let shape = AttentionShape {
            batch,
            tokens,
            heads: self.heads,
            head_dim: self.head_dim,
        };
        let mut y = vec![0f32; batch * tokens * width];
        with_f32_values(&qkv, |values| {
            attention(
                values,
                shape,
                self.score_scale.unwrap_or(1.0) as f32,
                mask.as_deref(),
                &mut y,
            )
        })?;
        Ok(Tensor::from_vec(y, (batch, tokens, width), x.device())?)
    }
}

/// Additive causal mask `[len, len]`: 0 on and below the diagonal, -inf above (a token sees itself and earlier ones).
pub fn causal_mask(len: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (len, len), device)?)
}

/// `CLIPEncoderLayer`: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

/// The shape of one tower's transformer, shared by both towers' configs.
#[derive(Debug, Clone, Copy)]
pub struct EncoderShape {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

impl EncoderLayer {
    pub fn load(w: &Weights, s: &EncoderShape) -> Result<Self> {
        Ok(Self {
            layer_norm1: LayerNorm::load(&w.pp("layer_norm1"), s.width, s.layer_norm_eps)?,
            self_attn: Attention::load(&w.pp("self_attn"), s.width, s.heads)?,
            layer_norm2: LayerNorm::load(&w.pp("layer_norm2"), s.width, s.layer_norm_eps)?,
            mlp: Mlp::load(&w.pp("mlp"), s.width, s.intermediate_size, s.activation)?,
        })
    }

    /// Builds a layer from parts already loaded (e.g. OpenAI's `ResidualAttentionBlock`: `ln_1`, `attn`, `ln_2`,
    /// `mlp`).
    pub fn from_parts(
        layer_norm1: LayerNorm,
        self_attn: Attention,
        layer_norm2: LayerNorm,
        mlp: Mlp,
    ) -> Self {
        Self {
            layer_norm1,
            self_attn,
            layer_norm2,
            mlp,
        }
    }

    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.self_attn.set_precision(precision)?;
        self.mlp.set_precision(precision)
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = self
            .self_attn
            .forward_residual(&self.layer_norm1.forward(x)?, mask, x)?;
        self.mlp
            .forward_residual(&self.layer_norm2.forward(&x)?, &x)
    }
}

/// `CLIPEncoder`: the stack of layers, read from `layers.{i}.*`.
#[derive(Debug, Clone)]
pub struct Encoder {
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

    /// Builds the stack from layers already loaded (e.g. OpenAI's `transformer.resblocks`).
    pub fn from_layers(layers: Vec<EncoderLayer>) -> Self {
        Self { layers }
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.layers
            .iter_mut()
            .try_for_each(|layer| layer.set_precision(precision))
    }

    /// Runs the first `n` layers (all of them when `n` is `None`); intermediate states serve e.g. clip-skip.
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn causal_mask_shape() {
        let m = causal_mask(3, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0], vec![0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert_eq!(m[2], vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn layer_norm_large_mean() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1000.0f32, 1001.0, 1002.0, 1003.0]], &dev).unwrap();
        let ln = LayerNorm {
            weight: vec![1.0; 4],
            bias: vec![0.0; 4],
            eps: 1e-5,
        };
        let y = ln.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        // torch 2.15 `nn.functional.layer_norm` of the same row.
        let expect = [-1.341_635_5f32, -0.447_211_83, 0.447_211_83, 1.341_635_5];
        for (e, g) in expect.iter().zip(&y[0]) {
            assert!((e - g).abs() < 1e-5, "{e} vs {g}");
        }
    }
}
