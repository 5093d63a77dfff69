//! Multi-head scaled-dot-product attention straight from the stacked q/k/v projection's output, one (image,
//! head) pair at a time across the cores: no per-head copies of q, k and v into separate tensors, no
//! materialised `[batch, heads, t, t]` score tensor, and the result written in `[batch, t, width]` order, ready
//! for the output projection. AVX-512 runs register-tiled kernels; the AVX2 level runs the portable code compiled
//! for AVX2 and FMA (its loops vectorise 8 wide, with identical results).

use super::activation::exp;
use super::dispatch::{self, Level};
use super::pool::{run_parts, SharedMut};

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
    attention_with(qkv, s, score_scale, mask, out, dispatch::level())
}

fn attention_with(
    qkv: &[f32],
    s: AttentionShape,
    score_scale: f32,
    mask: Option<&[f32]>,
    out: &mut [f32],
    level: Level,
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
        crate::threads::count().min(units)
    } else {
        1
    };
    let out_ptr = SharedMut(out.as_mut_ptr());
    let run = |first: usize, last: usize| {
        let out = out_ptr;
        // Each path's own buffers, allocated once per thread.
        let (mut scratch, mut tiles) = if level == Level::Avx512 {
            (None, Some(TiledScratch::new(s)))
        } else {
            (Some(Scratch::new(s)), None)
        };
        for unit in first..last {
            let (image, head) = (unit / s.heads, unit % s.heads);
            // SAFETY: each unit writes only its own image's rows, in its own head's columns.
            unsafe {
                match (&mut tiles, &mut scratch) {
                    (Some(tiles), _) => {
                        simd::head(qkv, s, image, head, score_scale, mask, tiles, out.0)
                    }
                    #[cfg(target_arch = "x86_64")]
                    (None, Some(scratch)) if level == Level::Avx2 => {
                        head_attention_avx2(qkv, s, image, head, score_scale, mask, scratch, out.0)
                    }
                    (None, Some(scratch)) => {
                        head_attention(qkv, s, image, head, score_scale, mask, scratch, out.0)
                    }
                    (None, None) => unreachable!("one of the two is allocated"),
                }
            }
        }
    };
    let per_thread = units.div_ceil(threads.max(1));
    if threads <= 1 {
        run(0, units);
        return;
    }
    run_parts(units.div_ceil(per_thread), &|t| {
        run(t * per_thread, ((t + 1) * per_thread).min(units))
    });
}

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

/// Buffers of the register-tiled AVX-512 path, padded so every vector load stays inside them: queries
/// `[rows4, head_dim]`, keys transposed `[head_dim, keys16]`, values `[keys16, dim16]` and the score/probability
/// matrix `[rows4, keys16]` (rows rounded up to 4, keys and the head dimension to 16; padding stays zero).
struct TiledScratch {
    queries: Vec<f32>,
    keys_t: Vec<f32>,
    values: Vec<f32>,
    probs: Vec<f32>,
    rows4: usize,
    keys16: usize,
    dim16: usize,
}

impl TiledScratch {
    fn new(s: AttentionShape) -> Self {
        let (rows4, keys16, dim16) = (
            s.tokens.div_ceil(4) * 4,
            s.tokens.div_ceil(16) * 16,
            s.head_dim.div_ceil(16) * 16,
        );
        Self {
            queries: vec![0.0; rows4 * s.head_dim],
            keys_t: vec![0.0; s.head_dim * keys16],
            values: vec![0.0; keys16 * dim16],
            probs: vec![0.0; rows4 * keys16],
            rows4,
            keys16,
            dim16,
        }
    }
}

/// [`head_attention`] compiled for AVX2 and FMA.
///
/// # Safety
/// As [`head_attention`]; the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_attention_avx2(
    qkv: &[f32],
    s: AttentionShape,
    image: usize,
    head: usize,
    score_scale: f32,
    mask: Option<&[f32]>,
    scratch: &mut Scratch,
    out: *mut f32,
) {
    // SAFETY: the caller upholds this function's contract (`# Safety` above).
    unsafe { head_attention(qkv, s, image, head, score_scale, mask, scratch, out) }
}

