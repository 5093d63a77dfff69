//! OpenAI's ModifiedResNet image tower (clip `model.py`: `ModifiedResNet`, `Bottleneck`, `AttentionPool2d`;
//! open_clip's `modified_resnet.py` is the same network): a 3-convolution stem with an average pool, bottleneck
//! stages whose strided blocks average-pool before the 3rd conv and in the shortcut (anti-aliasing), BatchNorm
//! in eval mode, and attention pooling whose query is the mean of the feature map prepended as a token.
//!
//! Weights are read under OpenAI's names (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`,
//! `attnpool.q_proj`, ...), which the model's layout keeps for this tower (transformers has no ResNet CLIP). Each BatchNorm is folded into the conv before it at load time: eval-mode BatchNorm
//! is the per-channel affine map `(x - mean) / sqrt(var + eps) * w + b`, so it becomes a scaled kernel plus a
//! bias, the same function with one pass less.

use candle_core::{Device, Tensor, D};

use crate::error::{ClipError, Result};
use crate::kernels::activation::relu;
use crate::kernels::conv::{
    avg_pool, im2col, nchw_to_nhwc, pooled_shape, reorder_conv_weight, ConvGeometry, MapShape,
    Scratch,
};
use crate::kernels::residual::add_relu_assign;
use crate::kernels::Precision;
use crate::model::config::ResNetConfig;
use crate::model::nn::{with_f32_values, Linear};
use crate::weights::Weights;

/// PyTorch `nn.BatchNorm2d`'s default epsilon, used by every CLIP ResNet.
const BN_EPS: f32 = 1e-5;

/// Input values (im2col or the map itself) multiplied per GEMM call: the GEMM packs its activations into a buffer
/// of about this size, and a block that stays a few MiB is served from the allocator's reused memory and the
/// caches, where one call over a whole batch-32 map would unfold (and the kernel zero) half a gigabyte.
const BLOCK_VALUES: usize = 1 << 20;
/// At least this many rows per GEMM call, so wide layers still amortise the weights' trip through the caches.
const MIN_BLOCK_ROWS: usize = 192;

/// A bias-free conv followed by an eval-mode BatchNorm, folded into one conv with bias and run as a GEMM on the
/// packed kernels of the store's precision (channels-last maps; see [`crate::kernels::conv`]).
#[derive(Debug, Clone)]
struct ConvBn {
    linear: Linear,
    geometry: ConvGeometry,
    out_c: usize,
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
        let vector = |name: &str| bn.with_values(name, &[out_c], <[f32]>::to_vec);
        let (gamma, beta) = (vector("weight")?, vector("bias")?);
        let (mean, var) = (vector("running_mean")?, vector("running_var")?);
        bn.store().skip(&bn.key("num_batches_tracked"));
        let scale: Vec<f32> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + BN_EPS).sqrt())
            .collect();
        let bias = beta
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        conv.with_values("weight", &[out_c, in_c, k, k], |weight| {
            Self::folded(weight, &scale, bias, in_c, k, stride, conv.precision())
        })
    }

    /// The conv `weight` `[out, in, k, k]` scaled per output channel by `scale`, plus `bias`.
    fn folded(
        weight: &[f32],
        scale: &[f32],
        bias: Vec<f32>,
        in_c: usize,
        k: usize,
        stride: usize,
        precision: Precision,
    ) -> Self {
        let out_c = scale.len();
        let per_filter = in_c * k * k;
        let scaled: Vec<f32> = weight
            .chunks_exact(per_filter)
            .zip(scale)
            .flat_map(|(filter, &s)| filter.iter().map(move |w| w * s))
            .collect();
        let reordered = reorder_conv_weight(&scaled, out_c, in_c, k);
        Self {
            linear: Linear::from_values(&reordered, out_c, per_filter, Some(bias), precision),
            geometry: ConvGeometry {
                kernel: k,
                stride,
                padding: k / 2,
            },
            out_c,
        }
    }

    /// The convolution of a channels-last map (whose channels the caller has matched to the weight's), into a
    /// buffer from `scratch`.
    fn forward(&self, x: &[f32], shape: MapShape, scratch: &mut Scratch) -> (Vec<f32>, MapShape) {
        let out_shape = self.geometry.out_shape(shape, self.out_c);
        let rows = out_shape.pixels();
        let mut out = scratch.take(out_shape.values());
        let patch = self.geometry.patch_len(shape.channels);
        let block_rows = (BLOCK_VALUES / patch).max(MIN_BLOCK_ROWS).min(rows.max(1));
        let mut cols = if self.geometry.is_pointwise() {
            Vec::new()
        } else {
            scratch.take(block_rows * patch)
        };
        for first in (0..rows).step_by(block_rows) {
            let n = block_rows.min(rows - first);
            let input = if self.geometry.is_pointwise() {
                &x[first * patch..(first + n) * patch]
            } else {
                let block = &mut cols[..n * patch];
                im2col(x, shape, self.geometry, first, block);
                block
            };
            let dst = &mut out[first * self.out_c..(first + n) * self.out_c];
            self.linear.forward_values_into(input, n, dst);
        }
        scratch.give(cols);
        (out, out_shape)
    }

    /// [`Self::forward`] then ReLU.
    fn forward_relu(
        &self,
        x: &[f32],
        shape: MapShape,
        scratch: &mut Scratch,
    ) -> (Vec<f32>, MapShape) {
        let (mut out, out_shape) = self.forward(x, shape, scratch);
        relu(&mut out);
        (out, out_shape)
    }
}

