//! `y = x W^T (+ b)` with int8 weights (symmetric, one scale per output channel) and activations quantised per
//! row at run time (asymmetric u8: `x ≈ s_x (q - z)`), i32 accumulation: the `nn.Linear` of the int8 path.
//!
//! `Σ_k x w ≈ s_x s_w (Σ_k q_x q_w - z Σ_k q_w)`: the integer sum is exact, and the zero-point term uses the
//! column sums computed at pack time. On CPUs with AVX512-VNNI, `vpdpbusd` multiplies four u8 activations by four
//! s8 weights and adds the four products into each i32 lane (four times the f32 FMA rate); with AVX2, both are
//! widened to i16 and `vpmaddwd` sums pairs of products exactly (`vpmaddubsw` would saturate); elsewhere a portable
//! loop computes the same integers. Every path quantises alike and runs the same f32 epilogue, so results agree
//! exactly across machines.
//!
//! Layout: the weight is packed into [`Panels`] whose lane holds four consecutive s8 weights of one column, the
//! operand `vpdpbusd` multiplies against a broadcast quad of the row's u8 activations.

use super::dispatch::{self, Features};
use super::gemm::{self, Panels, Tile, TileKernel, MR, NR};
use super::pool::new_in_chunks;

/// The kernel an int8 product runs on (and the code that quantises its activations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Portable,
    /// i16 products with `vpmaddwd`.
    Avx2,
    /// `vpdpbusd`.
    Avx512Vnni,
}

impl Path {
    /// The fastest path `features` allow.
    fn best(features: Features) -> Self {
        if features.avx512_vnni {
            Path::Avx512Vnni
        } else if features.avx2_fma {
            Path::Avx2
        } else {
            Path::Portable
        }
    }
}

/// The name of the kernel int8 products run on with `features` (as `clip bench` reports it).
pub fn kernel_name(features: Features) -> &'static str {
    match Path::best(features) {
        Path::Avx512Vnni => "avx512_vnni",
        Path::Avx2 => "avx2",
        Path::Portable => "portable",
    }
}

/// A weight matrix `[n, k]` quantised to int8 per output channel and packed for the kernel.
#[derive(Debug, Clone)]
pub struct PackedInt8 {
    k: usize,
    panels: Panels<u32>,
    /// Per output channel: `w ≈ scale * q`.
    scale: Vec<f32>,
    /// Per output channel: `Σ_k q`, for the activations' zero point.
    col_sum: Vec<i32>,
}

/// Round to nearest, ties to even, for `|v| < 2^22`: adding and subtracting 1.5 * 2^23 leaves the rounded value
/// (plain arithmetic, so it vectorises where `round_ties_even` would call libm on baseline x86-64).
#[inline(always)]
fn round_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// The symmetric per-channel scale of one weight row: `max |w| / 127` (1 for an all-zero row).
fn weight_scale(row: &[f32]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max > 0.0 {
        max / 127.0
    } else {
        1.0
    }
}

impl PackedInt8 {
    /// Quantises and packs `weight` (row-major `[n, k]`); the tail of `k` past a multiple of 4 is zero.
    pub fn pack(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "weight size");
        let rows = || weight.chunks(k.max(1)).take(n);
        let scale: Vec<f32> = rows().map(weight_scale).collect();
        // Quantised on all cores while packing.
        let panels = Panels::pack(n, k.div_ceil(4), |col, lanes| {
            let (row, inv) = (&weight[col * k..(col + 1) * k], 1.0 / scale[col]);
            for (g, lane) in lanes.iter_mut().enumerate() {
                let byte = |i: usize| {
                    row.get(4 * g + i).map_or(0, |&v| {
                        round_small(v * inv).clamp(-127.0, 127.0) as i8 as u8
                    })
                };
                *lane = u32::from_ne_bytes([byte(0), byte(1), byte(2), byte(3)]);
            }
        });
        let col_sum = (0..n)
            .map(|col| {
                (0..panels.groups())
                    .flat_map(|g| panels.lane(col, g).to_ne_bytes())
                    .map(|b| i32::from(b as i8))
                    .sum()
            })
            .collect();
        Self {
            k,
            panels,
            scale,
            col_sum,
        }
    }

    pub fn out_dim(&self) -> usize {
        self.panels.out_dim()
    }

    pub fn in_dim(&self) -> usize {
        self.k
    }

    /// The weight as the kernel sees it (`scale * q`), `[n, k]` row-major: for tests and conversions.
    #[cfg(test)]
    pub fn unpack(&self) -> Vec<f32> {
        let (n, k) = (self.out_dim(), self.k);
        let mut out = vec![0f32; n * k];
        for (col, row) in out.chunks_mut(k.max(1)).enumerate().take(n) {
            for (i, v) in row.iter_mut().enumerate() {
                let byte = self.panels.lane(col, i / 4).to_ne_bytes()[i % 4] as i8;
                *v = f32::from(byte) * self.scale[col];
            }
        }
        out
    }
}

