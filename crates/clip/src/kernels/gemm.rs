//! The blocked, multi-threaded driver shared by the packed-weight GEMMs (`y = x W^T`, the `nn.Linear` of every
//! path: f32, bf16, int8). Each path supplies its lane format and a micro-kernel ([`TileKernel`]); the driver
//! owns the cache blocking and the split of output columns across threads.
//!
//! Weights are packed once, at load, into panels of [`NR`] output columns: for each group of input positions
//! (one f32, a pair of bf16, a quad of int8 — one 32-bit lane), the panel holds the `NR` columns' lanes side by
//! side, which is what a micro-kernel multiplies against one broadcast activation lane. Packing at load is what
//! makes batch 1 fast: a general GEMM re-packs the whole weight on every call, as much memory traffic as the
//! arithmetic of a 50-row product. The activations are converted (rounded, quantised) and interleaved per call into
//! blocks of [`MR`] rows, lane by lane, so a micro-kernel reads all its rows' lanes from one stream at constant
//! offsets. Work is split across cores through the kernels' persistent pool ([`super::pool`]).

use super::pool::{new_in_chunks, run_chunks_mut, run_parts, SharedMut};

/// Output columns per packed panel (two 16-lane vectors).
pub const NR: usize = 32;
/// Rows per micro-tile: `2 * MR` accumulators, two weight vectors and one broadcast fit AVX-512's 32 registers.
pub const MR: usize = 12;
/// Rows per cache block of the activations.
const MC: usize = 8 * MR;
/// Lane groups per cache block: a panel's block is 192 x 32 lanes x 4 bytes = 24 KiB, half of a 48 KiB L1 (tuned
/// on Zen 5 between 128 and 384 with what is now `clip bench --kernels`). The AVX2 kernels size their widened activation
/// buffers by it.
pub(crate) const KC: usize = 192;

/// A weight `[n, k]` packed into `ceil(n / NR)` panels of `groups * NR` lanes (columns past `n` are zero lanes).
#[derive(Debug, Clone)]
pub struct Panels<L> {
    n: usize,
    groups: usize,
    data: Vec<L>,
}

impl<L: Copy + Default + Send + Sync> Panels<L> {
    /// `fill_row(col, lanes)` writes the `groups` lanes of output column `col` (one weight row); panels are
    /// filled on all cores.
    pub fn pack(n: usize, groups: usize, fill_row: impl Fn(usize, &mut [L]) + Sync) -> Self {
        let panels = n.div_ceil(NR);
        let panel_len = groups * NR;
        let mut data = vec![L::default(); panels * panel_len];
        let per_thread = panels.div_ceil(threads_for(panels)).max(1);
        run_chunks_mut(&mut data, (per_thread * panel_len).max(1), |t, chunk| {
            let mut row = vec![L::default(); groups];
            for (i, panel) in chunk.chunks_mut(panel_len.max(1)).enumerate() {
                let first_col = (t * per_thread + i) * NR;
                for lane in 0..NR.min(n - first_col) {
                    fill_row(first_col + lane, &mut row);
                    for (g, &value) in row.iter().enumerate() {
                        panel[g * NR + lane] = value;
                    }
                }
            }
        });
        Self { n, groups, data }
    }

    /// The transpose of the row-major `[rows, cols]` matrix `src` packed as a weight `[cols, rows]`: output column
    /// `c` holds column `c` of `src`. Lane groups are single values (f32 lanes), copied in runs of [`NR`]; the
    /// buffer is written once (padding lanes set to zero), never zeroed first.
    pub fn pack_transposed(src: &[L], rows: usize, cols: usize) -> Self {
        assert_eq!(src.len(), rows * cols, "matrix size");
        let panels = cols.div_ceil(NR);
        let panel_len = rows * NR;
        let len = panels * panel_len;
        let mut data: Vec<L> = Vec::with_capacity(len);
        let base = SharedMut(data.as_mut_ptr());
        let per_thread = panels.div_ceil(threads_for(panels)).max(1);
        run_parts(panels.div_ceil(per_thread), &|t| {
            for panel in t * per_thread..((t + 1) * per_thread).min(panels) {
                let first_col = panel * NR;
                let width = NR.min(cols - first_col);
                for g in 0..rows {
                    let start = g * cols + first_col;
                    // SAFETY: lanes panel * panel_len + g * NR .. + NR lie in the allocation and belong to this
                    // part alone; the source run lies inside `src`.
                    unsafe {
                        let dst = base.get().add(panel * panel_len + g * NR);
                        std::ptr::copy_nonoverlapping(src.as_ptr().add(start), dst, width);
                        for lane in width..NR {
                            dst.add(lane).write(L::default());
                        }
                    }
                }
            }
        });
        // SAFETY: every lane of every panel was written above.
        unsafe { data.set_len(len) };
        Self {
            n: cols,
            groups: rows,
            data,
        }
    }

