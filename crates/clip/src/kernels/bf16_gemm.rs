//! `y = x W^T (+ b)` with bf16 weights and bf16-rounded activations, f32 accumulation: the `nn.Linear` of the
//! bf16 path. On CPUs with AVX512-BF16 (`vdpbf16ps`: two bf16 products summed into each f32 lane, twice the f32
//! FMA rate) a BLIS-style kernel runs; with AVX2 and FMA the bf16 values are widened to f32 (a shift) and
//! multiplied with FMAs; elsewhere a portable loop computes the same products (each pair of bf16 products summed
//! in f32). bf16 products are exact in f32, so results agree to f32 summation rounding across machines.
//!
//! Layout: the weight `[n, k]` is packed once into [`Panels`]; a lane holds `(w[col][2p], w[col][2p+1])` as two
//! bf16 in one u32 — exactly the operand `vdpbf16ps` multiplies against a broadcast `(x[row][2p], x[row][2p+1])`.

use half::bf16;

use super::dispatch::{self, Features};
use super::gemm::{self, Panels, Tile, TileKernel, MR, NR};

/// The kernel a bf16 product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Portable,
    /// bf16 widened to f32, AVX2 FMA.
    Avx2,
    /// `vdpbf16ps`.
    Avx512Bf16,
}

impl Path {
    /// The fastest path `features` allow.
    fn best(features: Features) -> Self {
        if features.avx512_bf16 {
            Path::Avx512Bf16
        } else if features.avx2_fma {
            Path::Avx2
        } else {
            Path::Portable
        }
    }

    fn chosen() -> Self {
        Self::best(dispatch::chosen())
    }
}

/// The name of the kernel bf16 products run on with `features` (as `clip bench` reports it).
pub fn kernel_name(features: Features) -> &'static str {
    match Path::best(features) {
        Path::Avx512Bf16 => "avx512_bf16",
        Path::Avx2 => "avx2_fma",
        Path::Portable => "portable",
    }
}

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
        let path = Path::chosen();
        // Each weight row is rounded exactly as the activations are (on every path).
        let panels = Panels::pack(n, k.div_ceil(2), |col, row| {
            round_row(&weight[col * k..(col + 1) * k], row, path)
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
fn round_row(src: &[f32], dst: &mut [u32], path: Path) {
    // Whole chunks with vector code, the rest one pair at a time.
    let done = match path {
        // SAFETY: the path is chosen from the CPU's features: it has AVX512-BF16.
        Path::Avx512Bf16 => unsafe { simd::pack_pairs(src, dst) },
        // SAFETY: the path is chosen from the CPU's features: it has AVX2; `dst` holds `ceil(len / 2)` pairs.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { avx2::pack_pairs(src, dst) },
        _ => 0,
    };
    for (p, d) in dst.iter_mut().enumerate().skip(done) {
        let hi = src.get(2 * p + 1).copied().unwrap_or(0.0);
        *d = pair(src[2 * p], hi);
    }
}

/// Activations `[m, k]` rounded to bf16 pairs, `ceil(k / 2)` per row.
#[cfg(test)]
fn pack_rows(x: &[f32], m: usize, k: usize, path: Path) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let mut out = vec![0u32; m * pairs];
    for (src, dst) in x.chunks(k.max(1)).zip(out.chunks_mut(pairs.max(1))) {
        round_row(src, dst, path);
    }
    out
}

/// `out[m, n] = x[m, k] W^T + bias`, `x` row-major f32.
pub fn linear_bf16(x: &[f32], m: usize, w: &PackedBf16, bias: Option<&[f32]>, out: &mut [f32]) {
    linear_bf16_with(x, m, w, bias, out, Path::chosen())
}

/// [`linear_bf16`] into a new vector (not zeroed first: the kernel writes every value).
pub fn linear_bf16_new(x: &[f32], m: usize, w: &PackedBf16, bias: Option<&[f32]>) -> Vec<f32> {
    gemm::check_linear_sizes(x, m, w.k, w.out_dim(), bias);
    let kernel = Bf16Kernel {
        x,
        k: w.k,
        bias,
        path: Path::chosen(),
    };
    gemm::run_new(&kernel, m, &w.panels)
}

fn linear_bf16_with(
    x: &[f32],
    m: usize,
    w: &PackedBf16,
    bias: Option<&[f32]>,
    out: &mut [f32],
    path: Path,
) {
    gemm::check_linear_sizes(x, m, w.k, w.out_dim(), bias);
    let kernel = Bf16Kernel {
        x,
        k: w.k,
        bias,
        path,
    };
    gemm::run(&kernel, m, &w.panels, out);
}

struct Bf16Kernel<'a> {
    x: &'a [f32],
    k: usize,
    bias: Option<&'a [f32]>,
    /// Never above the CPU's: the kernel it picks must be safe to call.
    path: Path,
}

