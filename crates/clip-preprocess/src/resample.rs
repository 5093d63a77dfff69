//! Pillow 13's convolution resampler (`libImaging/Resample.c`) for the BICUBIC filter (a = -0.5):
//! separable, antialiased (support widened by the scale when shrinking), a pass skipped when its
//! dimension is unchanged. Horizontal pass first over only the rows the vertical pass reads, except that
//! Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as the
//! width. 8-bit images use fixed-point weights (22 fractional bits) with uint8 rounding/clamping between
//! passes; `I;16` accumulates in double and clamps to 16 bits; `I`/`F` accumulate in double. Callers may
//! ask for a window of the output (the centre crop): every output pixel is computed exactly as in the
//! full resize.

use std::ops::Range;

/// Fractional bits of the fixed-point weights for 8-bit images (`PRECISION_BITS = 32 - 8 - 2`).
pub(crate) const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Filter support of BICUBIC in source pixels at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Keys' cubic convolution kernel with a = -0.5, written in Pillow's evaluation order.
pub(crate) fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per-output-pixel source windows and normalised weights (`precompute_coeffs`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Coeffs {
    /// Weights per output pixel (row-major, `ksize` each; unused tail entries are 0).
    pub ksize: usize,
    /// `(first source index, number of source pixels)` per output pixel.
    pub bounds: Vec<(usize, usize)>,
    pub weights: Vec<f64>,
}

/// `precompute_coeffs(inSize, in0, in1, outSize, &BICUBIC, ...)` for the output indices in `range` (each
/// output pixel's window depends only on its own index, so a sub-range gives the same numbers as the full
/// table). `in0`/`in1` are the (float) box edges.
pub(crate) fn precompute_coeffs(
    in_size: u32,
    in0: f32,
    in1: f32,
    out_size: u32,
    range: Range<u32>,
) -> Coeffs {
    // Pillow subtracts in float, then widens to double.
    let scale = f64::from(in1 - in0) / f64::from(out_size);
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(range.len());
    let mut weights = vec![0.0f64; range.len() * ksize];
    let ss = 1.0 / filterscale;
    for (i, xx) in range.enumerate() {
        let center = f64::from(in0) + (f64::from(xx) + 0.5) * scale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
        let count = (xmax - xmin).max(0) as usize;
        let k = &mut weights[i * ksize..i * ksize + ksize];
        let mut ww = 0.0f64;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = bicubic_filter(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        if ww != 0.0 {
            k.iter_mut().take(count).for_each(|kx| *kx /= ww);
        }
        bounds.push((xmin as usize, count));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

/// `normalize_coeffs_8bpc`: weights to fixed point, rounding half away from zero, truncating like C.
pub(crate) fn normalize_coeffs_8bpc(weights: &[f64]) -> Vec<i32> {
    let one = f64::from(1u32 << PRECISION_BITS);
    weights
        .iter()
        .map(|&w| {
            if w < 0.0 {
                (-0.5 + w * one) as i32
            } else {
                (0.5 + w * one) as i32
            }
        })
        .collect()
}

/// `clip8`: the accumulator (already offset by half a unit) to a byte.
#[inline]
pub(crate) fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// What one pass reads: rows of `width` pixels (each pixel a fixed number of interleaved samples). The
/// vertical pass reads the columns `cols`; source row `y` is stored at `y - row_offset`, source column
/// `x` at `x - col_offset` (a previous pass may have kept only the rows or columns the next one needs).
#[derive(Clone)]
struct Plane<'a, T> {
    data: &'a [T],
    width: usize,
    cols: Range<usize>,
    row_offset: usize,
    col_offset: usize,
}

/// `i32` lanes one block of the horizontal 8-bit pass accumulates at once: `48 / CH` source rows of `CH`
/// samples, so the inner loop is a fixed-length vector multiply-add whatever the channel count.
const BLOCK_LANES: usize = 48;

/// The horizontal 8-bit pass. Pillow walks one row at a time with `CH` accumulators; here a block of rows
/// is first transposed into columns of [`BLOCK_LANES`] `i32`s, so each tap is one multiply-add over the
/// whole block. The integer sums are the same, so the bytes are too.
fn horizontal_u8<const CH: usize>(src: &Plane<'_, u8>, rows: Range<usize>, c: &Coeffs) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { horizontal_u8_avx512::<CH>(src, rows, c) };
    } else if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { horizontal_u8_avx2::<CH>(src, rows, c) };
    }
    horizontal_u8_blocked::<CH>(src, rows, c, block_mac_portable, transpose_block::<CH>)
}

/// [`horizontal_u8_blocked`] compiled for AVX2 (eight `i32` lanes a multiply).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn horizontal_u8_avx2<const CH: usize>(
    src: &Plane<'_, u8>,
    rows: Range<usize>,
    c: &Coeffs,
) -> Vec<u8> {
    horizontal_u8_blocked::<CH>(src, rows, c, block_mac_avx2, transpose_block::<CH>)
}