    pub fn out_dim(&self) -> usize {
        self.n
    }

    /// Lanes per column (input positions / lane width, rounded up).
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The lanes back in row-major `[n, groups]` order (one weight row per output column), written
    /// sequentially (the strided reads stay within one panel, which fits in L2).
    #[cfg(test)]
    pub fn rows(&self) -> Vec<L> {
        let groups = self.groups;
        let mut out = vec![L::default(); self.n * groups];
        for (col, row) in out.chunks_exact_mut(groups.max(1)).enumerate() {
            let panel = &self.data[(col / NR) * groups * NR..];
            for (g, value) in row.iter_mut().enumerate() {
                *value = panel[g * NR + col % NR];
            }
        }
        out
    }

    /// Lane `group` of output column `col`.
    pub fn lane(&self, col: usize, group: usize) -> L {
        self.data[(col / NR) * self.groups * NR + group * NR + col % NR]
    }

    fn panel(&self, panel: usize) -> &[L] {
        let len = self.groups * NR;
        &self.data[panel * len..(panel + 1) * len]
    }
}

/// One micro-tile for a [`TileKernel`]: rows `row..row + rows` (at most [`MR`]) and columns `col..col + cols` (at
/// most [`NR`]) of the output, over lane groups `kb..kb + kc`.
pub struct Tile<L> {
    /// The interleaved activation block of row `row`, from group `kb`: lane `(r, p)` is at `p * MR + r`.
    pub a: *const L,
    /// The panel's lanes from group `kb`: `kc * NR` of them.
    pub b: *const L,
    pub kc: usize,
    /// Output element `(row, col)`; rows are `ld` apart.
    pub out: *mut f32,
    pub ld: usize,
    pub row: usize,
    pub rows: usize,
    pub col: usize,
    pub cols: usize,
    /// The first block of `k`: the kernel writes (with bias) rather than adds.
    pub first: bool,
}

/// A micro-kernel: converts activation rows to its lanes and multiplies one [`Tile`] into the output.
pub trait TileKernel: Sync {
    type Lane: Copy + Default + Send + Sync;

    /// Writes row `row` of the activations as `dst.len()` lanes (the weight's groups).
    fn pack_row(&self, row: usize, dst: &mut [Self::Lane]);

    /// # Safety
    /// `t.a` has `t.kc * MR` lanes readable, `t.b` has `t.kc * NR`, and the output rectangle exists and is
    /// written by this thread only.
    unsafe fn tile(&self, t: &Tile<Self::Lane>);
}

/// `out[m, n] = kernel(a[m], w)` for `m` activation rows (converted by [`TileKernel::pack_row`]).
pub fn run<K: TileKernel>(kernel: &K, m: usize, w: &Panels<K::Lane>, out: &mut [f32]) {
    assert_eq!(out.len(), m * w.n, "output size");
    // SAFETY: `out` holds the m x n values `run_into` writes.
    unsafe { run_into(kernel, m, w, out.as_mut_ptr()) }
}

/// [`run`] into a new vector. The first pass over `k` writes every output value (the tiles cover the output
/// and the first block stores rather than adds), so the vector is not zeroed first: that memset ran on one core
/// while the others waited.
pub fn run_new<K: TileKernel>(kernel: &K, m: usize, w: &Panels<K::Lane>) -> Vec<f32> {
    let len = m * w.n;
    let mut out = Vec::with_capacity(len);
    // SAFETY: the allocation holds `len` values; `run_into` writes each of them before `set_len` exposes them.
    unsafe {
        run_into(kernel, m, w, out.as_mut_ptr());
        out.set_len(len);
    }
    out
}

