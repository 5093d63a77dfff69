//! What open_clip's training loop does around the gradients (`open_clip_train/main.py`, `train.py`,
//! `scheduler.py`) with PyTorch's arithmetic: AdamW with decoupled weight decay (`torch.optim.AdamW`, the
//! single-tensor path PyTorch takes on a CPU), weight decay only on tensors of two or more dimensions, linear
//! warmup then cosine decay, and `clip_grad_norm_`.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::{ClipError, Result};
use crate::kernels::pool::{new_in_chunks, SharedMut};
use crate::model::nn::with_f32_values;
use crate::model::params::{Grads, Params};

/// AdamW's settings (open_clip's defaults for ViTs: betas 0.9 / 0.98, eps 1e-6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// open_clip's defaults: betas 0.9 / 0.98, eps 1e-6, weight decay 0.2.
    pub const OPEN_CLIP: Self = Self {
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-6,
        weight_decay: 0.2,
    };
}

/// One parameter's moments.
#[derive(Debug, Clone)]
pub(crate) struct Moments {
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

/// AdamW's state: the step count and each trained parameter's moments.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdamW {
    pub step: u64,
    pub moments: BTreeMap<String, Moments>,
}

/// open_clip's rule (`exclude = p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n`):
/// in CLIP's layout every excluded tensor has fewer than two dimensions, so the shape decides.
pub(crate) fn decays(shape: &[usize]) -> bool {
    shape.len() >= 2
}

impl AdamW {
    /// One step over the parameters named in `trained` with their gradients at learning rate `lr`, as
    /// `torch.optim.AdamW.step` computes it in float32 (`foreach=False`): `p *= 1 - lr wd` (decaying tensors
    /// only), `m = lerp(m, g, 1 - b1)`, `v = b2 v + (1 - b2) g^2`, `p -= lr / (1 - b1^t) m / (sqrt(v) /
    /// sqrt(1 - b2^t) + eps)`.
    pub fn step(
        &mut self,
        params: &mut Params,
        grads: &Grads,
        trained: &[String],
        lr: f64,
        config: &AdamWConfig,
    ) -> Result<()> {
        self.step += 1;
        let t = self.step as f64;
        let bias_correction1 = 1.0 - config.beta1.powf(t);
        let bias_correction2 = 1.0 - config.beta2.powf(t);
        let step_size = (lr / bias_correction1) as f32;
        let bc2_sqrt = bias_correction2.sqrt() as f32;
        let (b1_weight, b2) = ((1.0 - config.beta1) as f32, config.beta2 as f32);
        let one_minus_b2 = (1.0 - config.beta2) as f32;
        let eps = config.eps as f32;
        let rule = Update {
            step_size,
            bc2_sqrt,
            b1_weight,
            b2,
            one_minus_b2,
            eps,
            keep: 1.0,
        };
        for name in trained {
            let tensor = params.get(name)?.contiguous()?;
            let shape = tensor.dims().to_vec();
            let count = tensor.elem_count();
            let grad = match grads.get(name) {
                Ok(g) => g.to_dtype(DType::F32)?.contiguous()?,
                Err(_) => Tensor::zeros(count, DType::F32, tensor.device())?,
            };
            if grad.elem_count() != count {
                return Err(ClipError::InvalidInput(format!(
                    "gradient of {name} has {} values, the parameter {count}",
                    grad.elem_count()
                )));
            }
            let m = self.moments.entry(name.clone()).or_insert_with(|| Moments {
                exp_avg: vec![0f32; count],
                exp_avg_sq: vec![0f32; count],
            });
            let rule = Update {
                keep: if decays(&shape) {
                    (1.0 - lr * config.weight_decay) as f32
                } else {
                    1.0
                },
                ..rule
            };
            let updated = with_f32_values(&tensor, |p| {
                with_f32_values(&grad, |g| {
                    rule.apply(p, g, &mut m.exp_avg, &mut m.exp_avg_sq)
                })
            })??;
            params.insert(
                name.clone(),
                Tensor::from_vec(updated, shape, tensor.device())?,
            );
        }
        Ok(())
    }
}

/// One AdamW update's constants.
#[derive(Clone, Copy)]
struct Update {
    step_size: f32,
    bc2_sqrt: f32,
    b1_weight: f32,
    b2: f32,
    one_minus_b2: f32,
    eps: f32,
    /// `1 - lr wd` for decaying tensors, else 1.
    keep: f32,
}

/// Values per part when an update is split across the cores.
const PARALLEL_MIN: usize = 1 << 15;

