//! The backward pass of [`super::layer_norm`]: per row, with `x̂ = (x - mean) / sd` and `g = dy · gain`,
//! `dx = (g - mean(g) - x̂ mean(g x̂)) / sd`; the gain and bias gradients are the column sums of `dy x̂` and
//! `dy`. Rows are split across the cores, each with its own partial column sums (added in a fixed order, so
//! the result does not depend on timing).

use super::dispatch::{self, Level};
use super::pool::run_parts;

/// Rows below which one thread does all of them.
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// The gradients of one LayerNorm.
pub struct NormGrads {
    pub dx: Vec<f32>,
    pub dgain: Vec<f32>,
    pub dbias: Vec<f32>,
}

#[inline(always)]
fn row_grad(
    x: &[f32],
    dy: &[f32],
    gain: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgain: &mut [f32],
    dbias: &mut [f32],
) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let rstd = 1.0 / (var + eps).sqrt();
    let (mut mean_g, mut mean_gx) = (0f32, 0f32);
    for i in 0..x.len() {
        let xhat = (x[i] - mean) * rstd;
        let g = dy[i] * gain[i];
        mean_g += g;
        mean_gx += g * xhat;
        dgain[i] += dy[i] * xhat;
        dbias[i] += dy[i];
    }
    mean_g /= n;
    mean_gx /= n;
    for i in 0..x.len() {
        let xhat = (x[i] - mean) * rstd;
        dx[i] = rstd * (dy[i] * gain[i] - mean_g - xhat * mean_gx);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn rows_avx512(
    x: &[f32],
    dy: &[f32],
    gain: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgain: &mut [f32],
    dbias: &mut [f32],
) {
    rows(x, dy, gain, eps, dx, dgain, dbias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(
    x: &[f32],
    dy: &[f32],
    gain: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgain: &mut [f32],
    dbias: &mut [f32],
) {
    rows(x, dy, gain, eps, dx, dgain, dbias)
}

#[inline(always)]
fn rows(
    x: &[f32],
    dy: &[f32],
    gain: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgain: &mut [f32],
    dbias: &mut [f32],
) {
    let dim = gain.len();
    for ((x, dy), dx) in x
        .chunks_exact(dim)
        .zip(dy.chunks_exact(dim))
        .zip(dx.chunks_exact_mut(dim))
    {
        row_grad(x, dy, gain, eps, dx, dgain, dbias);
    }
}

/// `x`, `dy`: rows of `gain.len()` values.
pub fn layer_norm_backward(x: &[f32], dy: &[f32], gain: &[f32], eps: f32) -> NormGrads {
    let dim = gain.len();
    assert!(
        dim > 0 && x.len().is_multiple_of(dim) && dy.len() == x.len(),
        "rows of {dim}"
    );
    let n_rows = x.len() / dim;
    let threads = if x.len() >= PARALLEL_MIN_VALUES {
        crate::threads::count().min(n_rows).max(1)
    } else {
        1
    };
    let per = n_rows.div_ceil(threads);
    let parts: Vec<std::sync::Mutex<NormGrads>> = (0..threads)
        .map(|_| {
            std::sync::Mutex::new(NormGrads {
                dx: Vec::new(),
                dgain: Vec::new(),
                dbias: Vec::new(),
            })
        })
        .collect();
    let level = dispatch::level();
    run_parts(threads, &|t| {
        let (first, last) = (t * per, ((t + 1) * per).min(n_rows));
        let range = first * dim..last * dim;
        let mut dx = vec![0f32; range.len()];
        let (mut dgain, mut dbias) = (vec![0f32; dim], vec![0f32; dim]);
        let (xs, dys) = (&x[range.clone()], &dy[range]);
        match level {
            // SAFETY: the level is never above the CPU's: it has AVX-512 F/VL, AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe {
                rows_avx512(xs, dys, gain, eps, &mut dx, &mut dgain, &mut dbias)
            },
            // SAFETY: as above, AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe {
                rows_avx2(xs, dys, gain, eps, &mut dx, &mut dgain, &mut dbias)
            },
            _ => rows(xs, dys, gain, eps, &mut dx, &mut dgain, &mut dbias),
        }
        *parts[t].lock().unwrap_or_else(|p| p.into_inner()) = NormGrads { dx, dgain, dbias };
    });
    let mut out = NormGrads {
        dx: Vec::with_capacity(x.len()),
        dgain: vec![0f32; dim],
        dbias: vec![0f32; dim],
    };
    for part in parts {
        let part = part.into_inner().unwrap_or_else(|p| p.into_inner());
        out.dx.extend(part.dx);
        out.dgain
            .iter_mut()
            .zip(&part.dgain)
            .for_each(|(a, b)| *a += b);
        out.dbias
            .iter_mut()
            .zip(&part.dbias)
            .for_each(|(a, b)| *a += b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::layer_norm::layer_norm;
    use crate::test_util::lcg;

    #[test]
    fn matches_finite_differences_of_the_forward_kernel() {
        let (rows, dim) = (3, 6);
        let x = lcg(rows * dim, 1);
        let gain = lcg(dim, 2);
        let bias = lcg(dim, 3);
        let g = lcg(rows * dim, 4);
        let objective = |x: &[f32], gain: &[f32], bias: &[f32]| -> f64 {
            let mut out = vec![0f32; x.len()];
            layer_norm(x, dim, gain, bias, 1e-5, &mut out);
            out.iter()
                .zip(&g)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum()
        };
        let grads = layer_norm_backward(&x, &g, &gain, 1e-5);
        let fd = |f: &dyn Fn(f32) -> f64| (f(1e-2) - f(-1e-2)) / 2e-2;
        for i in 0..x.len() {
            let d = fd(&|h| {
                let mut x2 = x.clone();
                x2[i] += h;
                objective(&x2, &gain, &bias)
            });
            assert!(
                (d - f64::from(grads.dx[i])).abs() < 2e-3,
                "dx {i}: {d} vs {}",
                grads.dx[i]
            );
        }
        for i in 0..dim {
            let d = fd(&|h| {
                let mut g2 = gain.clone();
                g2[i] += h;
                objective(&x, &g2, &bias)
            });
            assert!((d - f64::from(grads.dgain[i])).abs() < 2e-3, "dgain {i}");
            let d = fd(&|h| {
                let mut b2 = bias.clone();
                b2[i] += h;
                objective(&x, &gain, &b2)
            });
            assert!((d - f64::from(grads.dbias[i])).abs() < 2e-3, "dbias {i}");
        }
    }
}