/// [`horizontal_u8_blocked`] compiled for AVX-512 (sixteen `i32` lanes a multiply).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn horizontal_u8_avx512<const CH: usize>(
    src: &Plane<'_, u8>,
    rows: Range<usize>,
    c: &Coeffs,
) -> Vec<u8> {
    let transpose: Transpose = if CH == 3 && std::arch::is_x86_feature_detected!("avx512bw") {
        transpose_rgb_avx512
    } else {
        transpose_block::<CH>
    };
    horizontal_u8_blocked::<CH>(src, rows, c, block_mac_avx512, transpose)
}

#[inline(always)]
fn horizontal_u8_blocked<const CH: usize>(
    src: &Plane<'_, u8>,
    rows: Range<usize>,
    c: &Coeffs,
    mac: BlockMac,
    transpose: Transpose,
) -> Vec<u8> {
    let kk = normalize_coeffs_8bpc(&c.weights);
    let out_w = c.bounds.len();
    let mut out = vec![0u8; out_w * rows.len() * CH];
    // Source columns any output pixel reads, relative to the stored plane.
    let first = c.bounds.iter().map(|b| b.0).min().unwrap_or(0);
    let last = c
        .bounds
        .iter()
        .map(|b| b.0 + b.1)
        .max()
        .unwrap_or(0)
        .max(first);
    let (first_stored, span) = (first - src.col_offset, last - first);
    let block_rows = BLOCK_LANES / CH;
    // The block's samples column by column: `BLOCK_LANES` bytes a source column, plus room for the last
    // column's wide write.
    let mut columns = vec![0u8; span * BLOCK_LANES + COLUMN_SLACK];
    // The block's sums, one column of lanes per output pixel (kept apart from the scatter below so the
    // accumulators stay in registers).
    let mut sums = vec![[0i32; BLOCK_LANES]; out_w];
    let mut block: Vec<&[u8]> = Vec::with_capacity(block_rows);
    for block_start in rows.clone().step_by(block_rows) {
        let block_len = (rows.end - block_start).min(block_rows);
        block.clear();
        block.extend((block_start..block_start + block_len).map(|y| {
            let row_start = (y * src.width + first_stored) * CH;
            &src.data[row_start..row_start + span * CH]
        }));
        transpose(&block, span, &mut columns);
        for (xx, &(xmin, count)) in c.bounds.iter().enumerate() {
            let k = &kk[xx * c.ksize..xx * c.ksize + count];
            let taps = &columns[(xmin - first) * BLOCK_LANES..(xmin - first + count) * BLOCK_LANES];
            sums[xx] = mac(taps, k);
        }
        let out_block = &mut out[(block_start - rows.start) * out_w * CH..];
        for r in 0..block_len {
            let out_row = &mut out_block[r * out_w * CH..(r + 1) * out_w * CH];
            for (dst, sum) in out_row.chunks_exact_mut(CH).zip(&sums) {
                for (d, &a) in dst.iter_mut().zip(&sum[r * CH..r * CH + CH]) {
                    *d = clip8(a);
                }
            }
        }
    }
    out
}

