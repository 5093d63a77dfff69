//! Pillow 13's convolution resampler (`libImaging/Resample.c`) for the BICUBIC filter (a = -0.5):
//! separable, antialiased (support widened by the scale when shrinking), a pass skipped when its
//! dimension is unchanged. Horizontal pass first over only the rows the vertical pass reads, except that
//! Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as the
//! width. 8-bit images use fixed-point weights (22 fractional bits) with uint8 rounding/clamping between
//! passes; `I;16` accumulates in double and clamps to 16 bits; `I`/`F` accumulate in double. Callers may
//! ask for a window of the output (the centre crop): every output pixel is computed exactly as in the
//! full resize. The weights are [`crate::coeffs`]'; the vectorised 8-bit passes live in [`crate::resample_u8`].

use std::ops::Range;

use crate::coeffs::{precompute_coeffs, Coeffs};
use crate::plane::{Plane, Window};
use crate::resample_u8::{horizontal_u8, vertical_u8};

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
    //! Expected values measured on Pillow 13.0.0.
    use super::*;

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
