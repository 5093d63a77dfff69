//! `nn.LayerNorm` over the last dimension in one pass per row (candle's composition of ten element-wise ops
//! allocates and sweeps the activation ten times), rows split across cores for large inputs. The SIMD levels run
//! the same code compiled for AVX-512 or AVX2 (the 16 partial sums vectorise; results are identical).

use super::dispatch::{self, Level};
use super::pool::run_chunks_mut;

/// Work (in values) below which one thread does the whole tensor: spawning costs more than it saves.
const PARALLEL_MIN_VALUES: usize = 1 << 16;
/// Partial sums kept side by side, so the compiler can vectorise the reductions.
const LANES: usize = 16;

/// `out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias` for every row of `dim` values. Two-pass variance
/// (centre first): the one-pass `E[x^2] - E[x]^2` loses precision on residual streams whose mean is large next to
/// their spread.
pub fn layer_norm(x: &[f32], dim: usize, weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "output size");
    assert!(dim > 0 && x.len().is_multiple_of(dim), "rows of {dim}");
    assert_eq!(weight.len(), dim, "weight size");
    assert_eq!(bias.len(), dim, "bias size");
    let rows = x.len() / dim;
    let threads = if x.len() >= PARALLEL_MIN_VALUES {
        crate::threads::count().min(rows)
    } else {
        1
    };
    let level = dispatch::level();
    let run = |x: &[f32], out: &mut [f32]| rows_at(level, x, weight, bias, eps, out);
    if threads <= 1 {
        run(x, out);
        return;
    }
    let per_thread = rows.div_ceil(threads) * dim;
    run_chunks_mut(out, per_thread, |i, dst| {
        run(&x[i * per_thread..i * per_thread + dst.len()], dst)
    });
}

/// Every row of `x` into `out`, compiled for `level`.
fn rows_at(level: Level, x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    match level {
        // SAFETY: the level is never above the CPU's: it has AVX-512 F/VL, AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { rows_avx512(x, weight, bias, eps, out) },
        // SAFETY: as above, AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { rows_avx2(x, weight, bias, eps, out) },
        _ => rows(x, weight, bias, eps, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn rows_avx512(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    rows(x, weight, bias, eps, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    rows(x, weight, bias, eps, out)
}

#[inline(always)]
fn rows(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (src, dst) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        normalise_row(src, weight, bias, eps, dst);
    }
}

#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|&v| f(v)).sum::<f32>()
}

#[inline(always)]
fn normalise_row(src: &[f32], weight: &[f32], bias: &[f32], eps: f32, dst: &mut [f32]) {
    let n = src.len() as f32;
    let mean = lane_sum(src, |v| v) / n;
    let var = lane_sum(src, |v| (v - mean) * (v - mean)) / n;
    let inv_std = 1.0 / (var + eps).sqrt();
    for (((d, &v), &w), &b) in dst.iter_mut().zip(src).zip(weight).zip(bias) {
        *d = (v - mean) * inv_std * w + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lcg, max_abs_diff};

    fn reference(x: &[f32], dim: usize, w: &[f32], b: &[f32], eps: f64) -> Vec<f32> {
        x.chunks(dim)
            .flat_map(|row| {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
                let inv = 1.0 / (var + eps).sqrt();
                row.iter()
                    .zip(w)
                    .zip(b)
                    .map(move |((&v, &w), &b)| {
                        ((v as f64 - mean) * inv * w as f64 + b as f64) as f32
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn matches_f64_reference_serial_and_parallel() {
        for &(rows, dim) in &[(3, 7), (50, 768), (130, 1024)] {
            let x: Vec<f32> = lcg(rows * dim, 2).iter().map(|v| 40.0 + 3.0 * v).collect();
            let (w, b) = (lcg(dim, 3), lcg(dim, 4));
            let mut out = vec![0f32; rows * dim];
            layer_norm(&x, dim, &w, &b, 1e-5, &mut out);
            let worst = max_abs_diff(&out, &reference(&x, dim, &w, &b, 1e-5));
            assert!(worst < 2e-5, "{rows}x{dim}: {worst}");
        }
    }

    #[test]
    fn every_level_gives_the_same_bits() {
        let (rows, dim) = (5, 771);
        let x: Vec<f32> = lcg(rows * dim, 5).iter().map(|v| 40.0 + 3.0 * v).collect();
        let (w, b) = (lcg(dim, 6), lcg(dim, 7));
        let mut want = vec![0f32; rows * dim];
        rows_at(Level::Portable, &x, &w, &b, 1e-5, &mut want);
        for level in Level::runnable() {
            let mut out = vec![f32::NAN; rows * dim];
            rows_at(level, &x, &w, &b, 1e-5, &mut out);
            assert_eq!(out, want, "{level:?}");
        }
    }
}
