//! OpenAI's ModifiedResNet image tower (clip `model.py`: `ModifiedResNet`, `Bottleneck`, `AttentionPool2d`;
//! open_clip's `modified_resnet.py` is the same network): a 3-convolution stem with an average pool, bottleneck
//! stages whose strided blocks average-pool before the 3rd conv and in the shortcut (anti-aliasing), BatchNorm
//! in eval mode, and attention pooling whose query is the mean of the feature map prepended as a token.
//!
//! Weights are read under OpenAI's names (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`,
//! `attnpool.q_proj`, ...), which the model's layout keeps for this tower (transformers has no ResNet CLIP). Each BatchNorm is folded into the conv before it at load time: eval-mode BatchNorm
//! is the per-channel affine map `(x - mean) / sqrt(var + eps) * w + b`, so it becomes a scaled kernel plus a
//! bias, the same function with one pass less.

use candle_core::{Tensor, D};

use crate::error::{ClipError, Result};
use crate::model::config::ResNetConfig;
use crate::model::nn::Linear;
use crate::weights::Weights;

/// PyTorch `nn.BatchNorm2d`'s default epsilon, used by every CLIP ResNet.
const BN_EPS: f64 = 1e-5;

/// A bias-free conv followed by an eval-mode BatchNorm, folded into one conv with bias.
#[derive(Debug, Clone)]
struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    stride: usize,
}