/// Per-row quantisation parameters: `x[r] ≈ scale[r] * (q[r] - zero[r])`.
struct RowParams {
    scale: Vec<f32>,
    zero: Vec<i32>,
}

/// Rows whose ranges one thread scans before the work is split (about 64 K values each).
const PARAMS_PARALLEL_MIN_VALUES: usize = 1 << 16;

/// Every row's parameters, the rows split across the cores: one thread scanning all of them (up to m x k
/// values per product) kept the others waiting.
fn row_params_all(x: &[f32], m: usize, k: usize, path: Path) -> RowParams {
    let rows_per_part = m
        .div_ceil(crate::threads::count())
        .max(PARAMS_PARALLEL_MIN_VALUES.div_ceil(k.max(1)));
    let fill = |_, first: usize, dst: &mut [std::mem::MaybeUninit<(f32, i32)>]| {
        for (i, d) in dst.iter_mut().enumerate() {
            let row = first + i;
            d.write(row_param(&x[row * k..(row + 1) * k], path));
        }
    };
    // SAFETY: `fill` writes every value of its part.
    let params = unsafe { new_in_chunks(m, rows_per_part, fill) };
    let (scale, zero) = params.into_iter().unzip();
    RowParams { scale, zero }
}

/// One row's scale and zero point.
fn row_param(src: &[f32], path: Path) -> (f32, i32) {
    let (lo, hi) = match path {
        // SAFETY: the path is chosen from the CPU's features: it has AVX-512 F.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512Vnni => unsafe { simd::min_max(src) },
        // SAFETY: the path is chosen from the CPU's features: it has AVX2.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { avx2::min_max(src) },
        _ => min_max(src),
    };
    let (scale, zero) = row_params(lo, hi);
    (scale, zero as i32)
}

/// Quantises one row with its parameters into quads of u8 (the tail past `src.len()` is zero).
fn quantize_row(src: &[f32], scale: f32, zero: i32, lanes: &mut [u32], path: Path) {
    // SAFETY: a u32 slice viewed as its bytes (u8 has no alignment or validity requirement).
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(lanes.as_mut_ptr() as *mut u8, lanes.len() * 4) };
    let (inv_scale, zero) = (1.0 / scale, zero as f32);
    let done = match path {
        // SAFETY: the path is chosen from the CPU's features: it has AVX-512 F; `bytes` holds at least
        // `src.len()` values.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512Vnni => unsafe { simd::quantize(src, inv_scale, zero, bytes) },
        // SAFETY: as above, with AVX2.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { avx2::quantize(src, inv_scale, zero, bytes) },
        _ => 0,
    };
    quantize_tail(&src[done..], inv_scale, zero, &mut bytes[done..src.len()]);
    bytes[src.len()..].fill(0);
}

fn min_max(src: &[f32]) -> (f32, f32) {
    src.iter()
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// The row's scale and zero point: the range always includes 0 (so 0 is exact), mapped onto 0..=255.
fn row_params(lo: f32, hi: f32) -> (f32, f32) {
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    (scale, zero)
}

fn quantize_tail(src: &[f32], inv_scale: f32, zero: f32, dst: &mut [u8]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = (v * inv_scale + zero).round_ties_even().clamp(0.0, 255.0) as u8;
    }
}

/// `out[m, n] ≈ x[m, k] W^T + bias`, `x` row-major f32.
pub fn linear_int8(x: &[f32], m: usize, w: &PackedInt8, bias: Option<&[f32]>, out: &mut [f32]) {
    linear_int8_with(x, m, w, bias, out, Path::best(dispatch::chosen()))
}