/// Writes `span` pixels of each row of `block` down `columns`: source column `x` becomes bytes
/// `x * BLOCK_LANES..` holding the rows' samples in order. Column by column, so the writes are sequential.
#[inline(always)]
fn transpose_block<const CH: usize>(block: &[&[u8]], span: usize, columns: &mut [u8]) {
    for x in 0..span {
        let column = &mut columns[x * BLOCK_LANES..];
        for (r, row) in block.iter().enumerate() {
            if CH == 3 {
                // A whole 4-byte word where the row has one: the fourth byte lands in the next row's lane
                // or the next column's first (both written after this one), or in the slack at the end.
                let word = match row.get(x * 3..x * 3 + 4) {
                    Some(word) => u32::from_le_bytes(word.try_into().unwrap_or_default()),
                    None => u32::from_le_bytes([row[x * 3], row[x * 3 + 1], row[x * 3 + 2], 0]),
                };
                column[r * 3..r * 3 + 4].copy_from_slice(&word.to_le_bytes());
            } else {
                column[r * CH..r * CH + CH].copy_from_slice(&row[x * CH..x * CH + CH]);
            }
        }
    }
}

/// Bytes after the last column that a transposition may write (and the passes never read).
const COLUMN_SLACK: usize = 16;

/// Writes a block of rows down the columns (see [`transpose_block`]).
type Transpose = fn(block: &[&[u8]], span: usize, columns: &mut [u8]);

/// [`transpose_block`] for full blocks of 16 RGB rows: one gather fetches a pixel (as a 4-byte word) from
/// each row, a shuffle and a compress drop the fourth bytes, one store writes the column.
#[cfg(target_arch = "x86_64")]
fn transpose_rgb_avx512(block: &[&[u8]], span: usize, columns: &mut [u8]) {
    use std::arch::x86_64::*;
    const ROWS: usize = BLOCK_LANES / 3;
    let base = block.first().map_or(std::ptr::null(), |row| row.as_ptr());
    // Row offsets from the first row, as the gather's 32-bit indices.
    let offsets: Option<Vec<i32>> = block
        .iter()
        .map(|row| i32::try_from(row.as_ptr() as isize - base as isize).ok())
        .collect();
    let offsets = match offsets {
        Some(o) if o.len() == ROWS && span >= 2 && block.iter().all(|r| r.len() >= span * 3) => o,
        _ => return transpose_block::<3>(block, span, columns),
    };
    #[target_feature(enable = "avx512f,avx512bw")]
    fn run(base: *const u8, offsets: &[i32], span: usize, columns: &mut [u8]) {
        let lanes: [i32; 16] = offsets.try_into().unwrap_or_default();
        // SAFETY: 16 i32 are exactly one __m512i.
        let mut index = unsafe { std::mem::transmute::<[i32; 16], __m512i>(lanes) };
        // Per 128-bit lane: the three samples of each of its four words, then filler.
        let pack = _mm512_broadcast_i32x4(_mm_setr_epi8(
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
        ));
        let step = _mm512_set1_epi32(3);
        for column in columns.chunks_exact_mut(BLOCK_LANES).take(span - 1) {
            // SAFETY: word x of row r starts at `offsets[r] + 3x` from `base`, and its four bytes lie
            // inside row r (x < span - 1 and the row holds `3 * span` bytes), so every read is in bounds.
            let words = unsafe { _mm512_i32gather_epi32::<1>(index, base.cast()) };
            let packed = _mm512_maskz_compress_epi32(0x7777, _mm512_shuffle_epi8(words, pack));
            let mut out = [0u8; 64];
            // SAFETY: `out` holds exactly 64 bytes.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), packed) };
            column.copy_from_slice(&out[..BLOCK_LANES]);
            index = _mm512_add_epi32(index, step);
        }
    }
    // SAFETY: only chosen after `is_x86_feature_detected!("avx512bw")` (which implies AVX-512F), and
    // every row is a slice of one buffer starting `offsets[r]` bytes from `base`.
    unsafe { run(base, &offsets, span, columns) };
    // The last column has no fourth byte to read.
    let x = span - 1;
    for (r, row) in block.iter().enumerate() {
        columns[x * BLOCK_LANES + r * 3..x * BLOCK_LANES + r * 3 + 3]
            .copy_from_slice(&row[x * 3..x * 3 + 3]);
    }
}

