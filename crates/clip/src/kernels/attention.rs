//! Multi-head scaled-dot-product attention straight from the stacked q/k/v projection's output, one (image,
//! head) pair at a time across the cores: no per-head copies of q, k and v into separate tensors, no
//! materialised `[batch, heads, t, t]` score tensor, and the result written in `[batch, t, width]` order, ready
//! for the output projection. Also QuickGELU, which shares the vectorisable `exp`.

use super::gemm::avx512_available;

/// Work (in multiply-adds) below which one thread does everything.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// `qkv`: `[batch, tokens, 3, heads, head_dim]` (q rows first, then k, then v, as the stacked projection
/// writes them); `mask`: additive `[tokens, tokens]`; `out`: `[batch, tokens, heads * head_dim]`.
/// Scores are `q·k * score_scale (+ mask)`, softmax over keys, then the weighted sum of v rows.
pub fn attention(
    qkv: &[f32],
    s: AttentionShape,
    score_scale: f32,
    mask: Option<&[f32]>,
    out: &mut [f32],
) {
    let width = s.heads * s.head_dim;
    assert_eq!(qkv.len(), s.batch * s.tokens * 3 * width, "qkv size");
    assert_eq!(out.len(), s.batch * s.tokens * width, "output size");
    if let Some(m) = mask {
        assert_eq!(m.len(), s.tokens * s.tokens, "mask size");
    }
    let units = s.batch * s.heads;
    let work = units * s.tokens * s.tokens * s.head_dim;
    let threads = if work >= PARALLEL_MIN_WORK {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(units)
    } else {
        1
    };
    let use_simd = avx512_available();
    let out_ptr = OutPtr(out.as_mut_ptr());
    let run = |first: usize, last: usize| {
        let out = out_ptr;
        let mut scratch = Scratch::new(s);
        for unit in first..last {
            let (image, head) = (unit / s.heads, unit % s.heads);
            // SAFETY: each unit writes only its own image's rows, in its own head's columns.
            unsafe {
                if use_simd {
                    simd::head(qkv, s, image, head, score_scale, mask, &mut scratch, out.0);
                } else {
                    head_attention(qkv, s, image, head, score_scale, mask, &mut scratch, out.0);
                }
            }
        }
    };
    let per_thread = units.div_ceil(threads.max(1));
    if threads <= 1 {
        run(0, units);
        return;
    }
    std::thread::scope(|scope| {
        for t in 1..threads {
            let (first, last) = (t * per_thread, ((t + 1) * per_thread).min(units));
            if first < last {
                scope.spawn(move || run(first, last));
            }
        }
        run(0, per_thread.min(units));
    });
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: threads write disjoint (image, head) blocks of the output (see `attention`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Per-thread buffers: one head's keys transposed (`[head_dim, tokens]`, so a query's scores are a row of
/// broadcast multiply-adds), its values (`[tokens, head_dim]`), one score row and one output row.
struct Scratch {
    keys_t: Vec<f32>,
    values: Vec<f32>,
    scores: Vec<f32>,
    row: Vec<f32>,
}

impl Scratch {
    fn new(s: AttentionShape) -> Self {
        Self {
            keys_t: vec![0.0; s.head_dim * s.tokens],
            values: vec![0.0; s.tokens * s.head_dim],
            scores: vec![0.0; s.tokens],
            row: vec![0.0; s.head_dim],
        }
    }
}

/// One (image, head): written generically and inlined into an AVX-512 copy, where the loops vectorise.
///
/// # Safety
/// `out` points at a `[batch, tokens, heads * head_dim]` buffer whose block for (image, head) no other thread
/// touches.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn head_attention(
    qkv: &[f32],
    s: AttentionShape,
    image: usize,
    head: usize,
    score_scale: f32,
    mask: Option<&[f32]>,
    scratch: &mut Scratch,
    out: *mut f32,
) {
    let (t, d) = (s.tokens, s.head_dim);
    let width = s.heads * d;
    let token_row = |i: usize, part: usize| {
        let start = ((image * t + i) * 3 + part) * width + head * d;
        &qkv[start..start + d]
    };
    for j in 0..t {
        for (c, &k) in token_row(j, 1).iter().enumerate() {
            scratch.keys_t[c * t + j] = k;
        }
        scratch.values[j * d..(j + 1) * d].copy_from_slice(token_row(j, 2));
    }
    for i in 0..t {
        let scores = &mut scratch.scores;
        scores.fill(0.0);
        for (c, &q) in token_row(i, 0).iter().enumerate() {
            for (sc, &k) in scores.iter_mut().zip(&scratch.keys_t[c * t..(c + 1) * t]) {
                *sc += q * k;
            }
        }
        match mask {
            Some(m) => {
                for (sc, &m) in scores.iter_mut().zip(&m[i * t..(i + 1) * t]) {
                    *sc = *sc * score_scale + m;
                }
            }
            None => {
                for sc in scores.iter_mut() {
                    *sc *= score_scale;
                }
            }
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0;
        for sc in scores.iter_mut() {
            *sc = exp(*sc - max);
            sum += *sc;
        }
        let inv = 1.0 / sum;
        let row = &mut scratch.row;
        row.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            let p = p * inv;
            for (y, &v) in row.iter_mut().zip(&scratch.values[j * d..(j + 1) * d]) {
                *y += p * v;
            }
        }
        let dst = std::slice::from_raw_parts_mut(out.add((image * t + i) * width + head * d), d);
        dst.copy_from_slice(row);
    }
}

/// `e^x` to about 1 ulp (Cephes' `expf` scheme: `x = n ln2 + r`, a degree-7 polynomial for `e^r`, `2^n` from
/// the exponent bits), in plain arithmetic so it vectorises; 0 below the f32 range (so `-inf` masks give 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let clamped = x.clamp(-87.0, 88.5);
    let n = (clamped * LOG2E).round_ties_even();
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        e_r * scale
    }
}

