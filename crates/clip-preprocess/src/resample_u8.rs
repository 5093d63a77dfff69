//! The 8-bit passes of Pillow's resampler (`ImagingResampleHorizontal_8bpc` / `ImagingResampleVertical_8bpc`),
//! vectorised without changing a sum: the horizontal pass transposes blocks of rows into columns so each tap
//! is one multiply-add across the block (AVX2 or AVX-512, portable loops elsewhere); the vertical pass is a
//! weighted sum of contiguous rows compiled for AVX2. Weights and rounding are Pillow's fixed point (see
//! [`crate::resample`]), so the bytes equal Pillow's.

use std::ops::Range;

use crate::coeffs::{clip8, normalize_coeffs_8bpc, Coeffs, PRECISION_BITS};
use crate::plane::Plane;

/// Samples one block of the horizontal 8-bit pass accumulates at once (as `i32` lanes): `48 / CH` source rows
/// of `CH` samples, so the inner loop is a fixed-length vector multiply-add whatever the channel count.
const BLOCK_LANES: usize = 48;

/// The horizontal 8-bit pass. Pillow walks one row at a time with `CH` accumulators; here a block of rows
/// is first transposed into columns of [`BLOCK_LANES`] samples, so each tap is one multiply-add over the
/// whole block. The integer sums are the same, so the bytes are too.
pub(crate) fn horizontal_u8<const CH: usize>(
    src: &Plane<'_, u8>,
    rows: Range<usize>,
    c: &Coeffs,
) -> Vec<u8> {
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
pub(crate) fn vertical_u8<const CH: usize>(src: &Plane<'_, u8>, c: &Coeffs) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coeffs::precompute_coeffs;

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
}
