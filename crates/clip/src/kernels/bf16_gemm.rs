//! `y = x W^T (+ b)` with bf16 weights and bf16-rounded activations, f32 accumulation: the `nn.Linear` of the
//! bf16 path. On CPUs with AVX512-BF16 (`vdpbf16ps`: two bf16 products summed into each f32 lane, twice the f32
//! FMA rate) a BLIS-style kernel runs; elsewhere a portable loop computes the same products (each pair of bf16
//! products summed in f32), so results agree to f32 rounding across machines.
//!
//! Layout: the weight `[n, k]` is packed once into panels of [`NR`] output columns; within a panel, for each
//! pair of input positions `(2p, 2p+1)`, 32 lanes hold `(w[col][2p], w[col][2p+1])` as two bf16 in one u32 —
//! exactly the operand `vdpbf16ps` multiplies against a broadcast `(x[row][2p], x[row][2p+1])`.

use half::bf16;

/// Output columns per packed panel (two 16-lane vectors).
pub const NR: usize = 32;
/// Rows per micro-tile.
const MR: usize = 12;
/// Input pairs per cache block (a panel's block is 128 x 128 bytes = 16 KiB, within L1).
const KC_PAIRS: usize = 128;
/// Rows per cache block of the activations.
const MC: usize = 8 * MR;

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
    n: usize,
    k: usize,
    /// `ceil(k / 2)`.
    pairs: usize,
    /// `ceil(n / NR)` panels of `pairs * NR` u32 each.
    data: Vec<u32>,
}

impl PackedBf16 {
    /// Packs `weight` (row-major `[n, k]`); columns past `n` and the odd tail of `k` are zero.
    pub fn pack(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "weight size");
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0u32; panels * pairs * NR];
        // Round each weight row to pairs (the same conversion as the activations), then place the pairs.
        let rows = pack_rows(weight, n, k, pairs, simd_available());
        for col in 0..n {
            let (panel, lane) = (col / NR, col % NR);
            let base = panel * pairs * NR + lane;
            for (p, &value) in rows[col * pairs..(col + 1) * pairs].iter().enumerate() {
                data[base + p * NR] = value;
            }
        }
        Self { n, k, pairs, data }
    }

    pub fn out_dim(&self) -> usize {
        self.n
    }

    pub fn in_dim(&self) -> usize {
        self.k
    }

    fn panel(&self, panel: usize) -> &[u32] {
        &self.data[panel * self.pairs * NR..(panel + 1) * self.pairs * NR]
    }

    /// The weight as the kernel sees it (bf16-rounded), `[n, k]` row-major: for tests and fallbacks.
    pub fn unpack(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n * self.k];
        for col in 0..self.n {
            let panel = self.panel(col / NR);
            for p in 0..self.pairs {
                let (lo, hi) = unpair(panel[p * NR + col % NR]);
                out[col * self.k + 2 * p] = lo;
                if 2 * p + 1 < self.k {
                    out[col * self.k + 2 * p + 1] = hi;
                }
            }
        }
        out
    }
}

/// Activations `[m, k]` rounded to bf16 pairs, rows padded to a multiple of [`MR`] with zeros.
fn pack_rows(x: &[f32], m: usize, k: usize, pairs: usize, use_simd: bool) -> Vec<u32> {
    let rows = m.div_ceil(MR) * MR;
    let mut out = vec![0u32; rows * pairs];
    for r in 0..m {
        let src = &x[r * k..(r + 1) * k];
        let dst = &mut out[r * pairs..(r + 1) * pairs];
        // Whole 32-value chunks with the CPU's converter, the rest one pair at a time.
        let done = if use_simd {
            // SAFETY: `use_simd` means the CPU has AVX512-BF16.
            unsafe { simd::pack_pairs(src, dst) }
        } else {
            0
        };
        for (p, d) in dst.iter_mut().enumerate().skip(done) {
            let hi = if 2 * p + 1 < k { src[2 * p + 1] } else { 0.0 };
            *d = pair(src[2 * p], hi);
        }
    }
    out
}

