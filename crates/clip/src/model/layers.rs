//! Transformer building blocks shared by both towers, mirroring transformers' `CLIPAttention`, `CLIPMLP`,
//! `CLIPEncoderLayer` and `CLIPEncoder` (pre-LayerNorm residual blocks) and PyTorch's `nn.LayerNorm`/`nn.Linear`.

use candle_core::{Device, Tensor, D};

use crate::checkpoint::Weights;
use crate::error::Result;
use crate::model::config::Activation;

/// `nn.LayerNorm` over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Reads `weight` and `bias`, both `[dim]`.
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.take("weight", &[dim])?,
            bias: w.take("bias", &[dim])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Two-pass variance (centre first): the one-pass E[x^2] - E[x]^2 loses precision on residual streams
        // whose mean is large next to their spread.
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_std = (var + self.eps)?.sqrt()?.recip()?;
        Ok(centred
            .broadcast_mul(&inv_std)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// `nn.Linear`: `y = x W^T + b` with `W` stored `[out, in]` as PyTorch does.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Reads `weight` `[out, in]` and `bias` `[out]`.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            weight: w.take("weight", &[out_dim, in_dim])?,
            bias: Some(w.take("bias", &[out_dim])?),
        })
    }

    /// Reads only `weight` (CLIP's projections have no bias).
    pub fn load_no_bias(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            weight: w.take("weight", &[out_dim, in_dim])?,
            bias: None,
        })
    }

    /// Builds a layer from tensors already in hand (`weight` `[out, in]`).
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Applies the layer to the last dimension of `x` as one GEMM over all leading dimensions.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let Some((&in_dim, lead)) = dims.split_last() else {
            return Ok(x.matmul(&self.weight.t()?)?);
        };
        let rows = lead.iter().product::<usize>();
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_shape = lead.to_vec();
        out_shape.push(self.out_dim());
        Ok(y.reshape(out_shape)?)
    }
}

/// Applies `act` element-wise.
pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?)?,
        Activation::Gelu => x.gelu_erf()?,
        // candle's `gelu` is the tanh approximation.
        Activation::GeluTanh => x.gelu()?,
    })
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

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = activate(&h, self.activation)?;
        self.fc2.forward(&h)
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
}

impl Attention {
    /// Reads `q_proj`, `k_proj`, `v_proj` and `out_proj` (`weight` `[width, width]`, `bias` `[width]`).
    pub fn load(w: &Weights, width: usize, heads: usize) -> Result<Self> {
        let head_dim = width / heads;
        let scale = (head_dim as f64).powf(-0.5);
        let take = |name: &str| -> Result<(Tensor, Tensor)> {
            let p = w.pp(name);
            Ok((
                p.take("weight", &[width, width])?,
                p.take("bias", &[width])?,
            ))
        };
        let (qw, qb) = take("q_proj")?;
        let (kw, kb) = take("k_proj")?;
        let (vw, vb) = take("v_proj")?;
        let weight = Tensor::cat(&[&qw.affine(scale, 0.0)?, &kw, &vw], 0)?;
        let bias = Tensor::cat(&[&qb.affine(scale, 0.0)?, &kb, &vb], 0)?;
        Ok(Self {
            qkv: Linear::from_parts(weight, Some(bias)),
            out_proj: Linear::load(&w.pp("out_proj"), width, width)?,
            heads,
            head_dim,
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
            qkv: Linear::from_parts(weight, Some(bias)),
            out_proj: Linear::load(&w.pp("out_proj"), width, width)?,
            heads,
            head_dim,
        })
    }

    /// `x`: `[batch, seq, width]`; `mask`: additive `[seq, seq]` (e.g. [`causal_mask`]) or `None`.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, width) = x.dims3()?;
        // [b, t, 3 * width] -> [3, b, heads, t, head_dim]: one copy puts every head of q, k and v in place.
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, t, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let q = qkv.get(0)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        // [b, heads, t, head_dim] -> [b, t, width]
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, width))?;
        self.out_proj.forward(&y)
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

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self
            .self_attn
            .forward(&self.layer_norm1.forward(x)?, mask)?;
        let x = (x + h)?;
        let h = self.mlp.forward(&self.layer_norm2.forward(&x)?)?;
        Ok((x + h)?)
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
    use candle_core::DType;

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
            weight: Tensor::ones(4, DType::F32, &dev).unwrap(),
            bias: Tensor::zeros(4, DType::F32, &dev).unwrap(),
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