/// One (image, head): written generically and inlined into an AVX2 copy, where the loops vectorise.
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
    // SAFETY: the caller upholds this function's contract (`# Safety` above).
    unsafe {
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
            softmax_row(scores, mask.map(|m| &m[i * t..(i + 1) * t]), score_scale);
            let row = &mut scratch.row;
            row.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                for (y, &v) in row.iter_mut().zip(&scratch.values[j * d..(j + 1) * d]) {
                    *y += p * v;
                }
            }
            let dst =
                std::slice::from_raw_parts_mut(out.add((image * t + i) * width + head * d), d);
            dst.copy_from_slice(row);
        }
    }
}

/// `row = softmax(row * scale + mask)` in place (the scores of one query).
#[inline(always)]
fn softmax_row(row: &mut [f32], mask: Option<&[f32]>, scale: f32) {
    match mask {
        Some(m) => {
            for (v, &m) in row.iter_mut().zip(m) {
                *v = *v * scale + m;
            }
        }
        None => {
            for v in row.iter_mut() {
                *v *= scale;
            }
        }
    }
    let max = fold_in_lanes(row, f32::NEG_INFINITY, f32::max);
    // Its own loop: summed in the same loop, the exponentials were computed one value at a time.
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / fold_in_lanes(row, 0.0, |a, b| a + b);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// `row` folded by `f` into [`FOLD_LANES`] interleaved partial results, which are then folded in order: a
/// single running value is a chain of dependent operations, lanes are one vector operation per chunk.
#[inline(always)]
fn fold_in_lanes(row: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; FOLD_LANES];
    let mut chunks = row.chunks_exact(FOLD_LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, v);
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane = f(*lane, v);
    }
    lanes.into_iter().fold(init, f)
}