/// One output pixel's sums over a block: `columns` holds its taps ([`BLOCK_LANES`] samples each), `k`
/// their fixed-point weights.
type BlockMac = fn(columns: &[u8], k: &[i32]) -> [i32; BLOCK_LANES];

fn block_mac_portable(columns: &[u8], k: &[i32]) -> [i32; BLOCK_LANES] {
    let mut acc = [1i32 << (PRECISION_BITS - 1); BLOCK_LANES];
    for (column, &kx) in columns.chunks_exact(BLOCK_LANES).zip(k) {
        for (a, &p) in acc.iter_mut().zip(column) {
            *a += i32::from(p) * kx;
        }
    }
    acc
}

/// [`block_mac_portable`] with six AVX2 accumulators held in registers.
#[cfg(target_arch = "x86_64")]
fn block_mac_avx2(columns: &[u8], k: &[i32]) -> [i32; BLOCK_LANES] {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2")]
    fn run(columns: &[u8], k: &[i32]) -> [i32; BLOCK_LANES] {
        let mut acc = [_mm256_set1_epi32(1 << (PRECISION_BITS - 1)); BLOCK_LANES / 8];
        for (column, &kx) in columns.chunks_exact(BLOCK_LANES).zip(k) {
            let weight = _mm256_set1_epi32(kx);
            for (a, lanes) in acc.iter_mut().zip(column.chunks_exact(8)) {
                let bytes: [u8; 8] = lanes.try_into().unwrap_or_default();
                let samples = _mm256_cvtepu8_epi32(_mm_set1_epi64x(i64::from_le_bytes(bytes)));
                *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(samples, weight));
            }
        }
        // SAFETY: six __m256i are exactly 48 i32 with no padding.
        unsafe { std::mem::transmute::<[__m256i; BLOCK_LANES / 8], [i32; BLOCK_LANES]>(acc) }
    }
    // SAFETY: only chosen after `is_x86_feature_detected!("avx2")`.
    unsafe { run(columns, k) }
}

/// [`block_mac_portable`] with three AVX-512 accumulators.
#[cfg(target_arch = "x86_64")]
fn block_mac_avx512(columns: &[u8], k: &[i32]) -> [i32; BLOCK_LANES] {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f")]
    fn run(columns: &[u8], k: &[i32]) -> [i32; BLOCK_LANES] {
        let mut acc = [_mm512_set1_epi32(1 << (PRECISION_BITS - 1)); BLOCK_LANES / 16];
        for (column, &kx) in columns.chunks_exact(BLOCK_LANES).zip(k) {
            let weight = _mm512_set1_epi32(kx);
            for (a, lanes) in acc.iter_mut().zip(column.chunks_exact(16)) {
                let bytes: [u8; 16] = lanes.try_into().unwrap_or_default();
                let samples = _mm512_cvtepu8_epi32(_mm_set_epi64x(
                    i64::from_le_bytes(bytes[8..].try_into().unwrap_or_default()),
                    i64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()),
                ));
                *a = _mm512_add_epi32(*a, _mm512_mullo_epi32(samples, weight));
            }
        }
        // SAFETY: three __m512i are exactly 48 i32 with no padding.
        unsafe { std::mem::transmute::<[__m512i; BLOCK_LANES / 16], [i32; BLOCK_LANES]>(acc) }
    }
    // SAFETY: only chosen after `is_x86_feature_detected!("avx512f")`.
    unsafe { run(columns, k) }
}

/// The vertical 8-bit pass: for each output row, the weighted sum of whole source rows (contiguous, so
/// it vectorises as it stands).
fn vertical_u8<const CH: usize>(src: &Plane<'_, u8>, c: &Coeffs) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { vertical_u8_avx2::<CH>(src, c) };
    }
    vertical_u8_rows::<CH>(src, c)
}

/// [`vertical_u8_rows`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_u8_avx2<const CH: usize>(src: &Plane<'_, u8>, c: &Coeffs) -> Vec<u8> {
    vertical_u8_rows::<CH>(src, c)
}

