//! `y = x W^T (+ b)` with bf16 weights and bf16-rounded activations, f32 accumulation: the `nn.Linear` of the
//! bf16 path. On CPUs with AVX512-BF16 (`vdpbf16ps`: two bf16 products summed into each f32 lane, twice the f32
//! FMA rate) a BLIS-style kernel runs; elsewhere a portable loop computes the same products (each pair of bf16
//! products summed in f32), so results agree to f32 rounding across machines.
//!
//! Layout: the weight `[n, k]` is packed once into [`Panels`]; a lane holds `(w[col][2p], w[col][2p+1])` as two
//! bf16 in one u32 — exactly the operand `vdpbf16ps` multiplies against a broadcast `(x[row][2p], x[row][2p+1])`.

use half::bf16;

use super::gemm::{self, Panels, Tile, TileKernel, MR, NR};

/// Two bf16 values in one u32, the low half first (the pair layout `vdpbf16ps` reads).
#[inline]
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16::from_f32(lo).to_bits()) | (u32::from(bf16::from_f32(hi).to_bits()) << 16)
}

#[inline]
fn unpair(p: u32) -> (f32, f32) {
    (
        bf16::from_bits(p as u16).to_f32(),
        bf16::from_bits((p >> 16) as u16).to_f32(),
    )
}

/// A weight matrix `[n, k]` (PyTorch's `nn.Linear` layout) rounded to bf16 and packed for the kernel.
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    k: usize,
    panels: Panels<u32>,
}

impl PackedBf16 {
    /// Packs `weight` (row-major `[n, k]`); the odd tail of `k` is zero.
    pub fn pack(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "weight size");
        let use_simd = simd_available();
        // Each weight row is rounded exactly as the activations are.
        let panels = Panels::pack(n, k.div_ceil(2), |col, row| {
            round_row(&weight[col * k..(col + 1) * k], row, use_simd)
        });
        Self { k, panels }
    }

    pub fn out_dim(&self) -> usize {
        self.panels.out_dim()
    }

    pub fn in_dim(&self) -> usize {
        self.k
    }

    /// The weight as the kernel sees it (bf16-rounded), `[n, k]` row-major: for tests and conversions.
    #[cfg(test)]
    pub fn unpack(&self) -> Vec<f32> {
        let (n, k) = (self.out_dim(), self.k);
        let mut out = vec![0f32; n * k];
        for (col, row) in out.chunks_mut(k.max(1)).enumerate().take(n) {
            for p in 0..self.panels.groups() {
                let (lo, hi) = unpair(self.panels.lane(col, p));
                row[2 * p] = lo;
                if 2 * p + 1 < k {
                    row[2 * p + 1] = hi;
                }
            }
        }
        out
    }
}

/// Rounds one row to bf16 pairs (the last pair's high half is zero when the row is odd).
fn round_row(src: &[f32], dst: &mut [u32], use_simd: bool) {
    // Whole 32-value chunks with the CPU's converter, the rest one pair at a time.
    let done = if use_simd {
        // SAFETY: `use_simd` means the CPU has AVX512-BF16.
        unsafe { simd::pack_pairs(src, dst) }
    } else {
        0
    };
    for (p, d) in dst.iter_mut().enumerate().skip(done) {
        let hi = src.get(2 * p + 1).copied().unwrap_or(0.0);
        *d = pair(src[2 * p], hi);
    }
}

/// Activations `[m, k]` rounded to bf16 pairs, `ceil(k / 2)` per row.
#[cfg(test)]
fn pack_rows(x: &[f32], m: usize, k: usize, use_simd: bool) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let mut out = vec![0u32; m * pairs];
    for (src, dst) in x.chunks(k.max(1)).zip(out.chunks_mut(pairs.max(1))) {
        round_row(src, dst, use_simd);
    }
    out
}

/// `out[m, n] = x[m, k] W^T + bias`, `x` row-major f32.
pub fn linear_bf16(x: &[f32], m: usize, w: &PackedBf16, bias: Option<&[f32]>, out: &mut [f32]) {
    linear_bf16_with(x, m, w, bias, out, simd_available())
}

fn linear_bf16_with(
    x: &[f32],
    m: usize,
    w: &PackedBf16,
    bias: Option<&[f32]>,
    out: &mut [f32],
    use_simd: bool,
) {
    gemm::check_linear_sizes(x, m, w.k, w.out_dim(), bias);
    let kernel = Bf16Kernel {
        x,
        k: w.k,
        bias,
        use_simd,
    };
    gemm::run(&kernel, m, &w.panels, out);
}

struct Bf16Kernel<'a> {
    x: &'a [f32],
    k: usize,
    bias: Option<&'a [f32]>,
    use_simd: bool,
}