/// QuickGELU `x * sigmoid(1.702 x)` = `x / (1 + e^(-1.702 x))` in place, across the cores for large inputs.
pub fn quick_gelu(values: &mut [f32]) {
    let use_simd = avx512_available();
    let run = |part: &mut [f32]| {
        if use_simd {
            // SAFETY: the CPU has AVX-512 F/BW.
            unsafe { simd::quick_gelu(part) }
        } else {
            quick_gelu_generic(part)
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = values.len().div_ceil(threads).max(PARALLEL_MIN_WORK);
    if values.len() <= chunk {
        run(values);
        return;
    }
    std::thread::scope(|scope| {
        let mut parts = values.chunks_mut(chunk);
        let first = parts.next();
        for part in parts {
            scope.spawn(move || run(part));
        }
        if let Some(part) = first {
            run(part);
        }
    });
}

#[inline(always)]
fn quick_gelu_generic(values: &mut [f32]) {
    for v in values {
        *v /= 1.0 + exp(-1.702 * *v);
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::*;

    /// [`head_attention`] compiled with AVX-512.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn head(
        qkv: &[f32],
        s: AttentionShape,
        image: usize,
        head: usize,
        score_scale: f32,
        mask: Option<&[f32]>,
        scratch: &mut Scratch,
        out: *mut f32,
    ) {
        head_attention(qkv, s, image, head, score_scale, mask, scratch, out)
    }

    /// [`quick_gelu_generic`] compiled with AVX-512.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn quick_gelu(values: &mut [f32]) {
        quick_gelu_generic(values)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn head(
        qkv: &[f32],
        s: AttentionShape,
        image: usize,
        head: usize,
        score_scale: f32,
        mask: Option<&[f32]>,
        scratch: &mut Scratch,
        out: *mut f32,
    ) {
        head_attention(qkv, s, image, head, score_scale, mask, scratch, out)
    }

    pub(super) unsafe fn quick_gelu(values: &mut [f32]) {
        quick_gelu_generic(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::lcg;

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_zero_below_range() {
        let mut worst = 0f32;
        for i in 0..200_000 {
            let x = -87.0 + 175.0 * (i as f32 / 200_000.0);
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
    }

    /// f64 softmax(q k^T * scale + mask) v per (image, head).
    fn reference(qkv: &[f32], s: AttentionShape, scale: f64, mask: Option<&[f32]>) -> Vec<f32> {
        let (t, d, width) = (s.tokens, s.head_dim, s.heads * s.head_dim);
        let at = |b: usize, i: usize, part: usize, h: usize, c: usize| {
            qkv[((b * t + i) * 3 + part) * width + h * d + c] as f64
        };
        let mut out = vec![0f32; s.batch * t * width];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..t {
                    let scores: Vec<f64> = (0..t)
                        .map(|j| {
                            let dot: f64 =
                                (0..d).map(|c| at(b, i, 0, h, c) * at(b, j, 1, h, c)).sum();
                            dot * scale + mask.map_or(0.0, |m| m[i * t + j] as f64)
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|v| (v - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..d {
                        let y: f64 = (0..t).map(|j| e[j] / sum * at(b, j, 2, h, c)).sum();
                        out[(b * t + i) * width + h * d + c] = y as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_f64_reference_with_and_without_a_causal_mask() {
        for &(batch, tokens, heads, head_dim) in &[(1, 5, 2, 3), (3, 50, 4, 16), (2, 77, 8, 64)] {
            let s = AttentionShape {
                batch,
                tokens,
                heads,
                head_dim,
            };
            let qkv = lcg(batch * tokens * 3 * heads * head_dim, 8);
            let causal: Vec<f32> = (0..tokens * tokens)
                .map(|ij| {
                    if ij % tokens > ij / tokens {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            for mask in [None, Some(causal.as_slice())] {
                let mut out = vec![f32::NAN; batch * tokens * heads * head_dim];
                attention(&qkv, s, 0.3, mask, &mut out);
                let want = reference(&qkv, s, 0.3, mask);
                let worst = out
                    .iter()
                    .zip(&want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(worst < 1e-5, "{s:?} masked={}: {worst}", mask.is_some());
            }
        }
    }

    #[test]
    fn quick_gelu_matches_the_formula() {
        let mut values: Vec<f32> = lcg(100_003, 5).iter().map(|v| v * 12.0).collect();
        let want: Vec<f32> = values
            .iter()
            .map(|&v| (v as f64 / (1.0 + (-1.702 * v as f64).exp())) as f32)
            .collect();
        quick_gelu(&mut values);
        for (g, w) in values.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
    }
}
