//! `y = x W^T (+ b)` in f32 with the weight packed once at load: the `nn.Linear` of the exact path. AVX-512 FMA
//! or AVX2 FMA at the process's [`Level`], a portable loop elsewhere; all sum each output in the same order over
//! `k` blocks (the two FMA kernels bit for bit alike).

use super::dispatch::{self, Level};
use super::gemm::{self, Panels, Tile, TileKernel, MR, NR};

/// A weight matrix `[n, k]` (PyTorch's `nn.Linear` layout) packed for the f32 kernel.
#[derive(Debug, Clone)]
pub struct PackedF32 {
    k: usize,
    panels: Panels<f32>,
}

impl PackedF32 {
    /// Packs `weight` (row-major `[n, k]`).
    pub fn pack(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "weight size");
        let panels = Panels::pack(n, k, |col, row| {
            row.copy_from_slice(&weight[col * k..(col + 1) * k])
        });
        Self { k, panels }
    }

    /// Packs the transpose of `values` (row-major `[rows, cols]`): the weight `[cols, rows]` whose row `c` is
    /// column `c` of `values`. Backward passes multiply by transposed weights and activations this way.
    pub fn pack_transposed(values: &[f32], rows: usize, cols: usize) -> Self {
        Self {
            k: rows,
            panels: Panels::pack_transposed(values, rows, cols),
        }
    }

    pub fn out_dim(&self) -> usize {
        self.panels.out_dim()
    }

    pub fn in_dim(&self) -> usize {
        self.k
    }

    /// The weight back in `[n, k]` row-major order.
    #[cfg(test)]
    pub fn unpack(&self) -> Vec<f32> {
        self.panels.rows()
    }
}

/// `out[m, n] = x[m, k] W^T + bias`, `x` row-major f32.
pub fn linear_f32(x: &[f32], m: usize, w: &PackedF32, bias: Option<&[f32]>, out: &mut [f32]) {
    linear_f32_with(x, m, w, bias, out, dispatch::level(), Rows::Stored)
}

/// [`linear_f32`] into a new vector (not zeroed first: the kernel writes every value).
pub fn linear_f32_new(x: &[f32], m: usize, w: &PackedF32, bias: Option<&[f32]>) -> Vec<f32> {
    gemm::check_linear_sizes(x, m, w.k, w.out_dim(), bias);
    let kernel = F32Kernel {
        x,
        m,
        k: w.k,
        bias,
        level: dispatch::level(),
        rows: Rows::Stored,
    };
    gemm::run_new(&kernel, m, &w.panels)
}

/// `out[m, n] = x_t^T W^T`: [`linear_f32`] of the activations given transposed (`x_t` row-major `[k, m]`), as a
/// weight gradient `dy^T x` needs them, without materialising the transpose.
pub fn linear_f32_transposed_input(x_t: &[f32], m: usize, w: &PackedF32) -> Vec<f32> {
    assert_eq!(x_t.len(), m * w.k, "input size");
    let kernel = F32Kernel {
        x: x_t,
        m,
        k: w.k,
        bias: None,
        level: dispatch::level(),
        rows: Rows::Transposed,
    };
    gemm::run_new(&kernel, m, &w.panels)
}

/// How the activation rows lie in memory.
#[derive(Clone, Copy)]
enum Rows {
    /// Row-major `[m, k]`.
    Stored,
    /// Row-major `[k, m]`: row `r` is column `r`.
    Transposed,
}

fn linear_f32_with(
    x: &[f32],
    m: usize,
    w: &PackedF32,
    bias: Option<&[f32]>,
    out: &mut [f32],
    level: Level,
    rows: Rows,
) {
    gemm::check_linear_sizes(x, m, w.k, w.out_dim(), bias);
    let kernel = F32Kernel {
        x,
        m,
        k: w.k,
        bias,
        level,
        rows,
    };
    gemm::run(&kernel, m, &w.panels, out);
}

struct F32Kernel<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    bias: Option<&'a [f32]>,
    /// Never above the CPU's: the kernel it picks must be safe to call.
    level: Level,
    rows: Rows,
}