#[inline(always)]
fn vertical_u8_rows<const CH: usize>(src: &Plane<'_, u8>, c: &Coeffs) -> Vec<u8> {
    let kk = normalize_coeffs_8bpc(&c.weights);
    let stride = src.width * CH;
    let (c0, c1) = (src.cols.start * CH, src.cols.end * CH);
    let mut out = Vec::with_capacity((c1 - c0) * c.bounds.len());
    let mut ss = vec![0i32; c1 - c0];
    for (yy, &(ymin, count)) in c.bounds.iter().enumerate() {
        let k = &kk[yy * c.ksize..yy * c.ksize + count];
        ss.iter_mut().for_each(|s| *s = 1 << (PRECISION_BITS - 1));
        for (y, &ky) in k.iter().enumerate() {
            let start = (ymin - src.row_offset + y) * stride;
            let row = &src.data[start + c0..start + c1];
            for (s, &p) in ss.iter_mut().zip(row) {
                *s += i32::from(p) * ky;
            }
        }
        out.extend(ss.iter().map(|&s| clip8(s)));
    }
    out
}

/// A sample type of the double-precision passes (`I;16` raw bytes are handled separately).
trait Sample: Copy {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

/// C's `ROUND_UP`: round half away from zero, then truncate to int.
#[inline]
fn round_up(ss: f64) -> i32 {
    (if ss >= 0.0 { ss + 0.5 } else { ss - 0.5 }) as i32
}

impl Sample for i32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        round_up(v)
    }
}

impl Sample for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// `I;16` samples as Pillow 13's 16bpc passes see them: the two bytes read little-endian whatever the
/// mode (so `I;16B` is byte-swapped, as in Pillow), the result rounded (`ROUND_UP`), clamped to
/// 0..=65535 and written back little-endian.
#[derive(Clone, Copy)]
struct I16Raw([u8; 2]);

impl Sample for I16Raw {
    fn to_f64(self) -> f64 {
        f64::from(u16::from_le_bytes(self.0))
    }
    fn from_f64(v: f64) -> Self {
        I16Raw((round_up(v).clamp(0, 65535) as u16).to_le_bytes())
    }
}

fn horizontal_f64<T: Sample>(src: &Plane<'_, T>, rows: Range<usize>, c: &Coeffs) -> Vec<T> {
    let out_w = c.bounds.len();
    let mut out = Vec::with_capacity(out_w * rows.len());
    for y in rows {
        let row = &src.data[y * src.width..(y + 1) * src.width];
        for (xx, &(xmin, count)) in c.bounds.iter().enumerate() {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + count];
            let x0 = xmin - src.col_offset;
            let mut ss = 0.0f64;
            for (x, &kx) in k.iter().enumerate() {
                ss += row[x0 + x].to_f64() * kx;
            }
            out.push(T::from_f64(ss));
        }
    }
    out
}

fn vertical_f64<T: Sample>(src: &Plane<'_, T>, c: &Coeffs) -> Vec<T> {
    let w = src.width;
    let mut out = Vec::with_capacity(src.cols.len() * c.bounds.len());
    for (yy, &(ymin, count)) in c.bounds.iter().enumerate() {
        let k = &c.weights[yy * c.ksize..yy * c.ksize + count];
        for xx in src.cols.clone() {
            let mut ss = 0.0f64;
            for (y, &ky) in k.iter().enumerate() {
                ss += src.data[(ymin - src.row_offset + y) * w + xx].to_f64() * ky;
            }
            out.push(T::from_f64(ss));
        }
    }
    out
}

/// The part of a resize to `out_w` x `out_h` to compute: output columns `x` and rows `y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub out_w: u32,
    pub out_h: u32,
    pub x: Range<u32>,
    pub y: Range<u32>,
}

impl Window {
    /// The whole output.
    pub(crate) fn full(out_w: u32, out_h: u32) -> Self {
        Window {
            out_w,
            out_h,
            x: 0..out_w,
            y: 0..out_h,
        }
    }
}

fn urange(r: &Range<u32>) -> Range<usize> {
    r.start as usize..r.end as usize
}

/// Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as
/// the width (python-pillow/Pillow#9549); otherwise horizontal first. The order changes the rounding.
pub(crate) fn vertical_first(width: usize, height: usize, out_w: u32, out_h: u32) -> bool {
    let (w, h, ow, oh) = (
        width as i64,
        height as i64,
        i64::from(out_w),
        i64::from(out_h),
    );
    h > oh && (h - oh) > 2 * (w - ow)
}