/// # Safety
/// `out` points to `m * w.n` writable values (initialised or not); every one of them is written.
unsafe fn run_into<K: TileKernel>(kernel: &K, m: usize, w: &Panels<K::Lane>, out: *mut f32) {
    let (n, groups) = (w.n, w.groups);
    if m == 0 || n == 0 {
        return;
    }
    let blocks = m.div_ceil(MR);
    let block_len = groups * MR;
    let panels = n.div_ceil(NR);
    let threads = threads_for(panels.max(blocks));
    let blocks_per_thread = blocks.div_ceil(threads);
    let panels_per_thread = panels.div_ceil(threads);
    let out_ptr = SharedMut(out);
    // Phase 1: the activation blocks, converted and interleaved, split across the cores. Every lane is written
    // (the last block's missing rows as zero lanes), so the buffer is not zeroed first: that memset of up to
    // m x k lanes ran on one core while the others waited.
    let fill = |_, start: usize, part: &mut [std::mem::MaybeUninit<K::Lane>]| {
        let mut rows = vec![K::Lane::default(); block_len];
        for (i, dst) in part.chunks_exact_mut(block_len).enumerate() {
            let first_row = (start / block_len + i) * MR;
            let live = MR.min(m - first_row);
            for (r, row) in rows.chunks_mut(groups.max(1)).take(live).enumerate() {
                kernel.pack_row(first_row + r, row);
            }
            for (g, lanes) in dst.chunks_exact_mut(MR).enumerate() {
                for (r, lane) in lanes.iter_mut().enumerate() {
                    lane.write(if r < live {
                        rows[r * groups + g]
                    } else {
                        K::Lane::default()
                    });
                }
            }
        }
    };
    // SAFETY: each part is whole blocks (a multiple of block_len), and `fill` writes every lane of each block.
    let a = unsafe { new_in_chunks(blocks * block_len, blocks_per_thread * block_len, fill) };
    // Phase 2: each part owns a run of output columns (disjoint panels) and reads every activation block.
    let a = &a;
    run_parts(panels.div_ceil(panels_per_thread), &|t| {
        let out = out_ptr;
        let (first_panel, last_panel) = (
            t * panels_per_thread,
            ((t + 1) * panels_per_thread).min(panels),
        );
        // For each block of rows (its activations stay in L2), each panel: the panel's lanes stream in order
        // over k while the block's outputs for these columns (MC x NR) stay in L1 between k blocks. With k
        // blocks outermost, every k block re-read the outputs from L3 (fc2, k = 3072: 16 passes in f32).
        for mb in (0..m).step_by(MC) {
            let mc = MC.min(m - mb);
            for panel in first_panel..last_panel {
                let col = panel * NR;
                for kb in (0..groups.max(1)).step_by(KC) {
                    let kc = KC.min(groups - kb);
                    let b = w.panel(panel)[kb * NR..].as_ptr();
                    for row in (mb..mb + mc).step_by(MR) {
                        let tile = Tile {
                            // SAFETY: block row / MR exists and kb < groups.
                            a: unsafe { a.as_ptr().add((row / MR) * block_len + kb * MR) },
                            b,
                            kc,
                            // SAFETY: (row, col) is inside the m x n output.
                            out: unsafe { out.0.add(row * n + col) },
                            ld: n,
                            row,
                            rows: MR.min(mb + mc - row),
                            col,
                            cols: NR.min(n - col),
                            first: kb == 0,
                        };
                        // SAFETY: the tile's lanes exist (sizes above); this part alone owns panels
                        // first_panel..last_panel, i.e. these output columns.
                        unsafe { kernel.tile(&tile) };
                    }
                }
            }
        }
    });
}

/// The shape checks every `linear_*` entry point makes: `x` is `[m, k]` and `bias`, if any, has `n` values.
pub(crate) fn check_linear_sizes(x: &[f32], m: usize, k: usize, n: usize, bias: Option<&[f32]>) {
    assert_eq!(x.len(), m * k, "input size");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "bias size");
    }
}

/// Threads worth starting for `panels` units of work.
fn threads_for(panels: usize) -> usize {
    crate::threads::count().min(panels).max(1)
}