impl TileKernel for F32Kernel<'_> {
    type Lane = f32;

    fn pack_row(&self, row: usize, dst: &mut [f32]) {
        match self.rows {
            Rows::Stored => dst.copy_from_slice(&self.x[row * self.k..(row + 1) * self.k]),
            Rows::Transposed => {
                for (p, d) in dst.iter_mut().enumerate() {
                    *d = self.x[p * self.m + row];
                }
            }
        }
    }

    /// # Safety
    /// As [`TileKernel::tile`].
    unsafe fn tile(&self, t: &Tile<f32>) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            #[cfg(target_arch = "x86_64")]
            match self.level {
                Level::Avx512 => return gemm::dispatch_rows!(t.rows, simd_tile, t, self.bias),
                Level::Avx2 => return avx2::tile(t, self.bias),
                Level::Portable => {}
            }
            let mut tile = [[0f32; NR]; MR];
            for (r, tile_row) in tile.iter_mut().enumerate().take(t.rows) {
                for p in 0..t.kc {
                    let x = *t.a.add(p * MR + r);
                    let b = std::slice::from_raw_parts(t.b.add(p * NR), NR);
                    for (acc, w) in tile_row.iter_mut().zip(b) {
                        *acc += x * w;
                    }
                }
            }
            gemm::store_f32_portable(&tile, t, self.bias);
        }
    }
}

/// One `R x NR` tile: `2R` accumulators, two weight vectors and one broadcast per row and `k`.
///
/// # Safety
/// As [`TileKernel::tile`], with `R == t.rows`; `bias`, on the first block, has at least
/// `t.col + t.cols` values; the CPU has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn simd_tile<const R: usize>(t: &Tile<f32>, bias: Option<&[f32]>) {
    // SAFETY: the caller upholds this function's contract (`# Safety` above).
    unsafe {
        use std::arch::x86_64::*;
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for p in 0..t.kc {
            let b0 = _mm512_loadu_ps(t.b.add(p * NR));
            let b1 = _mm512_loadu_ps(t.b.add(p * NR + 16));
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*t.a.add(p * MR + r));
                acc_row[0] = _mm512_fmadd_ps(x, b0, acc_row[0]);
                acc_row[1] = _mm512_fmadd_ps(x, b1, acc_row[1]);
            }
        }
        gemm::simd::store_f32(&acc, t, bias);
    }
}