impl TileKernel for Bf16Kernel<'_> {
    type Lane = u32;

    fn pack_row(&self, row: usize, dst: &mut [u32]) {
        round_row(
            &self.x[row * self.k..(row + 1) * self.k],
            dst,
            self.use_simd,
        );
    }

    /// # Safety
    /// As [`TileKernel::tile`].
    unsafe fn tile(&self, t: &Tile<u32>) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if self.use_simd {
                return gemm::dispatch_rows!(t.rows, simd::tile, t, self.bias);
            }
            // The same arithmetic as `vdpbf16ps`: each pair's two products summed, then added.
            let mut tile = [[0f32; NR]; MR];
            for (r, tile_row) in tile.iter_mut().enumerate().take(t.rows) {
                for p in 0..t.kc {
                    let (x0, x1) = unpair(*t.a.add(p * MR + r));
                    let b = std::slice::from_raw_parts(t.b.add(p * NR), NR);
                    for (acc, &w) in tile_row.iter_mut().zip(b) {
                        let (w0, w1) = unpair(w);
                        *acc += x0 * w0 + x1 * w1;
                    }
                }
            }
            gemm::store_f32_portable(&tile, t, self.bias);
        }
    }
}

/// Whether the AVX512-BF16 kernel can run here.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        gemm::avx512_available() && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::gemm::{self, Tile, MR, NR};
    use std::arch::x86_64::*;

    /// One `R x NR` tile: `2R` accumulators, two weight vectors, one broadcast pair per row.
    ///
    /// # Safety
    /// As [`super::super::gemm::TileKernel::tile`], with `R == t.rows`; `bias`, on the first block, has at least
    /// `t.col + t.cols` values; the CPU has AVX-512 F, BW and BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn tile<const R: usize>(t: &Tile<u32>, bias: Option<&[f32]>) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            for p in 0..t.kc {
                let b0 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    t.b.add(p * NR) as *const _,
                ));
                let b1 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    t.b.add(p * NR + 16) as *const _,
                ));
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                        *t.a.add(p * MR + r) as i32,
                    ));
                    acc_row[0] = _mm512_dpbf16_ps(acc_row[0], x, b0);
                    acc_row[1] = _mm512_dpbf16_ps(acc_row[1], x, b1);
                }
            }
            gemm::simd::store_f32(&acc, t, bias);
        }
    }

    /// Rounds `src` to bf16 pairs (round to nearest even) 32 values at a time; returns how many pairs it wrote.
    ///
    /// # Safety
    /// `dst` holds at least `src.len() / 2` pairs; the CPU has AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pack_pairs(src: &[f32], dst: &mut [u32]) -> usize {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let chunks = src.len() / 32;
            for c in 0..chunks {
                let lo = _mm512_loadu_ps(src.as_ptr().add(32 * c));
                let hi = _mm512_loadu_ps(src.as_ptr().add(32 * c + 16));
                // Elements of the second operand fill the low half: bf16 values in source order.
                let packed = _mm512_cvtne2ps_pbh(hi, lo);
                _mm512_storeu_si512(
                    dst.as_mut_ptr().add(16 * c) as *mut _,
                    std::mem::transmute::<__m512bh, __m512i>(packed),
                );
            }
            chunks * 16
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    /// # Safety
    /// Always safe: nothing is written off x86_64.
    pub(super) unsafe fn pack_pairs(_src: &[f32], _dst: &mut [u32]) -> usize {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lcg, max_abs_diff};

    /// f64 reference over the bf16-rounded operands: the kernel may differ only by f32 summation rounding.
    fn reference(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
        let round = |v: f32| bf16::from_f32(v).to_f32() as f64;
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let s: f64 = (0..k)
                    .map(|i| round(x[r * k + i]) * round(w[c * k + i]))
                    .sum();
                out[r * n + c] = (s + bias[c] as f64) as f32;
            }
        }
        out
    }

    #[test]
    fn matches_the_rounded_reference_on_odd_shapes_both_paths() {
        // Tails in every dimension: m not a multiple of MR, n not of NR, k odd and over one cache block.
        for &(m, k, n) in &[(1, 3, 1), (13, 257, 33), (50, 768, 70), (25, 301, 64)] {
            let x = lcg(m * k, 1 + m as u64);
            let w = lcg(n * k, 7 + n as u64);
            let bias = lcg(n, 3);
            let packed = PackedBf16::pack(&w, n, k);
            let want = reference(&x, m, k, &w, n, &bias);
            for use_simd in [false, simd_available()] {
                let mut out = vec![f32::NAN; m * n];
                linear_bf16_with(&x, m, &packed, Some(&bias), &mut out, use_simd);
                let worst = max_abs_diff(&out, &want);
                assert!(
                    worst < 1e-4 * (k as f32).sqrt(),
                    "{m}x{k}x{n} simd={use_simd}: max diff {worst}"
                );
            }
        }
    }

    #[test]
    fn simd_and_scalar_rounding_agree() {
        let (m, k) = (3, 301);
        let x = lcg(m * k, 11);
        if simd_available() {
            assert_eq!(pack_rows(&x, m, k, false), pack_rows(&x, m, k, true));
        }
    }

    #[test]
    fn unpack_gives_the_rounded_weight() {
        let w = lcg(5 * 7, 5);
        let packed = PackedBf16::pack(&w, 5, 7);
        let back = packed.unpack();
        for (a, b) in w.iter().zip(&back) {
            assert_eq!(bf16::from_f32(*a).to_f32(), *b);
        }
    }
}
