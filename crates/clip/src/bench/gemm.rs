//! Throughput of the packed-weight GEMM kernels (f32, bf16, int8) at the shapes of ViT-B/32's linear layers,
//! for `clip bench --kernels`: GFLOP/s per kernel and shape, to compare against the CPU's peak and against
//! other engines.

use std::time::Instant;

use serde::Serialize;

use crate::kernels::bf16_gemm::{linear_bf16, PackedBf16};
use crate::kernels::f32_gemm::{linear_f32, PackedF32};
use crate::kernels::int8_gemm::{linear_int8, PackedInt8};
use crate::kernels::Precision;

/// `(rows, in, out)` of ViT-B/32's qkv, fc1 and fc2 at batch 1 (50 tokens) and batch 32 (1600 tokens).
pub const VIT_B32_SHAPES: [(usize, usize, usize); 5] = [
    (50, 768, 2304),
    (50, 768, 3072),
    (50, 3072, 768),
    (1600, 768, 3072),
    (1600, 3072, 768),
];

#[derive(Clone, Debug, Serialize)]
pub struct GemmRow {
    pub dtype: String,
    /// The kernel that ran (`avx512f`, `avx512_bf16`, `avx512_vnni` or `portable`).
    pub kernel: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Median seconds per call.
    pub seconds: f64,
    pub gflops: f64,
}

/// Times every kernel on every shape: the median of `iters` calls after a warm-up (more calls for small shapes).
pub fn gemm_throughput(shapes: &[(usize, usize, usize)], iters: usize) -> Vec<GemmRow> {
    let mut rows = Vec::new();
    for &(m, k, n) in shapes {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut out = vec![0f32; m * n];
        let calls = if m < 100 { iters * 20 } else { iters };
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let seconds = match precision {
                Precision::F32 => {
                    let p = PackedF32::pack(&w, n, k);
                    median(calls, || linear_f32(&x, m, &p, None, &mut out))
                }
                Precision::Bf16 => {
                    let p = PackedBf16::pack(&w, n, k);
                    median(calls, || linear_bf16(&x, m, &p, None, &mut out))
                }
                Precision::Int8 => {
                    let p = PackedInt8::pack(&w, n, k);
                    median(calls, || linear_int8(&x, m, &p, None, &mut out))
                }
            };
            rows.push(GemmRow {
                dtype: precision.to_string(),
                kernel: crate::kernels::cpu::gemm_kernel(precision).to_string(),
                m,
                k,
                n,
                seconds,
                gflops: 2.0 * (m * k * n) as f64 / seconds / 1e9,
            });
        }
    }
    rows
}

fn median(calls: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..calls.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_timed_on_every_shape() {
        let rows = gemm_throughput(&[(3, 16, 8)], 1);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.seconds > 0.0 && r.gflops > 0.0));
    }
}