/// `ImagingResampleInner` restricted to `win`: both passes when both dimensions change (each pass over
/// only the rows or columns the other one reads), a single pass when one does; the pass order is
/// [`vertical_first`]'s. `samples` is the number of interleaved samples a pixel (for a plain copy).
fn resample_inner<T: Clone>(
    data: &[T],
    width: usize,
    height: usize,
    samples: usize,
    win: &Window,
    horizontal: impl Fn(&Plane<'_, T>, Range<usize>, &Coeffs) -> Vec<T>,
    vertical: impl Fn(&Plane<'_, T>, &Coeffs) -> Vec<T>,
) -> Vec<T> {
    let need_horizontal = win.out_w as usize != width;
    let need_vertical = win.out_h as usize != height;
    let source = Plane {
        data,
        width,
        cols: urange(&win.x),
        row_offset: 0,
        col_offset: 0,
    };
    let horiz = || precompute_coeffs(width as u32, 0.0, width as f32, win.out_w, win.x.clone());
    let vert = || precompute_coeffs(height as u32, 0.0, height as f32, win.out_h, win.y.clone());
    let span = |c: &Coeffs| {
        let first = c.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let last = c.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        first..last.max(first)
    };
    match (need_horizontal, need_vertical) {
        (false, false) => {
            // Neither pass: the window of the source itself.
            let mut out = Vec::with_capacity(win.x.len() * win.y.len() * samples);
            for y in urange(&win.y) {
                let row = y * width;
                out.extend_from_slice(
                    &data[(row + win.x.start as usize) * samples
                        ..(row + win.x.end as usize) * samples],
                );
            }
            out
        }
        (true, false) => horizontal(&source, urange(&win.y), &horiz()),
        (false, true) => vertical(&source, &vert()),
        (true, true) if vertical_first(width, height, win.out_w, win.out_h) => {
            let (h, v) = (horiz(), vert());
            let cols = span(&h);
            let tmp = vertical(
                &Plane {
                    cols: cols.clone(),
                    ..source
                },
                &v,
            );
            let tmp_plane = Plane {
                data: &tmp,
                width: cols.len(),
                cols: 0..cols.len(),
                row_offset: 0,
                col_offset: cols.start,
            };
            horizontal(&tmp_plane, 0..win.y.len(), &h)
        }
        (true, true) => {
            let (h, v) = (horiz(), vert());
            let rows = span(&v);
            let tmp = horizontal(&source, rows.clone(), &h);
            let cols = win.x.len();
            vertical(
                &Plane {
                    data: &tmp,
                    width: cols,
                    cols: 0..cols,
                    row_offset: rows.start,
                    col_offset: 0,
                },
                &v,
            )
        }
    }
}

/// Resamples an 8-bit image with 1 to 4 interleaved channels.
pub(crate) fn resample_u8(
    data: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    win: &Window,
) -> Vec<u8> {
    macro_rules! run {
        ($ch:literal) => {
            resample_inner(
                data,
                width,
                height,
                $ch,
                win,
                horizontal_u8::<$ch>,
                vertical_u8::<$ch>,
            )
        };
    }
    match channels {
        1 => run!(1),
        2 => run!(2),
        3 => run!(3),
        _ => run!(4),
    }
}

/// Resamples `I;16`/`I;16B` raw bytes (2 a pixel) with Pillow's 16bpc passes, which read and write the
/// bytes little-endian whatever the mode says (so `I;16B` gets Pillow's byte-swapped result too).
pub(crate) fn resample_i16_raw(data: &[u8], width: usize, height: usize, win: &Window) -> Vec<u8> {
    let samples: Vec<I16Raw> = data.chunks_exact(2).map(|c| I16Raw([c[0], c[1]])).collect();
    let out = resample_inner(
        &samples,
        width,
        height,
        1,
        win,
        horizontal_f64,
        vertical_f64,
    );
    out.iter().flat_map(|s| s.0).collect()
}

/// Resamples mode `I`.
pub(crate) fn resample_i32(data: &[i32], width: usize, height: usize, win: &Window) -> Vec<i32> {
    resample_inner(data, width, height, 1, win, horizontal_f64, vertical_f64)
}

/// Resamples mode `F`.
pub(crate) fn resample_f32(data: &[f32], width: usize, height: usize, win: &Window) -> Vec<f32> {
    resample_inner(data, width, height, 1, win, horizontal_f64, vertical_f64)
}

#[cfg(test)]
mod tests {
    //! Expected values come from Pillow (weights measured through mode-F resizes of delta images) and from
    //! Python's int() for the fixed-point rounding, generated by scripts/fixtures/gen_images.py.
    use super::*;

    fn tables() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/images/tables/tables.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn bicubic_weights_match_pillow() {
        let mut checked = 0;
        for case in tables()["bicubic_weights_f32_bits"].as_array().unwrap() {
            let (inp, out) = (
                case["in"].as_u64().unwrap() as u32,
                case["out"].as_u64().unwrap() as u32,
            );
            let mut expected = vec![vec![0u32; inp as usize]; out as usize];
            for e in case["entries"].as_array().unwrap() {
                let e: Vec<u64> = e
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                expected[e[0] as usize][e[1] as usize] = e[2] as u32;
            }
            let c = precompute_coeffs(inp, 0.0, inp as f32, out, 0..out);
            for (xx, &(xmin, count)) in c.bounds.iter().enumerate() {
                for (j, &pillow) in expected[xx].iter().enumerate() {
                    let ours = if j >= xmin && j < xmin + count {
                        c.weights[xx * c.ksize + j - xmin]
                    } else {
                        0.0
                    };
                    // Pillow's F resize stores (float)(0.0 + 1.0 * k), which turns a -0.0 weight into +0.0.
                    assert_eq!(
                        ((0.0 + ours) as f32).to_bits(),
                        pillow,
                        "{inp}->{out}: output {xx}, source {j}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
    }

    /// Pillow's row-at-a-time horizontal pass, as `ImagingResampleHorizontal_8bpc` writes it.
    fn horizontal_reference<const CH: usize>(
        src: &Plane<'_, u8>,
        rows: Range<usize>,
        c: &Coeffs,
    ) -> Vec<u8> {
        let kk = normalize_coeffs_8bpc(&c.weights);
        let mut out = Vec::new();
        for y in rows {
            let row = &src.data[y * src.width * CH..(y + 1) * src.width * CH];
            for (xx, &(xmin, count)) in c.bounds.iter().enumerate() {
                let mut ss = [1i32 << (PRECISION_BITS - 1); CH];
                for x in 0..count {
                    let p = &row[(xmin - src.col_offset + x) * CH..][..CH];
                    for ch in 0..CH {
                        ss[ch] += i32::from(p[ch]) * kk[xx * c.ksize + x];
                    }
                }
                out.extend(ss.iter().map(|&s| clip8(s)));
            }
        }
        out
    }

    fn check_blocked_horizontal<const CH: usize>(seed: &mut u64) {
        let mut next = || {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 33) as usize
        };
        for _ in 0..12 {
            let (width, height) = (1 + next() % 90, 1 + next() % 70);
            let out_w = 1 + next() % 120;
            let start = next() % out_w;
            let end = start + 1 + next() % (out_w - start);
            let coeffs = precompute_coeffs(
                width as u32,
                0.0,
                width as f32,
                out_w as u32,
                start as u32..end as u32,
            );
            let col_offset = coeffs
                .bounds
                .iter()
                .map(|b| b.0)
                .min()
                .unwrap_or(0)
                .min(next() % 4);
            let stored_width = width - col_offset;
            // Extreme samples more often than uniform ones: they exercise clamping.
            let data: Vec<u8> = (0..stored_width * height * CH)
                .map(|_| match next() % 4 {
                    0 => 0,
                    1 => 255,
                    _ => next() as u8,
                })
                .collect();
            let plane = Plane {
                data: &data,
                width: stored_width,
                cols: 0..stored_width,
                row_offset: 0,
                col_offset,
            };
            let rows = (next() % height)..height;
            let expected = horizontal_reference::<CH>(&plane, rows.clone(), &coeffs);
            assert_eq!(
                horizontal_u8::<CH>(&plane, rows.clone(), &coeffs),
                expected,
                "{CH} ch {width}x{height} -> {out_w}"
            );
            assert_eq!(
                horizontal_u8_blocked::<CH>(
                    &plane,
                    rows.clone(),
                    &coeffs,
                    block_mac_portable,
                    transpose_block::<CH>
                ),
                expected,
                "portable, {CH} ch {width}x{height} -> {out_w}"
            );
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present.
                let avx2 = unsafe { horizontal_u8_avx2::<CH>(&plane, rows.clone(), &coeffs) };
                assert_eq!(avx2, expected, "AVX2, {CH} ch {width}x{height} -> {out_w}");
            }
        }
    }

    #[test]
    fn blocked_horizontal_pass_equals_pillows_row_loop() {
        let mut seed = 7;
        check_blocked_horizontal::<1>(&mut seed);
        check_blocked_horizontal::<2>(&mut seed);
        check_blocked_horizontal::<3>(&mut seed);
        check_blocked_horizontal::<4>(&mut seed);
    }

    #[test]
    fn window_coefficients_equal_full_table() {
        let full = precompute_coeffs(451, 0.0, 451.0, 224, 0..224);
        let part = precompute_coeffs(451, 0.0, 451.0, 224, 50..90);
        assert_eq!(part.ksize, full.ksize);
        assert_eq!(part.bounds[..], full.bounds[50..90]);
        assert_eq!(
            part.weights[..],
            full.weights[50 * full.ksize..90 * full.ksize]
        );
    }

    #[test]
    fn fixed_point_rounds_half_away_from_zero_and_truncates_like_c() {
        for pair in tables()["fixed_point"].as_array().unwrap() {
            let w = pair[0].as_f64().unwrap();
            let expected = pair[1].as_i64().unwrap() as i32;
            assert_eq!(normalize_coeffs_8bpc(&[w]), vec![expected], "weight {w:e}");
        }
    }

    #[test]
    fn clip8_matches_pillows_lookup_table() {
        // _clip8_lookups: index (ss >> 22) maps to 0 below 0, the value in 0..255, 255 above (an i32
        // accumulator gives indices -512..511).
        let half = 1 << (PRECISION_BITS - 1);
        for v in -512i32..512 {
            let ss = (v << PRECISION_BITS) + half;
            assert_eq!(i32::from(clip8(ss)), v.clamp(0, 255));
        }
        assert_eq!(clip8((1 << PRECISION_BITS) - 1), 0);
        assert_eq!(clip8(-1), 0);
    }

    #[test]
    fn sixteen_bit_writeback_rounds_and_clamps_like_pillow_13() {
        // Measured on Pillow 13.0.0 (I;16 and I;16B resizes of random rows): ROUND_UP, then clamp to
        // 0..=65535, bytes little-endian.
        assert_eq!(I16Raw::from_f64(258.2).0, [2, 1]);
        assert_eq!(I16Raw::from_f64(258.5).0, [3, 1]);
        assert_eq!(I16Raw::from_f64(-0.4).0, [0, 0]);
        assert_eq!(I16Raw::from_f64(-300.0).0, [0, 0]);
        assert_eq!(I16Raw::from_f64(65535.4).0, [255, 255]);
        assert_eq!(I16Raw::from_f64(70000.0).0, [255, 255]);
        assert_eq!(I16Raw([0x12, 0x34]).to_f64(), 13330.0);
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        // Observed on Pillow 13.0.0 (direct resize equals vertical-then-horizontal two-step resize).
        assert!(vertical_first(410, 845, 224, 461));
        assert!(vertical_first(50, 5000, 40, 1000));
        assert!(vertical_first(53, 172, 261, 153));
        assert!(!vertical_first(845, 410, 461, 224));
        assert!(!vertical_first(160, 88, 114, 19));
        assert!(!vertical_first(3, 1000, 32, 10666));
        assert!(!vertical_first(18, 178, 116, 189));
        // A tie ((h - oh) == 2 (w - ow)) keeps the horizontal pass first.
        assert!(!vertical_first(100, 140, 80, 100));
    }
}