impl ConvBn {
    /// Reads `conv.weight` `[out, in, k, k]` and `bn.{weight,bias,running_mean,running_var}` `[out]`.
    fn load(
        conv: &Weights,
        bn: &Weights,
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: usize,
    ) -> Result<Self> {
        let weight = conv.take("weight", &[out_c, in_c, k, k])?;
        let gamma = bn.take("weight", &[out_c])?;
        let beta = bn.take("bias", &[out_c])?;
        let mean = bn.take("running_mean", &[out_c])?;
        let var = bn.take("running_var", &[out_c])?;
        bn.store().skip(&bn.key("num_batches_tracked"));
        let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let bias = (beta - (&mean * &scale)?)?;
        let weight = weight.broadcast_mul(&scale.reshape((out_c, 1, 1, 1))?)?;
        Ok(Self {
            weight,
            bias,
            padding: k / 2,
            stride,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        let c = self.bias.dim(0)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?)
    }
}

/// `Bottleneck`: 1x1 -> 3x3 -> (avgpool) -> 1x1 with a shortcut, expansion 4.
#[derive(Debug, Clone)]
struct Bottleneck {
    c1: ConvBn,
    c2: ConvBn,
    c3: ConvBn,
    stride: usize,
    /// `downsample`: avgpool(stride) -> 1x1 conv -> BatchNorm, present when the shape changes.
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn load(w: &Weights, inplanes: usize, planes: usize, stride: usize) -> Result<Self> {
        let out = planes * 4;
        let downsample = if stride > 1 || inplanes != out {
            let d = w.pp("downsample");
            Some(ConvBn::load(&d.pp(0), &d.pp(1), inplanes, out, 1, 1)?)
        } else {
            None
        };
        Ok(Self {
            c1: ConvBn::load(&w.pp("conv1"), &w.pp("bn1"), inplanes, planes, 1, 1)?,
            c2: ConvBn::load(&w.pp("conv2"), &w.pp("bn2"), planes, planes, 3, 1)?,
            c3: ConvBn::load(&w.pp("conv3"), &w.pp("bn3"), planes, out, 1, 1)?,
            stride,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.c1.forward(x)?.relu()?;
        let out = self.c2.forward(&out)?.relu()?;
        let out = if self.stride > 1 {
            out.avg_pool2d(self.stride)?
        } else {
            out
        };
        let out = self.c3.forward(&out)?;
        let identity = match &self.downsample {
            Some(d) => {
                let x = if self.stride > 1 {
                    x.avg_pool2d(self.stride)?
                } else {
                    x.clone()
                };
                d.forward(&x)?
            }
            None => x.clone(),
        };
        Ok((out + identity)?.relu()?)
    }
}

/// `AttentionPool2d`: one query (the mean token) attending over the mean token and every position.
#[derive(Debug, Clone)]
struct AttentionPool {
    positional_embedding: Tensor,
    /// q rows (pre-scaled by `head_dim^-0.5`), then k, then v: one GEMM over all tokens.
    qkv: Linear,
    c_proj: Linear,
    heads: usize,
    embed_dim: usize,
}

impl AttentionPool {
    fn load(w: &Weights, c: &ResNetConfig) -> Result<Self> {
        let e = c.embed_dim();
        let g = c.grid_size();
        let scale = ((e / c.heads) as f32).powf(-0.5);
        // q, k and v stacked into one projection, q scaled on the way.
        let mut weight = Vec::with_capacity(3 * e * e);
        let mut bias = Vec::with_capacity(3 * e);
        for (name, factor) in [("q_proj", scale), ("k_proj", 1.0), ("v_proj", 1.0)] {
            let p = w.pp(name);
            p.with_values("weight", &[e, e], |v| {
                weight.extend(v.iter().map(|x| x * factor))
            })?;
            p.with_values("bias", &[e], |v| bias.extend(v.iter().map(|x| x * factor)))?;
        }
        Ok(Self {
            positional_embedding: w.take("positional_embedding", &[g * g + 1, e])?,
            qkv: Linear::from_values(&weight, 3 * e, e, Some(bias), w.precision()),
            c_proj: Linear::load(&w.pp("c_proj"), e, c.output_dim)?,
            heads: c.heads,
            embed_dim: e,
        })
    }

    /// `x`: `[b, e, h, w]` -> `[b, output_dim]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, e, h, w) = x.dims4()?;
        let t = h * w + 1;
        if t != self.positional_embedding.dim(0)? {
            return Err(ClipError::InvalidInput(format!(
                "feature map {h}x{w} does not match the attention pool's {} positions",
                self.positional_embedding.dim(0)?
            )));
        }
        let tokens = x.flatten_from(2)?.transpose(1, 2)?; // [b, hw, e]
        let mean = tokens.mean_keepdim(1)?;
        let tokens =
            Tensor::cat(&[&mean, &tokens], 1)?.broadcast_add(&self.positional_embedding)?;
        let (heads, hd) = (self.heads, self.embed_dim / self.heads);
        let qkv = self.qkv.forward(&tokens)?; // [b, t, 3e]
        let q = qkv
            .narrow(1, 0, 1)?
            .narrow(2, 0, e)?
            .reshape((b, 1, heads, hd))?
            .transpose(1, 2)?
            .contiguous()?; // [b, heads, 1, hd]
        let k = qkv
            .narrow(2, e, e)?
            .reshape((b, t, heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let v = qkv
            .narrow(2, 2 * e, e)?
            .reshape((b, t, heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let scores = q.matmul(&k.transpose(2, 3)?)?; // [b, heads, 1, t]
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let y = probs.matmul(&v)?.reshape((b, e))?; // heads are contiguous in order
        self.c_proj.forward(&y)
    }
}

/// The ModifiedResNet tower up to the attention pool's output `[batch, output_dim]` (already projected).
#[derive(Debug, Clone)]
pub(crate) struct ModifiedResNet {
    config: ResNetConfig,
    stem: [ConvBn; 3],
    stages: Vec<Vec<Bottleneck>>,
    attnpool: AttentionPool,
}

impl ModifiedResNet {
    /// Reads the tower from `w` (`vision_model`). The attention pool's projections take the store's precision;
    /// the convolutions stay f32.
    pub fn load(w: &Weights, config: &ResNetConfig) -> Result<Self> {
        let c = config;
        config.validate().map_err(|reason| ClipError::Config {
            path: w.store().path().to_path_buf(),
            reason,
        })?;
        let half = c.width / 2;
        let stem = [
            ConvBn::load(&w.pp("conv1"), &w.pp("bn1"), 3, half, 3, 2)?,
            ConvBn::load(&w.pp("conv2"), &w.pp("bn2"), half, half, 3, 1)?,
            ConvBn::load(&w.pp("conv3"), &w.pp("bn3"), half, c.width, 3, 1)?,
        ];
        let mut inplanes = c.width;
        let mut stages = Vec::with_capacity(4);
        for (i, &blocks) in c.layers.iter().enumerate() {
            let planes = c.width << i;
            let stage = w.pp(format!("layer{}", i + 1));
            let mut list = Vec::with_capacity(blocks);
            for j in 0..blocks {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                list.push(Bottleneck::load(&stage.pp(j), inplanes, planes, stride)?);
                inplanes = planes * 4;
            }
            stages.push(list);
        }
        Ok(Self {
            config: config.clone(),
            stem,
            stages,
            attnpool: AttentionPool::load(&w.pp("attnpool"), c)?,
        })
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// `pixels` `[batch, 3, image_size, image_size]` (f32) -> `[batch, output_dim]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let mut x = pixels.clone();
        for conv in &self.stem {
            x = conv.forward(&x)?.relu()?;
        }
        x = x.avg_pool2d(2)?;
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x)?;
            }
        }
        self.attnpool.forward(&x)
    }
}