/// Partial results of [`fold_in_lanes`]: one AVX-512 vector.
const FOLD_LANES: usize = 16;

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::*;
    use std::arch::x86_64::*;

    /// One (image, head) with register tiles: scores as 4 query rows x 64 keys (16 accumulators, each key
    /// vector loaded once for four rows), then the softmax in place, then the output as 4 rows x 64 features over
    /// the probability-weighted value rows.
    ///
    /// # Safety
    /// As [`head_attention`]; the CPU has AVX-512 F.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn head(
        qkv: &[f32],
        s: AttentionShape,
        image: usize,
        head: usize,
        score_scale: f32,
        mask: Option<&[f32]>,
        b: &mut TiledScratch,
        out: *mut f32,
    ) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let (t, d) = (s.tokens, s.head_dim);
            let width = s.heads * d;
            let (keys16, dim16) = (b.keys16, b.dim16);
            let token_row = |i: usize, part: usize| {
                let start = ((image * t + i) * 3 + part) * width + head * d;
                &qkv[start..start + d]
            };
            for i in 0..t {
                b.queries[i * d..(i + 1) * d].copy_from_slice(token_row(i, 0));
                for (c, &k) in token_row(i, 1).iter().enumerate() {
                    b.keys_t[c * keys16 + i] = k;
                }
                b.values[i * dim16..i * dim16 + d].copy_from_slice(token_row(i, 2));
            }
            // Scores.
            for jc in (0..keys16).step_by(64) {
                let blocks = ((keys16 - jc) / 16).min(4);
                for ig in (0..b.rows4).step_by(4) {
                    match blocks {
                        1 => scores_tile::<1>(b, d, ig, jc),
                        2 => scores_tile::<2>(b, d, ig, jc),
                        3 => scores_tile::<3>(b, d, ig, jc),
                        _ => scores_tile::<4>(b, d, ig, jc),
                    }
                }
            }
            // Softmax over the real keys of each real row; padding keys keep probability 0.
            for i in 0..t {
                let row = &mut b.probs[i * keys16..i * keys16 + t];
                softmax_row(row, mask.map(|m| &m[i * t..(i + 1) * t]), score_scale);
            }
            // Output rows.
            for dc in (0..dim16).step_by(64) {
                let blocks = ((dim16 - dc) / 16).min(4);
                for ig in (0..t).step_by(4) {
                    let tile = OutTile {
                        first_row: ig,
                        rows: (t - ig).min(4),
                        first_col: dc,
                        cols: (d - dc).min(64),
                        out: out.add((image * t + ig) * width + head * d + dc),
                        ld: width,
                    };
                    match blocks {
                        1 => output_tile::<1>(b, t, &tile),
                        2 => output_tile::<2>(b, t, &tile),
                        3 => output_tile::<3>(b, t, &tile),
                        _ => output_tile::<4>(b, t, &tile),
                    }
                }
            }
        }
    }

    /// `probs[ig..ig+4][jc..jc+16B] = q · k` over the head dimension.
    ///
    /// # Safety
    /// `b` holds the head's q rows `ig..ig + 4` and key columns `jc..jc + 16 B` (scratch sized by
    /// [`TiledScratch`]) for head dimension `d`; the CPU has AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn scores_tile<const B: usize>(b: &mut TiledScratch, d: usize, ig: usize, jc: usize) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); B]; 4];
            let (q, kt) = (b.queries.as_ptr(), b.keys_t.as_ptr());
            for c in 0..d {
                let mut keys = [_mm512_setzero_ps(); B];
                for (blk, k) in keys.iter_mut().enumerate() {
                    *k = _mm512_loadu_ps(kt.add(c * b.keys16 + jc + 16 * blk));
                }
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let qv = _mm512_set1_ps(*q.add((ig + r) * d + c));
                    for (a, &k) in acc_row.iter_mut().zip(&keys) {
                        *a = _mm512_fmadd_ps(qv, k, *a);
                    }
                }
            }
            let probs = b.probs.as_mut_ptr();
            for (r, acc_row) in acc.iter().enumerate() {
                for (blk, &a) in acc_row.iter().enumerate() {
                    _mm512_storeu_ps(probs.add((ig + r) * b.keys16 + jc + 16 * blk), a);
                }
            }
        }
    }

    /// Where one output tile goes: up to 4 rows x 64 features of one head.
    struct OutTile {
        first_row: usize,
        rows: usize,
        first_col: usize,
        cols: usize,
        out: *mut f32,
        ld: usize,
    }

    /// `out[rows][cols] = Σ_j p[row][j] v[j][cols]` over the `t` real keys.
    ///
    /// # Safety
    /// `tile` names 4 rows and `16 B` columns of an output that exist and that this thread alone writes, and
    /// `b` holds `t` probability rows and value rows; the CPU has AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn output_tile<const B: usize>(b: &TiledScratch, t: usize, tile: &OutTile) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); B]; 4];
            let (p, v) = (b.probs.as_ptr(), b.values.as_ptr());
            for j in 0..t {
                let mut vals = [_mm512_setzero_ps(); B];
                for (blk, x) in vals.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(v.add(j * b.dim16 + tile.first_col + 16 * blk));
                }
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let pv = _mm512_set1_ps(*p.add((tile.first_row + r) * b.keys16 + j));
                    for (a, &x) in acc_row.iter_mut().zip(&vals) {
                        *a = _mm512_fmadd_ps(pv, x, *a);
                    }
                }
            }
            for (r, acc_row) in acc.iter().enumerate().take(tile.rows) {
                for (blk, &a) in acc_row.iter().enumerate() {
                    let live = tile.cols.saturating_sub(16 * blk).min(16);
                    if live > 0 {
                        let mask = ((1u32 << live) - 1) as __mmask16;
                        _mm512_mask_storeu_ps(tile.out.add(r * tile.ld + 16 * blk), mask, a);
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::*;

    /// # Safety
    /// Never called: the level is portable off x86_64.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn head(
        _qkv: &[f32],
        _s: AttentionShape,
        _image: usize,
        _head: usize,
        _score_scale: f32,
        _mask: Option<&[f32]>,
        _scratch: &mut TiledScratch,
        _out: *mut f32,
    ) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe { unreachable!("the level is portable off x86_64") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lcg, max_abs_diff};

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
    fn matches_f64_reference_with_and_without_a_causal_mask_on_every_level() {
        for &(batch, tokens, heads, head_dim) in
            &[(1, 5, 2, 3), (3, 50, 4, 16), (2, 77, 8, 64), (1, 70, 2, 80)]
        {
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
                let want = reference(&qkv, s, 0.3, mask);
                let mut portable = Vec::new();
                for level in Level::runnable() {
                    let mut out = vec![f32::NAN; batch * tokens * heads * head_dim];
                    attention_with(&qkv, s, 0.3, mask, &mut out, level);
                    let worst = max_abs_diff(&out, &want);
                    assert!(
                        worst < 1e-5,
                        "{s:?} masked={} {level:?}: {worst}",
                        mask.is_some()
                    );
                    match level {
                        Level::Portable => portable = out,
                        // The same code compiled for AVX2: the same operations, the same bits.
                        Level::Avx2 => assert_eq!(out, portable, "{s:?} {level:?}"),
                        Level::Avx512 => {}
                    }
                }
            }
        }
    }
}