/// The AVX2 kernel: a tile as passes of up to [`gemm::AVX2_ROWS`] rows x 16 columns (12 accumulators, two
/// weight vectors and one broadcast in AVX2's 16 registers), each output summed over `k` in the order of the
/// AVX-512 kernel.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::gemm::{self, Tile, AVX2_ROWS, MR, NR};
    use std::arch::x86_64::*;

    /// # Safety
    /// As [`super::super::gemm::TileKernel::tile`]; `bias`, on the first block, has at least `t.col + t.cols`
    /// values; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(t: &Tile<f32>, bias: Option<&[f32]>) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above); each pass stays inside the
        // tile (a half past `t.cols` is skipped).
        unsafe {
            for c0 in (0..t.cols).step_by(16) {
                for r0 in (0..t.rows).step_by(AVX2_ROWS) {
                    let rows = AVX2_ROWS.min(t.rows - r0);
                    gemm::dispatch_avx2_rows!(rows, pass, t, r0, c0, bias);
                }
            }
        }
    }

    /// Rows `r0..r0 + G`, tile columns `c0..c0 + 16`.
    ///
    /// # Safety
    /// As [`tile`], with `r0 + G <= t.rows` and `c0 < t.cols`, `c0 + 16 <= NR`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pass<const G: usize>(t: &Tile<f32>, r0: usize, c0: usize, bias: Option<&[f32]>) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above): the panel has `NR` lanes per
        // group (zero past `n`) and the activation block `MR` per group.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; G];
            let (a, b) = (t.a.add(r0), t.b.add(c0));
            for p in 0..t.kc {
                let b0 = _mm256_loadu_ps(b.add(p * NR));
                let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*a.add(p * MR + r));
                    acc_row[0] = _mm256_fmadd_ps(x, b0, acc_row[0]);
                    acc_row[1] = _mm256_fmadd_ps(x, b1, acc_row[1]);
                }
            }
            gemm::avx2::store_f32(&acc, t, r0, c0, bias);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lcg, max_abs_diff};

    fn reference(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let s: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[c * k + i] as f64)
                    .sum();
                out[r * n + c] = (s + bias[c] as f64) as f32;
            }
        }
        out
    }

    #[test]
    fn matches_f64_reference_on_odd_shapes_on_every_level() {
        // Tails in every dimension: m not a multiple of MR (nor of the AVX2 passes' 6), n not of NR (nor of 8 or
        // 16), k over one cache block.
        for &(m, k, n) in &[
            (1, 3, 1),
            (13, 257, 33),
            (50, 768, 70),
            (25, 301, 64),
            (97, 130, 5),
            (7, 200, 17),
            (11, 385, 45),
        ] {
            let x = lcg(m * k, 1 + m as u64);
            let w = lcg(n * k, 7 + n as u64);
            let bias = lcg(n, 3);
            let packed = PackedF32::pack(&w, n, k);
            let want = reference(&x, m, k, &w, n, &bias);
            let mut fma_outputs = Vec::new();
            for level in Level::runnable() {
                let mut out = vec![f32::NAN; m * n];
                linear_f32_with(&x, m, &packed, Some(&bias), &mut out, level, Rows::Stored);
                let worst = max_abs_diff(&out, &want);
                assert!(
                    worst < 1e-5 * (k as f32).sqrt(),
                    "{m}x{k}x{n} {level:?}: {worst}"
                );
                if level != Level::Portable {
                    fma_outputs.push(out);
                }
            }
            // AVX2 and AVX-512 make the same FMAs in the same order.
            for other in fma_outputs.iter().skip(1) {
                assert_eq!(other, &fma_outputs[0], "{m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn transposed_operands_give_the_backward_products() {
        // dX = dY W and dW = dY^T X for y = x W^T, against the f64 reference on odd shapes.
        for &(rows, inp, out) in &[(13, 257, 33), (50, 64, 96), (7, 5, 3)] {
            let x = lcg(rows * inp, 11);
            let w = lcg(out * inp, 12);
            let dy = lcg(rows * out, 13);
            let zero = vec![0f32; inp.max(out)];
            // dX[rows, inp] = dy[rows, out] . (W^T)^T with W^T [inp, out] as the weight.
            let w_t: Vec<f32> = (0..inp)
                .flat_map(|c| (0..out).map(move |r| (r, c)))
                .map(|(r, c)| w[r * inp + c])
                .collect();
            let want_dx = reference(&dy, rows, out, &w_t, inp, &zero[..inp]);
            let dx = linear_f32_new(&dy, rows, &PackedF32::pack_transposed(&w, out, inp), None);
            assert!(
                max_abs_diff(&dx, &want_dx) < 1e-5 * (out as f32).sqrt(),
                "dX {rows}x{inp}x{out}"
            );
            // dW[out, inp] = dy^T x.
            let dy_t: Vec<f32> = (0..out)
                .flat_map(|c| (0..rows).map(move |r| (r, c)))
                .map(|(r, c)| dy[r * out + c])
                .collect();
            let x_t: Vec<f32> = (0..inp)
                .flat_map(|c| (0..rows).map(move |r| (r, c)))
                .map(|(r, c)| x[r * inp + c])
                .collect();
            let want_dw = reference(&dy_t, out, rows, &x_t, inp, &zero[..inp]);
            let dw =
                linear_f32_transposed_input(&dy, out, &PackedF32::pack_transposed(&x, rows, inp));
            assert!(
                max_abs_diff(&dw, &want_dw) < 1e-5 * (rows as f32).sqrt(),
                "dW {rows}x{inp}x{out}"
            );
        }
    }

    #[test]
    fn unpack_gives_the_weight_back() {
        let w = lcg(37 * 9, 5);
        assert_eq!(PackedF32::pack(&w, 37, 9).unpack(), w);
    }
}