/// Calls `$f::<R>($args)` for the runtime row count `$rows` (1..=MR): each row count gets its own fully unrolled
/// micro-kernel, so a 50-token batch-1 input runs 4 x 12 + 1 x 2 rows, not 5 x 12.
macro_rules! dispatch_rows {
    ($rows:expr, $($f:ident)::+, $($arg:expr),*) => {
        match $rows {
            1 => $($f)::+::<1>($($arg),*),
            2 => $($f)::+::<2>($($arg),*),
            3 => $($f)::+::<3>($($arg),*),
            4 => $($f)::+::<4>($($arg),*),
            5 => $($f)::+::<5>($($arg),*),
            6 => $($f)::+::<6>($($arg),*),
            7 => $($f)::+::<7>($($arg),*),
            8 => $($f)::+::<8>($($arg),*),
            9 => $($f)::+::<9>($($arg),*),
            10 => $($f)::+::<10>($($arg),*),
            11 => $($f)::+::<11>($($arg),*),
            12 => $($f)::+::<12>($($arg),*),
            other => unreachable!("tile of {other} rows"),
        }
    };
}
pub(crate) use dispatch_rows;

/// Calls `$f::<G>($args)` for the runtime row count `$rows` (1..=[`AVX2_ROWS`]): an AVX2 micro-kernel runs a
/// tile as passes over groups of at most [`AVX2_ROWS`] rows, each group fully unrolled.
macro_rules! dispatch_avx2_rows {
    ($rows:expr, $($f:ident)::+, $($arg:expr),*) => {
        match $rows {
            1 => $($f)::+::<1>($($arg),*),
            2 => $($f)::+::<2>($($arg),*),
            3 => $($f)::+::<3>($($arg),*),
            4 => $($f)::+::<4>($($arg),*),
            5 => $($f)::+::<5>($($arg),*),
            6 => $($f)::+::<6>($($arg),*),
            other => unreachable!("AVX2 pass of {other} rows"),
        }
    };
}
pub(crate) use dispatch_avx2_rows;

