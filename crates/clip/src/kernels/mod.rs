//! Hand-written CPU kernels for the reduced-precision paths (candle's own matmul serves f32).

pub mod bf16_gemm;
