//! Hand-written CPU kernels: the packed-weight GEMMs behind every `nn.Linear` (f32, bf16, int8), sharing one
//! blocked, threaded driver, and fused row operations.

pub mod activation;
pub mod attention;
pub mod bf16_gemm;
pub mod f32_gemm;
pub mod gemm;
pub mod int8_gemm;
pub mod layer_norm;
pub mod pool;
pub mod precision;
pub mod residual;

pub use precision::Precision;

#[cfg(test)]
pub(crate) mod test_util {
    /// Deterministic values in [-1, 1).
    pub fn lcg(len: usize, mut state: u64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .fold(0f32, |acc, (x, y)| acc.max((x - y).abs()))
    }
}
