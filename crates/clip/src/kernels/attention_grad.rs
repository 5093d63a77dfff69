//! The backward pass of [`super::attention`]: from the stacked q/k/v projection's output and the gradient of
//! the heads' output, the gradient of the stacked q/k/v, one (image, head) pair at a time across the cores.
//! The attention probabilities are recomputed (as memory-efficient attention does) rather than stored:
//! with `S = q k^T s (+ mask)`, `P = softmax(S)`, `O = P v`:
//! `dv = P^T dO`, `dP = dO v^T`, `dS = P (dP - rowsum(dP P))`, `dq = dS k s`, `dk = dS^T q s`.

use super::attention::AttentionShape;
use super::dispatch::{self, Level};
use super::pool::{run_parts, SharedMut};

/// One head's operands and intermediates, per thread.
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    k_t: Vec<f32>,
    v_t: Vec<f32>,
    dout: Vec<f32>,
    p: Vec<f32>,
    /// One row of dP.
    dp: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

impl Scratch {
    fn new(s: AttentionShape) -> Self {
        let (td, tt) = (s.tokens * s.head_dim, s.tokens * s.tokens);
        Self {
            q: vec![0.0; td],
            k: vec![0.0; td],
            v: vec![0.0; td],
            k_t: vec![0.0; td],
            v_t: vec![0.0; td],
            dout: vec![0.0; td],
            p: vec![0.0; tt],
            dp: vec![0.0; s.tokens],
            dq: vec![0.0; td],
            dk: vec![0.0; td],
            dv: vec![0.0; td],
        }
    }
}

/// `qkv`: `[batch, tokens, 3, heads, head_dim]` as the forward pass read it; `dout`: the gradient of its output
/// `[batch, tokens, heads * head_dim]`; writes the gradient of `qkv` into `dqkv` (same layout).
pub fn attention_backward(
    qkv: &[f32],
    dout: &[f32],
    s: AttentionShape,
    score_scale: f32,
    mask: Option<&[f32]>,
    dqkv: &mut [f32],
) {
    let width = s.heads * s.head_dim;
    assert_eq!(qkv.len(), s.batch * s.tokens * 3 * width, "qkv size");
    assert_eq!(dqkv.len(), qkv.len(), "dqkv size");
    assert_eq!(
        dout.len(),
        s.batch * s.tokens * width,
        "output gradient size"
    );
    if let Some(m) = mask {
        assert_eq!(m.len(), s.tokens * s.tokens, "mask size");
    }
    let units = s.batch * s.heads;
    let threads = crate::threads::count().min(units).max(1);
    let per_thread = units.div_ceil(threads);
    let out = SharedMut(dqkv.as_mut_ptr());
    let level = dispatch::level();
    run_parts(units.div_ceil(per_thread.max(1)), &|t| {
        let mut scratch = Scratch::new(s);
        for unit in t * per_thread..((t + 1) * per_thread).min(units) {
            let (image, head) = (unit / s.heads, unit % s.heads);
            gather(qkv, dout, s, image, head, &mut scratch);
            match level {
                // SAFETY: the level is never above the CPU's: it has AVX-512 F/VL, AVX2 and FMA.
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 => unsafe { head_grad_avx512(s, score_scale, mask, &mut scratch) },
                // SAFETY: as above, AVX2 and FMA.
                #[cfg(target_arch = "x86_64")]
                Level::Avx2 => unsafe { head_grad_avx2(s, score_scale, mask, &mut scratch) },
                _ => head_grad(s, score_scale, mask, &mut scratch),
            }
            // SAFETY: each unit writes only its own image's rows, in its own head's q, k and v columns.
            unsafe { scatter(s, image, head, &scratch, out.get()) };
        }
    });
}

/// Offset of row `token` of part `part` (0 q, 1 k, 2 v) of `head` in `image`.
fn offset(s: AttentionShape, image: usize, token: usize, part: usize, head: usize) -> usize {
    (((image * s.tokens + token) * 3 + part) * s.heads + head) * s.head_dim
}

fn gather(
    qkv: &[f32],
    dout: &[f32],
    s: AttentionShape,
    image: usize,
    head: usize,
    x: &mut Scratch,
) {
    let d = s.head_dim;
    let width = s.heads * d;
    for i in 0..s.tokens {
        let row = i * d..(i + 1) * d;
        for (part, dst) in [(0, &mut x.q), (1, &mut x.k), (2, &mut x.v)] {
            let o = offset(s, image, i, part, head);
            dst[row.clone()].copy_from_slice(&qkv[o..o + d]);
        }
        let o = (image * s.tokens + i) * width + head * d;
        x.dout[row].copy_from_slice(&dout[o..o + d]);
    }
}