/// `AvgPool2d(s)` into a buffer from `scratch`.
fn pool(x: &[f32], shape: MapShape, s: usize, scratch: &mut Scratch) -> (Vec<f32>, MapShape) {
    let out_shape = pooled_shape(shape, s);
    let mut out = scratch.take(out_shape.values());
    avg_pool(x, shape, s, &mut out);
    (out, out_shape)
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

    /// The block on `x`, which it hands back to `scratch`.
    fn forward(&self, x: Vec<f32>, shape: MapShape, scratch: &mut Scratch) -> (Vec<f32>, MapShape) {
        let (a, s) = self.c1.forward_relu(&x, shape, scratch);
        let (b, s) = self.c2.forward_relu(&a, s, scratch);
        scratch.give(a);
        let (b, s) = if self.stride > 1 {
            let pooled = pool(&b, s, self.stride, scratch);
            scratch.give(b);
            pooled
        } else {
            (b, s)
        };
        let (mut out, out_shape) = self.c3.forward(&b, s, scratch);
        scratch.give(b);
        match &self.downsample {
            Some(d) => {
                let shortcut = if self.stride > 1 {
                    let (pooled, pooled_shape) = pool(&x, shape, self.stride, scratch);
                    let shortcut = d.forward(&pooled, pooled_shape, scratch).0;
                    scratch.give(pooled);
                    shortcut
                } else {
                    d.forward(&x, shape, scratch).0
                };
                add_relu_assign(&mut out, &shortcut);
                scratch.give(shortcut);
            }
            None => add_relu_assign(&mut out, &x),
        }
        scratch.give(x);
        (out, out_shape)
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

    /// `x`: the channels-last final map `[b, h, w, e]` -> `[b, output_dim]`.
    fn forward(&self, x: Vec<f32>, shape: MapShape) -> Result<Tensor> {
        let (b, e) = (shape.batch, shape.channels);
        let t = shape.height * shape.width + 1;
        if t != self.positional_embedding.dim(0)? {
            return Err(ClipError::InvalidInput(format!(
                "feature map {}x{} does not match the attention pool's {} positions",
                shape.height,
                shape.width,
                self.positional_embedding.dim(0)?
            )));
        }
        let tokens = Tensor::from_vec(x, (b, t - 1, e), &Device::Cpu)?;
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
    /// Reads the tower from `w` (`vision_model`). The convolutions and the attention pool's projections take the
    /// store's precision.
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
        let (batch, channels, height, width) = pixels.dims4()?;
        let size = self.config.image_size;
        if channels != 3 || height != size || width != size {
            return Err(ClipError::InvalidInput(format!(
                "the ResNet tower takes [batch, 3, {size}, {size}] pixels, got [{batch}, {channels}, {height}, {width}]"
            )));
        }
        let mut shape = MapShape {
            batch,
            height,
            width,
            channels,
        };
        let pixels = pixels.to_dtype(candle_core::DType::F32)?.contiguous()?;
        let mut x = with_f32_values(&pixels, |values| nchw_to_nhwc(values, shape))?;
        let mut scratch = Scratch::default();
        for conv in &self.stem {
            let (y, s) = conv.forward_relu(&x, shape, &mut scratch);
            scratch.give(std::mem::replace(&mut x, y));
            shape = s;
        }
        let (pooled, s) = pool(&x, shape, 2, &mut scratch);
        scratch.give(std::mem::replace(&mut x, pooled));
        shape = s;
        for stage in &self.stages {
            for block in stage {
                (x, shape) = block.forward(x, shape, &mut scratch);
            }
        }
        self.attnpool.forward(x, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::lcg;

    /// candle's own convolution (NCHW, `[out, in, k, k]`) plus the bias, as an independent reference.
    fn candle_conv(
        x: &[f32],
        shape: MapShape,
        w: &[f32],
        bias: &[f32],
        k: usize,
        stride: usize,
    ) -> Vec<f32> {
        let (b, c, h, wd) = (shape.batch, shape.channels, shape.height, shape.width);
        let out_c = bias.len();
        let x = Tensor::from_slice(x, (b, c, h, wd), &Device::Cpu).unwrap();
        let w = Tensor::from_slice(w, (out_c, c, k, k), &Device::Cpu).unwrap();
        let bias = Tensor::from_slice(bias, (1, out_c, 1, 1), &Device::Cpu).unwrap();
        let y = x.conv2d(&w, k / 2, stride, 1, 1).unwrap();
        // To channels-last, the layout the GEMM path returns.
        let y = y
            .broadcast_add(&bias)
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap();
        y.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn folded_conv_on_the_gemm_kernels_matches_candles_convolution() {
        // The stem's strided 3x3, the blocks' 3x3 and 1x1, odd sides; im2col blocks smaller than the map are
        // covered by the stem shape at batch 3 with many output pixels.
        for &(b, c, side, out_c, k, stride) in
            &[(3, 3, 23, 8, 3, 2), (2, 5, 9, 7, 3, 1), (2, 6, 7, 33, 1, 1)]
        {
            let shape = MapShape {
                batch: b,
                height: side,
                width: side,
                channels: c,
            };
            let x = lcg(shape.values(), 21);
            let w = lcg(out_c * c * k * k, 22);
            let bias = lcg(out_c, 23);
            let ones = vec![1f32; out_c];
            let conv = ConvBn::folded(&w, &ones, bias.clone(), c, k, stride, Precision::F32);
            let (got, got_shape) =
                conv.forward(&nchw_to_nhwc(&x, shape), shape, &mut Scratch::default());
            let want = candle_conv(&x, shape, &w, &bias, k, stride);
            assert_eq!(got_shape, conv.geometry.out_shape(shape, out_c));
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{b}x{c}x{side} k{k} s{stride}: {worst}");
        }
    }

    #[test]
    fn batch_norm_folding_scales_each_filter() {
        // A 1x1 conv with identity filters and scale s gives s * x + bias per channel.
        let (c, shape) = (
            2,
            MapShape {
                batch: 1,
                height: 2,
                width: 2,
                channels: 2,
            },
        );
        let identity = [1.0, 0.0, 0.0, 1.0];
        let conv = ConvBn::folded(
            &identity,
            &[2.0, -0.5],
            vec![1.0, 3.0],
            c,
            1,
            1,
            Precision::F32,
        );
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let (y, _) = conv.forward(&x, shape, &mut Scratch::default());
        let want: Vec<f32> = x
            .chunks(2)
            .flat_map(|p| [2.0 * p[0] + 1.0, -0.5 * p[1] + 3.0])
            .collect();
        assert_eq!(y, want);
    }
}