/// `out[m, n] = x[m, k] W^T + bias`, `x` row-major f32.
pub fn linear_bf16(x: &[f32], m: usize, w: &PackedBf16, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    assert_eq!(x.len(), m * k, "input size");
    assert_eq!(out.len(), m * n, "output size");
    let use_simd = simd_available();
    let a = pack_rows(x, m, k, w.pairs, use_simd);
    let panels = n.div_ceil(NR);
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(panels)
        .max(1);
    // Each thread owns a contiguous run of panels: disjoint column ranges of `out`.
    let per_thread = panels.div_ceil(threads);
    let out_ptr = SendPtr(out.as_mut_ptr());
    let run = |first: usize, last: usize| {
        let out = out_ptr;
        for kb in (0..w.pairs).step_by(KC_PAIRS) {
            let kc = KC_PAIRS.min(w.pairs - kb);
            for mb in (0..m).step_by(MC) {
                let mc = MC.min(m - mb);
                for panel in first..last {
                    let b = &w.panel(panel)[kb * NR..(kb + kc) * NR];
                    for mr in (mb..mb + mc).step_by(MR) {
                        let rows = MR.min(m - mr);
                        let cols = NR.min(n - panel * NR);
                        if use_simd && rows == MR && cols == NR {
                            // Full tile: accumulate straight into the output rows.
                            let bias = bias.map(|b| b[panel * NR..].as_ptr());
                            // SAFETY: the CPU has AVX512-BF16; rows mr..mr+MR < m and columns
                            // panel*NR..+NR < n exist in `out` and belong to this thread only.
                            unsafe {
                                simd::tile_into(
                                    &a[mr * w.pairs + kb..],
                                    w.pairs,
                                    b,
                                    kc,
                                    out.0.add(mr * n + panel * NR),
                                    n,
                                    kb == 0,
                                    bias,
                                )
                            };
                            continue;
                        }
                        let mut tile = [[0f32; NR]; MR];
                        if use_simd {
                            // SAFETY: `simd_available` checked the CPU; `a` rows mr..mr+MR exist (padded).
                            unsafe {
                                simd::tile(&a[mr * w.pairs + kb..], w.pairs, b, kc, &mut tile)
                            };
                        } else {
                            portable_tile(&a[mr * w.pairs + kb..], w.pairs, b, kc, &mut tile);
                        }
                        for (r, tile_row) in tile.iter().enumerate().take(rows) {
                            let row = mr + r;
                            // SAFETY: row < m and the columns panel*NR..+cols < n belong to this thread only.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(
                                    out.0.add(row * n + panel * NR),
                                    cols,
                                )
                            };
                            if kb == 0 {
                                dst.copy_from_slice(&tile_row[..cols]);
                                if let Some(bias) = bias {
                                    for (d, b) in dst.iter_mut().zip(&bias[panel * NR..]) {
                                        *d += b;
                                    }
                                }
                            } else {
                                for (d, t) in dst.iter_mut().zip(tile_row) {
                                    *d += t;
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    if threads == 1 {
        run(0, panels);
    } else {
        // Scoped threads measured faster here than sharing rayon's pool with candle's own parallel ops.
        std::thread::scope(|scope| {
            for t in 1..threads {
                let (first, last) = (t * per_thread, ((t + 1) * per_thread).min(panels));
                if first < last {
                    scope.spawn(move || run(first, last));
                }
            }
            run(0, per_thread.min(panels));
        });
    }
}

/// A raw output pointer shared by threads that write disjoint columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: threads write disjoint regions (see `linear_bf16`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Whether the AVX512-BF16 kernel can run here.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The same arithmetic as `vdpbf16ps` (each pair's two products summed, then added), in portable Rust.
fn portable_tile(a: &[u32], a_stride: usize, b: &[u32], kc: usize, tile: &mut [[f32; NR]; MR]) {
    for (r, tile_row) in tile.iter_mut().enumerate() {
        for p in 0..kc {
            let (x0, x1) = unpair(a[r * a_stride + p]);
            for (lane, acc) in tile_row.iter_mut().enumerate() {
                let (w0, w1) = unpair(b[p * NR + lane]);
                *acc += x0 * w0 + x1 * w1;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// One MR x NR tile over `kc` pairs: 24 accumulators, two weight vectors, one broadcast per row and pair.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile(
        a: &[u32],
        a_stride: usize,
        b: &[u32],
        kc: usize,
        out: &mut [[f32; NR]; MR],
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let bp = b.as_ptr();
        let ap = a.as_ptr();
        for p in 0..kc {
            let b0 = _mm512_loadu_si512(bp.add(p * NR) as *const _);
            let b1 = _mm512_loadu_si512(bp.add(p * NR + 16) as *const _);
            let (b0, b1) = (
                std::mem::transmute::<__m512i, __m512bh>(b0),
                std::mem::transmute::<__m512i, __m512bh>(b1),
            );
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_epi32(*ap.add(r * a_stride + p) as i32);
                let x = std::mem::transmute::<__m512i, __m512bh>(x);
                acc_row[0] = _mm512_dpbf16_ps(acc_row[0], x, b0);
                acc_row[1] = _mm512_dpbf16_ps(acc_row[1], x, b1);
            }
        }
        for (acc_row, out_row) in acc.iter().zip(out.iter_mut()) {
            _mm512_storeu_ps(out_row.as_mut_ptr(), acc_row[0]);
            _mm512_storeu_ps(out_row.as_mut_ptr().add(16), acc_row[1]);
        }
    }

    /// [`tile`] written into `out` (row stride `ld`): `out = acc + bias` on the first block of `k`, else
    /// `out += acc`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile_into(
        a: &[u32],
        a_stride: usize,
        b: &[u32],
        kc: usize,
        out: *mut f32,
        ld: usize,
        first: bool,
        bias: Option<*const f32>,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let bp = b.as_ptr();
        let ap = a.as_ptr();
        for p in 0..kc {
            let b0 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                bp.add(p * NR) as *const _
            ));
            let b1 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                bp.add(p * NR + 16) as *const _,
            ));
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let x = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                    *ap.add(r * a_stride + p) as i32,
                ));
                acc_row[0] = _mm512_dpbf16_ps(acc_row[0], x, b0);
                acc_row[1] = _mm512_dpbf16_ps(acc_row[1], x, b1);
            }
        }
        let (base0, base1) = match (first, bias) {
            (true, Some(bias)) => (_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16))),
            _ => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        for (r, acc_row) in acc.iter().enumerate() {
            let row = out.add(r * ld);
            let (c0, c1) = if first {
                (base0, base1)
            } else {
                (_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16)))
            };
            _mm512_storeu_ps(row, _mm512_add_ps(c0, acc_row[0]));
            _mm512_storeu_ps(row.add(16), _mm512_add_ps(c1, acc_row[1]));
        }
    }

    /// Rounds `src` to bf16 pairs (round to nearest even) 32 values at a time; returns how many pairs it wrote.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pack_pairs(src: &[f32], dst: &mut [u32]) -> usize {
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

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::{MR, NR};
    pub(super) unsafe fn pack_pairs(_src: &[f32], _dst: &mut [u32]) -> usize {
        0
    }
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_into(
        _a: &[u32],
        _a_stride: usize,
        _b: &[u32],
        _kc: usize,
        _out: *mut f32,
        _ld: usize,
        _first: bool,
        _bias: Option<*const f32>,
    ) {
        unreachable!("simd_available() is false off x86_64")
    }
    pub(super) unsafe fn tile(
        a: &[u32],
        a_stride: usize,
        b: &[u32],
        kc: usize,
        out: &mut [[f32; NR]; MR],
    ) {
        super::portable_tile(a, a_stride, b, kc, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(len: usize, mut state: u64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

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
    fn matches_the_rounded_reference_on_odd_shapes() {
        // Tails in every dimension: m not a multiple of MR, n not of NR, k odd and over one cache block.
        for &(m, k, n) in &[(1, 3, 1), (13, 257, 33), (50, 768, 70), (25, 301, 64)] {
            let x = lcg(m * k, 1 + m as u64);
            let w = lcg(n * k, 7 + n as u64);
            let bias = lcg(n, 3);
            let packed = PackedBf16::pack(&w, n, k);
            let mut out = vec![0f32; m * n];
            linear_bf16(&x, m, &packed, Some(&bias), &mut out);
            let want = reference(&x, m, k, &w, n, &bias);
            let worst = out
                .iter()
                .zip(&want)
                .fold(0f32, |acc, (a, b)| acc.max((a - b).abs()));
            assert!(
                worst < 1e-4 * (k as f32).sqrt(),
                "{m}x{k}x{n}: max diff {worst}"
            );
        }
    }

    #[test]
    fn portable_and_simd_tiles_agree() {
        let (k, n) = (300, 40);
        let x = lcg(MR * k, 11);
        let w = lcg(n * k, 12);
        let packed = PackedBf16::pack(&w, n, k);
        let a = pack_rows(&x, MR, k, packed.pairs, false);
        if simd_available() {
            assert_eq!(
                a,
                pack_rows(&x, MR, k, packed.pairs, true),
                "SIMD and scalar bf16 rounding"
            );
        }
        let mut portable = [[0f32; NR]; MR];
        portable_tile(
            &a,
            packed.pairs,
            packed.panel(0),
            packed.pairs,
            &mut portable,
        );
        if simd_available() {
            let mut fast = [[0f32; NR]; MR];
            unsafe { simd::tile(&a, packed.pairs, packed.panel(0), packed.pairs, &mut fast) };
            for (p, f) in portable.iter().flatten().zip(fast.iter().flatten()) {
                assert!((p - f).abs() <= 1e-4 * p.abs().max(1.0), "{p} vs {f}");
            }
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