/// [`linear_int8`] into a new vector (not zeroed first: the kernel writes every value).
pub fn linear_int8_new(x: &[f32], m: usize, w: &PackedInt8, bias: Option<&[f32]>) -> Vec<f32> {
    gemm::check_linear_sizes(x, m, w.k, w.out_dim(), bias);
    let path = Path::best(dispatch::chosen());
    let params = row_params_all(x, m, w.k, path);
    gemm::run_new(&Int8Kernel::new(x, w, bias, &params, path), m, &w.panels)
}

fn linear_int8_with(
    x: &[f32],
    m: usize,
    w: &PackedInt8,
    bias: Option<&[f32]>,
    out: &mut [f32],
    path: Path,
) {
    gemm::check_linear_sizes(x, m, w.k, w.out_dim(), bias);
    let params = row_params_all(x, m, w.k, path);
    gemm::run(
        &Int8Kernel::new(x, w, bias, &params, path),
        m,
        &w.panels,
        out,
    );
}

struct Int8Kernel<'a> {
    x: &'a [f32],
    k: usize,
    bias: Option<&'a [f32]>,
    row_scale: &'a [f32],
    row_zero: &'a [i32],
    col_scale: &'a [f32],
    col_sum: &'a [i32],
    /// Never above the CPU's: the kernel it picks must be safe to call.
    path: Path,
}

impl<'a> Int8Kernel<'a> {
    fn new(
        x: &'a [f32],
        w: &'a PackedInt8,
        bias: Option<&'a [f32]>,
        params: &'a RowParams,
        path: Path,
    ) -> Self {
        Self {
            x,
            k: w.k,
            bias,
            row_scale: &params.scale,
            row_zero: &params.zero,
            col_scale: &w.scale,
            col_sum: &w.col_sum,
            path,
        }
    }
}