impl TileKernel for Bf16Kernel<'_> {
    type Lane = u32;

    fn pack_row(&self, row: usize, dst: &mut [u32]) {
        round_row(&self.x[row * self.k..(row + 1) * self.k], dst, self.path);
    }

    /// # Safety
    /// As [`TileKernel::tile`].
    unsafe fn tile(&self, t: &Tile<u32>) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            #[cfg(target_arch = "x86_64")]
            match self.path {
                Path::Avx512Bf16 => return gemm::dispatch_rows!(t.rows, simd::tile, t, self.bias),
                Path::Avx2 => return avx2::tile(t, self.bias),
                Path::Portable => {}
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

/// The AVX2 kernel: the tile's activation pairs widened once into two f32 streams (low and high halves), then
/// passes of up to [`gemm::AVX2_ROWS`] rows x 16 columns, each weight pair widened in registers (a shift and a
/// mask) and multiplied with FMAs, the low product before the high one.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::gemm::{self, Tile, AVX2_ROWS, KC, MR, NR};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// # Safety
    /// As [`super::super::gemm::TileKernel::tile`] (with `t.kc <= KC`); `bias`, on the first block, has at least
    /// `t.col + t.cols` values; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(t: &Tile<u32>, bias: Option<&[f32]>) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above): `t.a` has `t.kc * MR` lanes,
        // and the buffers hold `KC * MR` values; each pass stays inside the tile.
        unsafe {
            // Widened once per tile, then broadcast from memory (a load, no shuffle) in every pass.
            let mut lo = [MaybeUninit::<f32>::uninit(); KC * MR];
            let mut hi = [MaybeUninit::<f32>::uninit(); KC * MR];
            let (lo, hi) = (lo.as_mut_ptr() as *mut f32, hi.as_mut_ptr() as *mut f32);
            let lanes = t.kc * MR;
            let mask = _mm256_set1_epi32(0xffff_0000u32 as i32);
            // Whole vectors of 8 lanes, then the rest (4 when `t.kc` is odd, as MR = 12) one by one.
            let whole = lanes / 8 * 8;
            for i in (0..whole).step_by(8) {
                let v = _mm256_loadu_si256(t.a.add(i) as *const __m256i);
                _mm256_storeu_si256(lo.add(i) as *mut __m256i, _mm256_slli_epi32(v, 16));
                _mm256_storeu_si256(hi.add(i) as *mut __m256i, _mm256_and_si256(v, mask));
            }
            for i in whole..lanes {
                let v = *t.a.add(i);
                lo.add(i).write(f32::from_bits(v << 16));
                hi.add(i).write(f32::from_bits(v & 0xffff_0000));
            }
            for c0 in (0..t.cols).step_by(16) {
                for r0 in (0..t.rows).step_by(AVX2_ROWS) {
                    let rows = AVX2_ROWS.min(t.rows - r0);
                    gemm::dispatch_avx2_rows!(rows, pass, t, lo, hi, r0, c0, bias);
                }
            }
        }
    }

    /// Rows `r0..r0 + G`, tile columns `c0..c0 + 16`.
    ///
    /// # Safety
    /// As [`tile`], with `lo` and `hi` holding the widened `t.kc * MR` lanes, `r0 + G <= t.rows`, `c0 < t.cols`
    /// and `c0 + 16 <= NR`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pass<const G: usize>(
        t: &Tile<u32>,
        lo: *const f32,
        hi: *const f32,
        r0: usize,
        c0: usize,
        bias: Option<&[f32]>,
    ) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above): the panel has `NR` lanes per
        // group (zero past `n`).
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; G];
            let b = t.b.add(c0) as *const __m256i;
            let mask = _mm256_set1_epi32(0xffff_0000u32 as i32);
            for p in 0..t.kc {
                let (w0, w1) = (
                    _mm256_loadu_si256(b.add(p * NR / 8)),
                    _mm256_loadu_si256(b.add(p * NR / 8 + 1)),
                );
                let (l0, l1) = (
                    _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)),
                    _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16)),
                );
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*lo.add(p * MR + r0 + r));
                    acc_row[0] = _mm256_fmadd_ps(x, l0, acc_row[0]);
                    acc_row[1] = _mm256_fmadd_ps(x, l1, acc_row[1]);
                }
                let (h0, h1) = (
                    _mm256_castsi256_ps(_mm256_and_si256(w0, mask)),
                    _mm256_castsi256_ps(_mm256_and_si256(w1, mask)),
                );
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*hi.add(p * MR + r0 + r));
                    acc_row[0] = _mm256_fmadd_ps(x, h0, acc_row[0]);
                    acc_row[1] = _mm256_fmadd_ps(x, h1, acc_row[1]);
                }
            }
            gemm::avx2::store_f32(&acc, t, r0, c0, bias);
        }
    }

    /// Rounds `src` to bf16 pairs 16 values at a time, as `half` rounds (to nearest even; a NaN stays a quiet
    /// NaN with its sign and top payload bits); returns how many pairs it wrote.
    ///
    /// # Safety
    /// `dst` holds at least `src.len() / 2` pairs; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pack_pairs(src: &[f32], dst: &mut [u32]) -> usize {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let chunks = src.len() / 16;
            for c in 0..chunks {
                let lo = round(_mm256_loadu_ps(src.as_ptr().add(16 * c)));
                let hi = round(_mm256_loadu_ps(src.as_ptr().add(16 * c + 8)));
                // Lane-wise pack to u16 (exact: each value is below 2^16), then the 64-bit quarters back in
                // source order.
                let packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0b11_01_10_00);
                _mm256_storeu_si256(dst.as_mut_ptr().add(8 * c) as *mut __m256i, packed);
            }
            chunks * 8
        }
    }

    /// The bf16 bits of 8 f32, one per 32-bit lane: `(x + 0x7fff + lsb) >> 16`, NaNs quieted.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn round(v: __m256) -> __m256i {
        let bits = _mm256_castps_si256(v);
        let high = _mm256_srli_epi32(bits, 16);
        let lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
        let bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb);
        let rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
        let quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
        let nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        _mm256_blendv_epi8(rounded, quiet, nan)
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

    /// Every path this CPU can run, whatever `CLIP_KERNELS` says.
    fn paths() -> Vec<Path> {
        let f = dispatch::Features::detect();
        [
            (Path::Portable, true),
            (Path::Avx2, f.avx2_fma),
            (Path::Avx512Bf16, f.avx512_bf16),
        ]
        .into_iter()
        .filter_map(|(path, runs)| runs.then_some(path))
        .collect()
    }

    #[test]
    fn matches_the_rounded_reference_on_odd_shapes_on_every_path() {
        // Tails in every dimension: m not a multiple of MR (nor of the AVX2 passes' 6), n not of NR (nor of 8 or
        // 16), k odd and over one cache block (k = 385: 193 pairs, one past the block).
        for &(m, k, n) in &[
            (1, 3, 1),
            (13, 257, 33),
            (50, 768, 70),
            (25, 301, 64),
            (7, 385, 17),
            (11, 31, 45),
        ] {
            let x = lcg(m * k, 1 + m as u64);
            let w = lcg(n * k, 7 + n as u64);
            let bias = lcg(n, 3);
            let packed = PackedBf16::pack(&w, n, k);
            let want = reference(&x, m, k, &w, n, &bias);
            for path in paths() {
                let mut out = vec![f32::NAN; m * n];
                linear_bf16_with(&x, m, &packed, Some(&bias), &mut out, path);
                let worst = max_abs_diff(&out, &want);
                assert!(
                    worst < 1e-4 * (k as f32).sqrt(),
                    "{m}x{k}x{n} {path:?}: max diff {worst}"
                );
            }
        }
    }

    #[test]
    fn every_path_rounds_as_the_scalar_code() {
        let (m, k) = (3, 301);
        let mut x = lcg(m * k, 11);
        // Ties both ways (to even), values that round up into the exponent or to infinity, infinities, NaNs.
        let special = [
            0x3f80_8000u32,
            0x3f81_8000,
            0xbf80_8000,
            0x3f80_8001,
            0x3fff_ffff,
            0x7f7f_ffff,
            0xff7f_ffff,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0001,
            0xffff_ffff,
            0x7f80_0001,
            0,
            0x8000_0000,
        ];
        for (v, bits) in x.iter_mut().step_by(7).zip(special) {
            *v = f32::from_bits(bits);
        }
        let want = pack_rows(&x, m, k, Path::Portable);
        for path in paths() {
            assert_eq!(pack_rows(&x, m, k, path), want, "{path:?}");
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