/// # Safety
/// `out` is the `dqkv` buffer of [`attention_backward`]; no other thread writes this unit's positions.
unsafe fn scatter(s: AttentionShape, image: usize, head: usize, x: &Scratch, out: *mut f32) {
    let d = s.head_dim;
    for i in 0..s.tokens {
        for (part, src) in [(0, &x.dq), (1, &x.dk), (2, &x.dv)] {
            let o = offset(s, image, i, part, head);
            // SAFETY: o..o + d lies inside dqkv (same layout as qkv) and belongs to this unit.
            unsafe { std::ptr::copy_nonoverlapping(src[i * d..].as_ptr(), out.add(o), d) };
        }
    }
}

#[inline(always)]
fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn head_grad_avx512(s: AttentionShape, scale: f32, mask: Option<&[f32]>, x: &mut Scratch) {
    head_grad(s, scale, mask, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_grad_avx2(s: AttentionShape, scale: f32, mask: Option<&[f32]>, x: &mut Scratch) {
    head_grad(s, scale, mask, x)
}

#[inline(always)]
fn head_grad(s: AttentionShape, scale: f32, mask: Option<&[f32]>, x: &mut Scratch) {
    let (t, d) = (s.tokens, s.head_dim);
    // k and v transposed ([d, t]): score and dP rows become broadcast multiply-adds over keys.
    for j in 0..t {
        for p in 0..d {
            x.k_t[p * t + j] = x.k[j * d + p];
            x.v_t[p * t + j] = x.v[j * d + p];
        }
    }
    x.dv.fill(0.0);
    x.dk.fill(0.0);
    for i in 0..t {
        // P_i = softmax(q_i k^T s + mask_i).
        let row = &mut x.p[i * t..(i + 1) * t];
        row.fill(0.0);
        for p in 0..d {
            axpy(row, x.q[i * d + p], &x.k_t[p * t..(p + 1) * t]);
        }
        let mut max = f32::NEG_INFINITY;
        for (j, v) in row.iter_mut().enumerate() {
            *v *= scale;
            if let Some(m) = mask {
                *v += m[i * t + j];
            }
            max = max.max(*v);
        }
        let mut sum = 0f32;
        for v in row.iter_mut() {
            *v = if *v == f32::NEG_INFINITY {
                0.0
            } else {
                (*v - max).exp()
            };
            sum += *v;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
        let p_row = &x.p[i * t..(i + 1) * t];
        let dout = &x.dout[i * d..(i + 1) * d];
        // dP_i = dO_i v^T.
        let dp = &mut x.dp;
        dp.fill(0.0);
        for (q, &g) in dout.iter().enumerate() {
            axpy(dp, g, &x.v_t[q * t..(q + 1) * t]);
        }
        let row_sum: f32 = dp.iter().zip(p_row).map(|(a, b)| a * b).sum();
        // dS_i = P_i (dP_i - rowsum) s, kept in dp.
        for (g, &pj) in dp.iter_mut().zip(p_row) {
            *g = pj * (*g - row_sum) * scale;
        }
        let dq = &mut x.dq[i * d..(i + 1) * d];
        dq.fill(0.0);
        let q_row = &x.q[i * d..(i + 1) * d];
        for j in 0..t {
            if p_row[j] == 0.0 {
                continue;
            }
            axpy(&mut x.dv[j * d..(j + 1) * d], p_row[j], dout);
            axpy(dq, dp[j], &x.k[j * d..(j + 1) * d]);
            axpy(&mut x.dk[j * d..(j + 1) * d], dp[j], q_row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::attention::attention;
    use crate::test_util::lcg;

    /// The gradient of `sum(out * g)` by central differences of the forward kernel, against the backward kernel.
    #[test]
    fn matches_finite_differences_of_the_forward_kernel() {
        let s = AttentionShape {
            batch: 2,
            tokens: 5,
            heads: 2,
            head_dim: 3,
        };
        let width = s.heads * s.head_dim;
        let qkv = lcg(s.batch * s.tokens * 3 * width, 9);
        let g = lcg(s.batch * s.tokens * width, 10);
        let mask: Vec<f32> = (0..s.tokens * s.tokens)
            .map(|i| {
                if i % s.tokens > i / s.tokens {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        for (scale, mask) in [(0.7f32, None), (1.0, Some(mask.as_slice()))] {
            let objective = |qkv: &[f32]| -> f64 {
                let mut out = vec![0f32; s.batch * s.tokens * width];
                attention(qkv, s, scale, mask, &mut out);
                out.iter()
                    .zip(&g)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum()
            };
            let mut grad = vec![0f32; qkv.len()];
            attention_backward(&qkv, &g, s, scale, mask, &mut grad);
            for i in 0..qkv.len() {
                let mut plus = qkv.clone();
                let mut minus = qkv.clone();
                plus[i] += 1e-2;
                minus[i] -= 1e-2;
                let fd = (objective(&plus) - objective(&minus)) / 2e-2;
                assert!(
                    (fd - f64::from(grad[i])).abs() < 2e-3,
                    "element {i}: {fd} vs {}",
                    grad[i]
                );
            }
        }
    }
}