impl TileKernel for Int8Kernel<'_> {
    type Lane = u32;

    fn pack_row(&self, row: usize, dst: &mut [u32]) {
        let src = &self.x[row * self.k..(row + 1) * self.k];
        quantize_row(src, self.row_scale[row], self.row_zero[row], dst, self.path);
    }

    /// # Safety
    /// As [`TileKernel::tile`].
    unsafe fn tile(&self, t: &Tile<u32>) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            #[cfg(target_arch = "x86_64")]
            match self.path {
                Path::Avx512Vnni => return gemm::dispatch_rows!(t.rows, simd::tile, t, self),
                Path::Avx2 => return avx2::tile(t, self),
                Path::Portable => {}
            }
            let mut acc = [[0i32; NR]; MR];
            for (r, acc_row) in acc.iter_mut().enumerate().take(t.rows) {
                for p in 0..t.kc {
                    let x = (*t.a.add(p * MR + r)).to_ne_bytes();
                    let b = std::slice::from_raw_parts(t.b.add(p * NR), NR);
                    for (a, &w) in acc_row.iter_mut().zip(b) {
                        let w = w.to_ne_bytes();
                        for i in 0..4 {
                            *a += i32::from(x[i]) * i32::from(w[i] as i8);
                        }
                    }
                }
            }
            for (r, acc_row) in acc.iter().enumerate().take(t.rows) {
                let row = t.row + r;
                let dst = std::slice::from_raw_parts_mut(t.out.add(r * t.ld), t.cols);
                for (c, (d, &sum)) in dst.iter_mut().zip(acc_row).enumerate() {
                    let col = t.col + c;
                    let (sum, base) = if t.first {
                        let bias = self.bias.map_or(0.0, |b| b[col]);
                        (sum - self.row_zero[row] * self.col_sum[col], bias)
                    } else {
                        (sum, *d)
                    };
                    *d = base + sum as f32 * (self.row_scale[row] * self.col_scale[col]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::gemm::{simd::column_masks, Tile, MR, NR};
    use super::Int8Kernel;
    use std::arch::x86_64::*;

    /// One `R x NR` tile: `2R` i32 accumulators, two weight vectors, one broadcast quad per row; then the
    /// epilogue `out (+)= s_x s_w (acc - z Σq_w) (+ bias)` in the same operation order as the portable loop.
    ///
    /// # Safety
    /// As [`super::super::gemm::TileKernel::tile`], with `R == t.rows`; `k`'s row scales cover the tile's
    /// rows and its column scales and sums its columns; the CPU has AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile<const R: usize>(t: &Tile<u32>, k: &Int8Kernel) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let mut acc = [[_mm512_setzero_si512(); 2]; R];
            for p in 0..t.kc {
                let b0 = _mm512_loadu_si512(t.b.add(p * NR) as *const _);
                let b1 = _mm512_loadu_si512(t.b.add(p * NR + 16) as *const _);
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_epi32(*t.a.add(p * MR + r) as i32);
                    acc_row[0] = _mm512_dpbusd_epi32(acc_row[0], x, b0);
                    acc_row[1] = _mm512_dpbusd_epi32(acc_row[1], x, b1);
                }
            }
            let (m0, m1) = column_masks(t.cols);
            let masks = [m0, m1];
            let col_scale = k.col_scale.as_ptr().add(t.col);
            let col_sum = k.col_sum.as_ptr().add(t.col);
            let sw = [
                _mm512_maskz_loadu_ps(m0, col_scale),
                _mm512_maskz_loadu_ps(m1, col_scale.add(16)),
            ];
            let cs = [
                _mm512_maskz_loadu_epi32(m0, col_sum),
                _mm512_maskz_loadu_epi32(m1, col_sum.add(16)),
            ];
            let bias = match (t.first, k.bias) {
                (true, Some(b)) => {
                    let b = b.as_ptr().add(t.col);
                    [
                        _mm512_maskz_loadu_ps(m0, b),
                        _mm512_maskz_loadu_ps(m1, b.add(16)),
                    ]
                }
                _ => [_mm512_setzero_ps(); 2],
            };
            for (r, acc_row) in acc.iter().enumerate() {
                let row = t.row + r;
                let sx = _mm512_set1_ps(*k.row_scale.get_unchecked(row));
                let zero = _mm512_set1_epi32(*k.row_zero.get_unchecked(row));
                let out = t.out.add(r * t.ld);
                for h in 0..2 {
                    let dst = out.add(16 * h);
                    let (sum, base) = if t.first {
                        (
                            _mm512_sub_epi32(acc_row[h], _mm512_mullo_epi32(zero, cs[h])),
                            bias[h],
                        )
                    } else {
                        (acc_row[h], _mm512_maskz_loadu_ps(masks[h], dst))
                    };
                    let value = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(sx, sw[h]));
                    _mm512_mask_storeu_ps(dst, masks[h], _mm512_add_ps(base, value));
                }
            }
        }
    }

    /// The row's minimum and maximum, both clamped to include 0.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn min_max(src: &[f32]) -> (f32, f32) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let chunks = src.len() / 16;
            let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for c in 0..chunks {
                let v = _mm512_loadu_ps(src.as_ptr().add(16 * c));
                lo = _mm512_min_ps(lo, v);
                hi = _mm512_max_ps(hi, v);
            }
            let (tail_lo, tail_hi) = super::min_max(&src[16 * chunks..]);
            (
                _mm512_reduce_min_ps(lo).min(tail_lo),
                _mm512_reduce_max_ps(hi).max(tail_hi),
            )
        }
    }

    /// `round(x / s) + z` clamped to 0..=255, 16 values at a time (round-to-nearest-even, as the scalar tail);
    /// returns how many values it wrote.
    ///
    /// # Safety
    /// `dst` holds at least `src.len()` bytes; the CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn quantize(src: &[f32], inv_scale: f32, zero: f32, dst: &mut [u8]) -> usize {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let chunks = src.len() / 16;
            let (inv, z) = (_mm512_set1_ps(inv_scale), _mm512_set1_ps(zero));
            let (floor, ceil) = (_mm512_setzero_si512(), _mm512_set1_epi32(255));
            for c in 0..chunks {
                let v = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_loadu_ps(src.as_ptr().add(16 * c)), inv),
                    z,
                );
                let q = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(v), floor), ceil);
                _mm_storeu_si128(
                    dst.as_mut_ptr().add(16 * c) as *mut _,
                    _mm512_cvtepi32_epi8(q),
                );
            }
            chunks * 16
        }
    }
}