/// Rows per AVX2 pass: AVX2 has 16 registers, so a pass keeps `2 * AVX2_ROWS` accumulators (two vectors per row),
/// two weight vectors and one broadcast, and a tile of up to [`MR`] rows runs as two passes.
pub const AVX2_ROWS: usize = 6;

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use super::{Tile, NR};
    use std::arch::x86_64::*;

    /// Lane masks for the two 16-lane halves of a tile `cols` wide.
    #[inline(always)]
    pub fn column_masks(cols: usize) -> (__mmask16, __mmask16) {
        let bits = |c: usize| -> __mmask16 {
            if c >= 16 {
                0xffff
            } else {
                ((1u32 << c) - 1) as __mmask16
            }
        };
        (bits(cols.min(NR)), bits(cols.saturating_sub(16)))
    }

    /// Writes f32 accumulators: `out = acc + bias` on the first block of `k`, else `out += acc`; only the
    /// tile's `cols` columns are touched.
    ///
    /// # Safety
    /// `t` names `R` rows and `t.cols` columns of the output that exist and that this thread alone writes;
    /// `bias`, on the first block, has at least `t.col + t.cols` values; the CPU has AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn store_f32<const R: usize, L>(
        acc: &[[__m512; 2]; R],
        t: &Tile<L>,
        bias: Option<&[f32]>,
    ) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            let (m0, m1) = column_masks(t.cols);
            let (base0, base1) = match (t.first, bias) {
                (true, Some(bias)) => {
                    let b = bias.as_ptr().add(t.col);
                    (
                        _mm512_maskz_loadu_ps(m0, b),
                        _mm512_maskz_loadu_ps(m1, b.add(16)),
                    )
                }
                _ => (_mm512_setzero_ps(), _mm512_setzero_ps()),
            };
            for (r, acc_row) in acc.iter().enumerate() {
                let row = t.out.add(r * t.ld);
                let (c0, c1) = if t.first {
                    (base0, base1)
                } else {
                    (
                        _mm512_maskz_loadu_ps(m0, row),
                        _mm512_maskz_loadu_ps(m1, row.add(16)),
                    )
                };
                _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(c0, acc_row[0]));
                _mm512_mask_storeu_ps(row.add(16), m1, _mm512_add_ps(c1, acc_row[1]));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::Tile;
    use std::arch::x86_64::*;

    /// The first `live` (at most 8) of 8 lanes, as the sign bits `maskload`/`maskstore` read.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn lane_mask(live: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(live as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// The first `live` of 8 f32 at `p` (the rest zero); whole vectors use plain moves (masked ones are slower,
    /// stores much so on AMD), a ragged one is masked so nothing past the matrix is read.
    ///
    /// # Safety
    /// `min(live, 8)` values at `p` are readable; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn load_ps(p: *const f32, live: usize) -> __m256 {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            if live >= 8 {
                _mm256_loadu_ps(p)
            } else {
                _mm256_maskload_ps(p, lane_mask(live))
            }
        }
    }

    /// [`load_ps`] for i32.
    ///
    /// # Safety
    /// As [`load_ps`].
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn load_epi32(p: *const i32, live: usize) -> __m256i {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            if live >= 8 {
                _mm256_loadu_si256(p as *const __m256i)
            } else {
                _mm256_maskload_epi32(p, lane_mask(live))
            }
        }
    }

    /// Writes the first `live` lanes of `v` to `p`.
    ///
    /// # Safety
    /// `min(live, 8)` values at `p` are writable by this thread alone; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn store_ps(p: *mut f32, live: usize, v: __m256) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above).
        unsafe {
            if live >= 8 {
                _mm256_storeu_ps(p, v)
            } else {
                _mm256_maskstore_ps(p, lane_mask(live), v)
            }
        }
    }

    /// The twin of [`super::simd::store_f32`] for one AVX2 pass: rows `r0..r0 + G` and the `V * 8` columns from
    /// tile column `c0` (clipped to the tile's `cols`): `out = acc + bias` on the first block of `k`, else
    /// `out += acc`. Same operations as the AVX-512 and portable epilogues, so results agree bit for bit.
    ///
    /// # Safety
    /// `t` names rows `r0..r0 + G` and columns `c0..t.cols` of the output, which exist and which this thread
    /// alone writes; `bias`, on the first block, has at least `t.col + t.cols` values; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn store_f32<const G: usize, const V: usize, L>(
        acc: &[[__m256; V]; G],
        t: &Tile<L>,
        r0: usize,
        c0: usize,
        bias: Option<&[f32]>,
    ) {
        // SAFETY: the caller upholds this function's contract (`# Safety` above); every access is clipped to
        // the tile's columns by `live`.
        unsafe {
            let live = |v: usize| t.cols.saturating_sub(c0 + 8 * v).min(8);
            let mut base = [_mm256_setzero_ps(); V];
            if let (true, Some(bias)) = (t.first, bias) {
                for (v, b) in base.iter_mut().enumerate() {
                    *b = load_ps(bias.as_ptr().add(t.col + c0 + 8 * v), live(v));
                }
            }
            for (r, acc_row) in acc.iter().enumerate() {
                let row = t.out.add((r0 + r) * t.ld + c0);
                for (v, &a) in acc_row.iter().enumerate() {
                    if live(v) == 0 {
                        continue;
                    }
                    let p = row.add(8 * v);
                    let c = if t.first {
                        base[v]
                    } else {
                        load_ps(p, live(v))
                    };
                    store_ps(p, live(v), _mm256_add_ps(c, a));
                }
            }
        }
    }
}

/// The scalar twin of [`simd::store_f32`] for the portable kernels.
pub(crate) fn store_f32_portable<L>(tile: &[[f32; NR]; MR], t: &Tile<L>, bias: Option<&[f32]>) {
    for (r, tile_row) in tile.iter().enumerate().take(t.rows) {
        for (c, v) in tile_row.iter().enumerate().take(t.cols) {
            // SAFETY: the tile's rows and columns are inside the output and owned by this thread (see `run`);
            // on the first block the value is written without being read (it may be uninitialised).
            unsafe {
                let d = t.out.add(r * t.ld + c);
                if t.first {
                    d.write(v + bias.map_or(0.0, |b| b[t.col + c]));
                } else {
                    d.write(d.read() + v);
                }
            }
        }
    }
}