impl Update {
    /// The updated parameter values; the moments are updated in place. Split across the cores (element-wise,
    /// so the split cannot change a value).
    fn apply(self, p: &[f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> Vec<f32> {
        let parts = crate::threads::count()
            .min(p.len().div_ceil(PARALLEL_MIN))
            .max(1);
        let per = p.len().div_ceil(parts).max(1);
        let (mp, vp) = (SharedMut(m.as_mut_ptr()), SharedMut(v.as_mut_ptr()));
        let fill = |_, start: usize, out: &mut [std::mem::MaybeUninit<f32>]| {
            let n = out.len();
            // SAFETY: the chunk starting at `start` alone touches moments start..start + n.
            let (m, v) = unsafe {
                (
                    std::slice::from_raw_parts_mut(mp.get().add(start), n),
                    std::slice::from_raw_parts_mut(vp.get().add(start), n),
                )
            };
            self.run(&p[start..start + n], &g[start..start + n], m, v, out);
        };
        // SAFETY: `run` writes every value of each chunk.
        unsafe { new_in_chunks(p.len(), per, fill) }
    }

    /// `torch.optim.AdamW`'s single-tensor arithmetic, element by element, in its order.
    fn run(
        self,
        p: &[f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        out: &mut [std::mem::MaybeUninit<f32>],
    ) {
        for i in 0..p.len() {
            let param = p[i] * self.keep;
            // torch.lerp with weight < 0.5: self + weight * (end - self)
            m[i] += self.b1_weight * (g[i] - m[i]);
            v[i] = v[i] * self.b2 + self.one_minus_b2 * g[i] * g[i];
            let denom = v[i].sqrt() / self.bc2_sqrt + self.eps;
            out[i].write(param + -self.step_size * (m[i] / denom));
        }
    }
}

/// open_clip's `cosine_lr` at 0-based `step`: `base (step + 1) / warmup` during warmup, then
/// `0.5 (1 + cos(pi (step - warmup) / (steps - warmup))) base`.
pub fn cosine_lr(base: f64, warmup: u64, steps: u64, step: u64) -> f64 {
    if step < warmup {
        base * (step + 1) as f64 / warmup as f64
    } else {
        let e = (step - warmup) as f64;
        let es = steps.saturating_sub(warmup).max(1) as f64;
        0.5 * (1.0 + (std::f64::consts::PI * e / es).cos()) * base
    }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`: the 2-norm of all gradients together; every gradient is
/// multiplied by `min(max_norm / (norm + 1e-6), 1)`. Returns the norm before clipping.
pub(crate) fn clip_grad_norm(grads: &mut Grads, names: &[String], max_norm: f64) -> Result<f64> {
    let mut sum = 0f64;
    for name in names {
        if let Ok(g) = grads.get(name) {
            // torch: the norm of each tensor's norm.
            let n = g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?
                .sqrt();
            sum += n * n;
        }
    }
    let total = sum.sqrt();
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    for name in names {
        if let Ok(g) = grads.get(name) {
            let clipped = g.affine(coef, 0.0)?;
            grads.insert(name.clone(), clipped);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_follows_the_cosine() {
        assert_eq!(cosine_lr(1.0, 3, 12, 0), 1.0 / 3.0);
        assert_eq!(cosine_lr(1.0, 3, 12, 2), 1.0);
        assert_eq!(cosine_lr(1.0, 3, 12, 3), 1.0);
        assert!((cosine_lr(1.0, 3, 12, 12)).abs() < 1e-12);
        let mid = cosine_lr(2.0, 0, 10, 5);
        assert!((mid - 1.0).abs() < 1e-12, "{mid}");
    }

    #[test]
    fn adamw_first_step_moves_each_weight_by_the_learning_rate() {
        // After one step m/(sqrt(v)) = sign(g): every parameter moves by lr (plus decay for matrices).
        let mut params = Params::new();
        params.insert(
            "w",
            Tensor::new(&[[1f32, -2.0], [3.0, 0.5]], &Device::Cpu).unwrap(),
        );
        params.insert("b", Tensor::new(&[1f32, 1.0], &Device::Cpu).unwrap());
        let mut grads = Grads::new();
        grads.insert(
            "w",
            Tensor::new(&[[0.1f32, -0.2], [0.3, 0.0]], &Device::Cpu).unwrap(),
        );
        grads.insert("b", Tensor::new(&[-5f32, 5.0], &Device::Cpu).unwrap());
        let config = AdamWConfig::OPEN_CLIP;
        let mut adam = AdamW::default();
        let names = vec!["w".to_string(), "b".to_string()];
        adam.step(&mut params, &grads, &names, 0.01, &config)
            .unwrap();
        let w = params.get("w").unwrap().to_vec2::<f32>().unwrap();
        let b = params.get("b").unwrap().to_vec1::<f32>().unwrap();
        let decayed = 1.0 - 0.01 * 0.2;
        assert!(
            (w[0][0] - (1.0 * decayed - 0.01)).abs() < 1e-6,
            "{}",
            w[0][0]
        );
        assert!((w[0][1] - (-2.0 * decayed + 0.01)).abs() < 1e-6);
        assert!(
            (w[1][1] - 0.5 * decayed).abs() < 1e-6,
            "zero gradient: decay only"
        );
        assert!(
            (b[0] - 1.01).abs() < 1e-6 && (b[1] - 0.99).abs() < 1e-6,
            "{b:?}"
        );
    }

    #[test]
    fn clipping_scales_all_gradients_by_one_factor() {
        let mut grads = Grads::new();
        grads.insert("a", Tensor::new(&[3f32, 0.0], &Device::Cpu).unwrap());
        grads.insert("b", Tensor::new(&[4f32], &Device::Cpu).unwrap());
        let names = vec!["a".to_string(), "b".to_string()];
        let norm = clip_grad_norm(&mut grads, &names, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let b = grads.get("b").unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((b - 0.8).abs() < 1e-5, "{b}");
    }
}
