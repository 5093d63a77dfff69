//! Hand-written CPU kernels: the packed-weight GEMMs behind every `nn.Linear` (f32, bf16, int8), sharing one
//! blocked, threaded driver, and fused row operations; each at the SIMD level [`dispatch`] chose for the process.

pub mod activation;
pub mod attention;
pub mod attention_grad;
pub mod bf16_gemm;
pub mod conv;
pub mod cpu;
pub mod dispatch;
pub mod f32_gemm;
pub mod gemm;
pub mod int8_gemm;
pub mod layer_norm;
pub mod linear_grad;
pub mod norm_grad;
pub mod pool;
pub mod precision;
pub mod residual;

pub use precision::Precision;
