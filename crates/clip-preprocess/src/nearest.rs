//! Pillow's NEAREST resize, used for modes `1` and `P` whatever filter was asked (`Image.resize`). The C
//! `_resize` builds the affine scale `a = [(x1 - x0) / xsize, 0, x0, 0, (y1 - y0) / ysize, y0]` and
//! `ImagingScaleAffine` walks it: the source coordinate starts at `a0 / 2` and is advanced by repeated
//! addition of `a0` (so rounding accumulates exactly as in C), truncated with `COORD`.

use crate::plane::Window;

/// `COORD(v)`: -1 below zero, else truncation.
#[inline]
fn coord(v: f64) -> i64 {
    if v < 0.0 {
        -1
    } else {
        v as i64
    }
}

/// Source index per output index in `range` along one axis (`None` where the source coordinate falls
/// outside). The coordinate is accumulated from index 0 as in C, whatever the range.
fn axis_table(in_size: usize, out_size: u32, range: std::ops::Range<u32>) -> Vec<Option<usize>> {
    // box edges are floats in Pillow: (float)(in_size - 0) widened to double.
    let a = f64::from(in_size as f32) / f64::from(out_size);
    let mut pos = 0.0 + a * 0.5;
    let mut table = Vec::with_capacity(range.len());
    for i in 0..range.end {
        if i >= range.start {
            let c = coord(pos);
            table.push(if c >= 0 && (c as usize) < in_size {
                Some(c as usize)
            } else {
                None
            });
        }
        pos += a;
    }
    table
}

/// Resizes pixels of `pixel_bytes` bytes each to the window `win` of the `out_w` x `out_h` result; output
/// pixels whose source falls outside the image are zero.
pub(crate) fn resize_nearest(
    data: &[u8],
    width: usize,
    height: usize,
    pixel_bytes: usize,
    win: &Window,
) -> Vec<u8> {
    let xs = axis_table(width, win.out_w, win.x.clone());
    let ys = axis_table(height, win.out_h, win.y.clone());
    let row_bytes = xs.len() * pixel_bytes;
    let mut out = vec![0u8; row_bytes * ys.len()];
    for (y, sy) in ys.iter().enumerate() {
        let Some(sy) = sy else { continue };
        let src_row = &data[sy * width * pixel_bytes..(sy + 1) * width * pixel_bytes];
        let dst_row = &mut out[y * row_bytes..(y + 1) * row_bytes];
        for (x, sx) in xs.iter().enumerate() {
            if let Some(sx) = sx {
                dst_row[x * pixel_bytes..(x + 1) * pixel_bytes]
                    .copy_from_slice(&src_row[sx * pixel_bytes..(sx + 1) * pixel_bytes]);
            }
        }
    }
    out
}
