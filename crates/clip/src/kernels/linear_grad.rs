//! The backward pass of `y = x W^T + b` on the packed f32 GEMM: `dx = dy W`, `dW = dy^T x`, `db = sum_rows dy`.
//! The transposed operands are packed per call (a cost linear in their size, small against the products).

use super::f32_gemm::{linear_f32_new, linear_f32_transposed_input, PackedF32};

/// The gradients of one linear layer.
pub struct LinearGrads {
    /// `[rows, in]`
    pub dx: Vec<f32>,
    /// `[out, in]`
    pub dw: Vec<f32>,
    /// `[out]`, when asked for.
    pub db: Option<Vec<f32>>,
}

/// `x`: `[rows, in]`, `dy`: `[rows, out]`, `w`: `[out, in]` (all row-major).
pub fn linear_grads(
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    rows: usize,
    in_dim: usize,
    out_dim: usize,
    with_bias: bool,
) -> LinearGrads {
    assert_eq!(x.len(), rows * in_dim, "input size");
    assert_eq!(dy.len(), rows * out_dim, "output gradient size");
    assert_eq!(w.len(), out_dim * in_dim, "weight size");
    let dx = linear_f32_new(
        dy,
        rows,
        &PackedF32::pack_transposed(w, out_dim, in_dim),
        None,
    );
    let dw = linear_f32_transposed_input(dy, out_dim, &PackedF32::pack_transposed(x, rows, in_dim));
    let db = with_bias.then(|| {
        let mut db = vec![0f32; out_dim];
        for row in dy.chunks_exact(out_dim.max(1)) {
            for (acc, v) in db.iter_mut().zip(row) {
                *acc += v;
            }
        }
        db
    });
    LinearGrads { dx, dw, db }
}