/// The AVX2 kernel: the tile's activation quads widened once to four i16 (one u64 each), then passes of up to
/// [`gemm::AVX2_ROWS`] rows x 8 columns. A weight vector holds 4 columns' quads as 16 i16; `vpmaddwd` against a
/// broadcast quad leaves two exact partial sums per column, added into 12 accumulators; the pairs are summed once
/// per tile.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::gemm::{self, Tile, AVX2_ROWS, KC, MR, NR};
    use super::Int8Kernel;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    // The activation block widens in whole vectors of 4 lanes.
    const _: () = assert!(MR.is_multiple_of(4));

    /// # Safety
    /// As [`super::super::gemm::TileKernel::tile`] (with `t.kc <= KC`); `k`'s row scales and zero points cover
    /// the tile's rows and its column scales, sums and bias its columns; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tile(t: &Tile<u32>, k: &Int8Kernel) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above): `t.a` has `t.kc * MR` lanes,
        // the buffer `KC * MR`; each pass stays inside the tile.
        unsafe {
            // Widened once per tile, then broadcast from memory (a load, no shuffle) in every pass.
            let mut wide = [MaybeUninit::<u64>::uninit(); KC * MR];
            let wide = wide.as_mut_ptr() as *mut u64;
            let bytes = t.a as *const u8;
            for i in (0..t.kc * MR).step_by(4) {
                let quads = _mm_loadu_si128(bytes.add(4 * i) as *const __m128i);
                _mm256_storeu_si256(wide.add(i) as *mut __m256i, _mm256_cvtepu8_epi16(quads));
            }
            for c0 in (0..t.cols).step_by(8) {
                for r0 in (0..t.rows).step_by(AVX2_ROWS) {
                    let rows = AVX2_ROWS.min(t.rows - r0);
                    gemm::dispatch_avx2_rows!(rows, pass, t, k, wide, r0, c0);
                }
            }
        }
    }

    /// Rows `r0..r0 + G`, tile columns `c0..c0 + 8`, then the epilogue of [`super::super::int8_gemm`]'s other
    /// paths: `out (+)= s_x s_w (acc - z Σq_w) (+ bias)` in the same operation order.
    ///
    /// # Safety
    /// As [`tile`], with `wide` holding the widened `t.kc * MR` lanes, `r0 + G <= t.rows`, `c0 < t.cols` and
    /// `c0 + 8 <= NR`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pass<const G: usize>(
        t: &Tile<u32>,
        k: &Int8Kernel,
        wide: *const u64,
        r0: usize,
        c0: usize,
    ) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above): the panel has `NR` lanes per
        // group (zero past `n`); the epilogue's loads and stores are clipped to the tile's columns.
        unsafe {
            let mut acc = [[_mm256_setzero_si256(); 2]; G];
            let b = t.b.add(c0) as *const __m128i;
            for p in 0..t.kc {
                // Each 16 bytes: 4 columns x 4 s8 weights.
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(p * NR / 4)));
                let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(p * NR / 4 + 1)));
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_epi64x(*wide.add(p * MR + r0 + r) as i64);
                    acc_row[0] = _mm256_add_epi32(acc_row[0], _mm256_madd_epi16(x, w0));
                    acc_row[1] = _mm256_add_epi32(acc_row[1], _mm256_madd_epi16(x, w1));
                }
            }
            let live = (t.cols - c0).min(8);
            let col = t.col + c0;
            let sw = gemm::avx2::load_ps(k.col_scale.as_ptr().add(col), live);
            let cs = gemm::avx2::load_epi32(k.col_sum.as_ptr().add(col), live);
            let bias = match (t.first, k.bias) {
                (true, Some(b)) => gemm::avx2::load_ps(b.as_ptr().add(col), live),
                _ => _mm256_setzero_ps(),
            };
            for (r, acc_row) in acc.iter().enumerate() {
                // Column c's two partial sums sit side by side: the pairwise add leaves columns 0 1 4 5 | 2 3 6 7,
                // and the 64-bit permute puts them in order.
                let sums = _mm256_permute4x64_epi64(
                    _mm256_hadd_epi32(acc_row[0], acc_row[1]),
                    0b11_01_10_00,
                );
                let row = t.row + r0 + r;
                let sx = _mm256_set1_ps(*k.row_scale.get_unchecked(row));
                let zero = _mm256_set1_epi32(*k.row_zero.get_unchecked(row));
                let dst = t.out.add((r0 + r) * t.ld + c0);
                let (sum, base) = if t.first {
                    (_mm256_sub_epi32(sums, _mm256_mullo_epi32(zero, cs)), bias)
                } else {
                    (sums, gemm::avx2::load_ps(dst, live))
                };
                let value = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(sx, sw));
                gemm::avx2::store_ps(dst, live, _mm256_add_ps(base, value));
            }
        }
    }

    /// The row's minimum and maximum, both clamped to include 0.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn min_max(src: &[f32]) -> (f32, f32) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let chunks = src.len() / 8;
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for c in 0..chunks {
                let v = _mm256_loadu_ps(src.as_ptr().add(8 * c));
                lo = _mm256_min_ps(lo, v);
                hi = _mm256_max_ps(hi, v);
            }
            let (mut lanes_lo, mut lanes_hi) = ([0f32; 8], [0f32; 8]);
            _mm256_storeu_ps(lanes_lo.as_mut_ptr(), lo);
            _mm256_storeu_ps(lanes_hi.as_mut_ptr(), hi);
            let (tail_lo, tail_hi) = super::min_max(&src[8 * chunks..]);
            (
                lanes_lo.iter().fold(tail_lo, |m, &v| m.min(v)),
                lanes_hi.iter().fold(tail_hi, |m, &v| m.max(v)),
            )
        }
    }

    /// `round(x / s) + z` clamped to 0..=255, 16 values at a time (round-to-nearest-even, as the scalar tail);
    /// returns how many values it wrote.
    ///
    /// # Safety
    /// `dst` holds at least `src.len()` bytes; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize(src: &[f32], inv_scale: f32, zero: f32, dst: &mut [u8]) -> usize {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let chunks = src.len() / 16;
            let (inv, z) = (_mm256_set1_ps(inv_scale), _mm256_set1_ps(zero));
            for c in 0..chunks {
                let q0 = level(_mm256_loadu_ps(src.as_ptr().add(16 * c)), inv, z);
                let q1 = level(_mm256_loadu_ps(src.as_ptr().add(16 * c + 8)), inv, z);
                // Lane-wise packs to u16 (then u8) are exact on 0..=255; the permute restores source order.
                let words = _mm256_permute4x64_epi64(_mm256_packus_epi32(q0, q1), 0b11_01_10_00);
                let bytes = _mm_packus_epi16(
                    _mm256_castsi256_si128(words),
                    _mm256_extracti128_si256(words, 1),
                );
                _mm_storeu_si128(dst.as_mut_ptr().add(16 * c) as *mut __m128i, bytes);
            }
            chunks * 16
        }
    }

    /// `clamp(round(v * inv + z), 0, 255)` as i32: multiply, then add (no FMA), as the scalar code rounds twice.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn level(v: __m256, inv: __m256, z: __m256) -> __m256i {
        let q = _mm256_cvtps_epi32(_mm256_add_ps(_mm256_mul_ps(v, inv), z));
        _mm256_min_epi32(
            _mm256_max_epi32(q, _mm256_setzero_si256()),
            _mm256_set1_epi32(255),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lcg, max_abs_diff};

    /// Every row quantised, row-major quads.
    struct QuantRows {
        quads: Vec<u32>,
        scale: Vec<f32>,
        zero: Vec<i32>,
    }

    fn quantize_rows(x: &[f32], m: usize, k: usize, path: Path) -> QuantRows {
        let params = row_params_all(x, m, k, path);
        let quads = k.div_ceil(4);
        let mut out = vec![0u32; m * quads];
        for (r, lanes) in out.chunks_mut(quads).enumerate() {
            quantize_row(
                &x[r * k..(r + 1) * k],
                params.scale[r],
                params.zero[r],
                lanes,
                path,
            );
        }
        QuantRows {
            quads: out,
            scale: params.scale,
            zero: params.zero,
        }
    }

    /// f64 product of the dequantised operands: what the integer kernel must reproduce up to f32 rounding.
    fn dequantised_reference(x: &[f32], m: usize, w: &PackedInt8, bias: &[f32]) -> Vec<f32> {
        let (n, k) = (w.out_dim(), w.in_dim());
        let a = quantize_rows(x, m, k, Path::Portable);
        let wq = w.unpack();
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            // SAFETY: u32 lanes viewed as bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts(a.quads.as_ptr().add(r * k.div_ceil(4)) as *const u8, k)
            };
            for c in 0..n {
                let s: f64 = (0..k)
                    .map(|i| {
                        let xv = a.scale[r] as f64 * (bytes[i] as f64 - a.zero[r] as f64);
                        xv * wq[c * k + i] as f64
                    })
                    .sum();
                out[r * n + c] = (s + bias[c] as f64) as f32;
            }
        }
        out
    }

    /// Every path this CPU can run, whatever `CLIP_KERNELS` says.
    fn paths() -> Vec<Path> {
        let f = Features::detect();
        [
            (Path::Portable, true),
            (Path::Avx2, f.avx2_fma),
            (Path::Avx512Vnni, f.avx512_vnni),
        ]
        .into_iter()
        .filter_map(|(path, runs)| runs.then_some(path))
        .collect()
    }

    #[test]
    fn integer_kernel_matches_dequantised_products_on_every_path() {
        // Tails in every dimension: m not a multiple of MR (nor of the AVX2 passes' 6), n not of NR (nor of 8),
        // k not of 4 (nor of the 8 and 16 of the vector quantisers) and over one cache block.
        for &(m, k, n) in &[
            (1, 3, 1),
            (13, 517, 33),
            (50, 768, 70),
            (25, 301, 64),
            (7, 771, 17),
            (11, 37, 45),
        ] {
            let x: Vec<f32> = lcg(m * k, 1 + m as u64)
                .iter()
                .map(|v| v * 3.0 + 0.5)
                .collect();
            let w = lcg(n * k, 7 + n as u64);
            let bias = lcg(n, 3);
            let packed = PackedInt8::pack(&w, n, k);
            let want = dequantised_reference(&x, m, &packed, &bias);
            let mut outputs = Vec::new();
            for path in paths() {
                let mut out = vec![f32::NAN; m * n];
                linear_int8_with(&x, m, &packed, Some(&bias), &mut out, path);
                let worst = max_abs_diff(&out, &want);
                assert!(
                    worst < 1e-4 * (k as f32).sqrt(),
                    "{m}x{k}x{n} {path:?}: {worst}"
                );
                outputs.push((path, out));
            }
            // Same integers, same epilogue order: every path agrees exactly with the portable one.
            for (path, out) in &outputs[1..] {
                assert_eq!(out, &outputs[0].1, "{m}x{k}x{n} {path:?}");
            }
        }
    }

    #[test]
    fn quantisation_error_is_within_half_a_step() {
        let (m, k) = (4, 301);
        let x: Vec<f32> = lcg(m * k, 9).iter().map(|v| v * 5.0 - 1.0).collect();
        for path in paths() {
            let a = quantize_rows(&x, m, k, path);
            for r in 0..m {
                // SAFETY: u32 lanes viewed as bytes.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        a.quads.as_ptr().add(r * k.div_ceil(4)) as *const u8,
                        k,
                    )
                };
                for i in 0..k {
                    let back = a.scale[r] * (bytes[i] as f32 - a.zero[r] as f32);
                    assert!((back - x[r * k + i]).abs() <= 0.5001 * a.scale[r]);
                }
            }
        }
        let want = quantize_rows(&x, m, k, Path::Portable);
        for path in paths() {
            let got = quantize_rows(&x, m, k, path);
            assert_eq!(got.quads, want.quads, "{path:?}");
            assert_eq!(
                (got.scale, got.zero),
                (want.scale.clone(), want.zero.clone())
            );
        }
    }

    #[test]
    fn weights_round_trip_within_half_a_step_per_channel() {
        let (n, k) = (5, 9);
        let w = lcg(n * k, 4);
        let packed = PackedInt8::pack(&w, n, k);
        let back = packed.unpack();
        for c in 0..n {
            for i in 0..k {
                assert!((back[c * k + i] - w[c * k + i]).abs() <= 0.5001 * packed.scale[c]);
            }
        }
        let zeros = PackedInt8::pack(&[0.0; 6], 2, 3);
        assert_eq!(zeros.unpack(), vec![0.0; 6]);
    }
}
