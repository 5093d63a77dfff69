//! Convolutions as packed-weight GEMMs, for the ResNet towers: feature maps are kept channels-last (NHWC), so a
//! 1x1 convolution is a GEMM over the map as it lies and a kxk one is a GEMM over its patches (im2col), each row
//! one output pixel's `k * k * channels` inputs in (ky, kx, channel) order. The weight `[out, in, k, k]` is
//! reordered to match once, at load ([`reorder_conv_weight`]). Also the channels-last average pool and the
//! buffers a forward pass reuses.

use super::pool::run_chunks_mut;

/// The shape of a channels-last feature map `[batch, height, width, channels]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapShape {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl MapShape {
    /// Values in the map.
    pub fn values(&self) -> usize {
        self.pixels() * self.channels
    }

    /// Pixels over the whole batch: the GEMM's rows.
    pub fn pixels(&self) -> usize {
        self.batch * self.height * self.width
    }
}

/// The geometry of a square convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    /// PyTorch's output size for an input side of `side`.
    pub fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.padding).saturating_sub(self.kernel) / self.stride + 1
    }

    /// Output shape for `input` with `out_channels` filters.
    pub fn out_shape(&self, input: MapShape, out_channels: usize) -> MapShape {
        MapShape {
            batch: input.batch,
            height: self.out_side(input.height),
            width: self.out_side(input.width),
            channels: out_channels,
        }
    }

    /// Whether the GEMM can read the input map as its rows (a 1x1, stride-1, unpadded convolution).
    pub fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }

    /// Values per GEMM row for `in_channels` input channels.
    pub fn patch_len(&self, in_channels: usize) -> usize {
        self.kernel * self.kernel * in_channels
    }
}

/// PyTorch's `[out, in, k, k]` weight as `[out, k, k, in]`: the order of an im2col row.
pub fn reorder_conv_weight(weight: &[f32], out_c: usize, in_c: usize, k: usize) -> Vec<f32> {
    assert_eq!(weight.len(), out_c * in_c * k * k, "conv weight size");
    let mut out = vec![0f32; weight.len()];
    for o in 0..out_c {
        for i in 0..in_c {
            for ky in 0..k {
                for kx in 0..k {
                    out[((o * k + ky) * k + kx) * in_c + i] =
                        weight[((o * in_c + i) * k + ky) * k + kx];
                }
            }
        }
    }
    out
}

/// `[batch, channels, height, width]` (PyTorch's layout) to channels-last.
pub fn nchw_to_nhwc(x: &[f32], shape: MapShape) -> Vec<f32> {
    assert_eq!(x.len(), shape.values(), "input size");
    let (h, w, c) = (shape.height, shape.width, shape.channels);
    let mut out = vec![0f32; x.len()];
    for b in 0..shape.batch {
        let src = &x[b * c * h * w..(b + 1) * c * h * w];
        let dst = &mut out[b * h * w * c..(b + 1) * h * w * c];
        for ch in 0..c {
            for (p, &v) in src[ch * h * w..(ch + 1) * h * w].iter().enumerate() {
                dst[p * c + ch] = v;
            }
        }
    }
    out
}

/// Writes the im2col rows `first_row..first_row + dst.len() / patch_len` of `x` into `dst`: row `r` is output
/// pixel `r` (batch-major, then y, then x), its values in (ky, kx, channel) order, zero where the patch leaves the
/// map (padding). Split across the cores.
pub fn im2col(x: &[f32], shape: MapShape, geo: ConvGeometry, first_row: usize, dst: &mut [f32]) {
    assert_eq!(x.len(), shape.values(), "input size");
    let patch = geo.patch_len(shape.channels).max(1);
    assert_eq!(dst.len() % patch, 0, "im2col block size");
    let rows = dst.len() / patch;
    let rows_per_part = rows.div_ceil(crate::threads::count()).max(1);
    run_chunks_mut(dst, rows_per_part * patch, |i, part| {
        im2col_rows(x, shape, geo, first_row + i * rows_per_part, part)
    });
}

fn im2col_rows(x: &[f32], shape: MapShape, geo: ConvGeometry, first_row: usize, dst: &mut [f32]) {
    let c = shape.channels;
    let (oh, ow) = (geo.out_side(shape.height), geo.out_side(shape.width));
    for (i, row) in dst.chunks_exact_mut(geo.patch_len(c).max(1)).enumerate() {
        let r = first_row + i;
        let (b, rest) = (r / (oh * ow), r % (oh * ow));
        let (oy, ox) = (rest / ow, rest % ow);
        let image = &x[b * shape.height * shape.width * c..];
        for ky in 0..geo.kernel {
            let iy = (oy * geo.stride + ky) as isize - geo.padding as isize;
            let line = &mut row[ky * geo.kernel * c..(ky + 1) * geo.kernel * c];
            if iy < 0 || iy as usize >= shape.height {
                line.fill(0.0);
                continue;
            }
            let iy = iy as usize;
            for kx in 0..geo.kernel {
                let ix = (ox * geo.stride + kx) as isize - geo.padding as isize;
                let cell = &mut line[kx * c..(kx + 1) * c];
                if ix < 0 || ix as usize >= shape.width {
                    cell.fill(0.0);
                } else {
                    let at = (iy * shape.width + ix as usize) * c;
                    cell.copy_from_slice(&image[at..at + c]);
                }
            }
        }
    }
}

/// The shape `AvgPool2d(s)` gives `shape` (floor, as PyTorch).
pub fn pooled_shape(shape: MapShape, s: usize) -> MapShape {
    MapShape {
        height: shape.height / s,
        width: shape.width / s,
        ..shape
    }
}

/// PyTorch's `AvgPool2d(s)` (kernel = stride = `s`, no padding, floor) on a channels-last map, into `out`
/// (`pooled_shape(shape, s).values()` values, every one written).
pub fn avg_pool(x: &[f32], shape: MapShape, s: usize, out: &mut [f32]) {
    assert_eq!(x.len(), shape.values(), "input size");
    let out_shape = pooled_shape(shape, s);
    assert_eq!(out.len(), out_shape.values(), "output size");
    let (c, w) = (shape.channels, shape.width);
    let (oh, ow) = (out_shape.height, out_shape.width);
    let divisor = (s * s) as f32;
    // One output row (a line of pixels of one image) per unit of work.
    let line = ow * c;
    let lines_per_part = (oh * shape.batch).div_ceil(crate::threads::count()).max(1);
    run_chunks_mut(out, (lines_per_part * line).max(1), |part, dst| {
        for (j, out_line) in dst.chunks_exact_mut(line.max(1)).enumerate() {
            let global = part * lines_per_part + j;
            let (b, oy) = (global / oh, global % oh);
            let image = &x[b * shape.height * w * c..];
            for ox in 0..ow {
                let acc = &mut out_line[ox * c..(ox + 1) * c];
                acc.fill(0.0);
                // Summed in PyTorch's order (row by row within the window), then divided as it divides.
                for dy in 0..s {
                    for dx in 0..s {
                        let at = ((oy * s + dy) * w + ox * s + dx) * c;
                        for (a, &v) in acc.iter_mut().zip(&image[at..at + c]) {
                            *a += v;
                        }
                    }
                }
                for a in acc.iter_mut() {
                    *a /= divisor;
                }
            }
        }
    });
}

/// Buffers handed back and reused within one forward pass. A multi-megabyte `Vec` is fresh pages from the OS
/// each time, which the kernel zeroes on first touch; a ResNet forward at batch 32 would fault in gigabytes.
#[derive(Debug, Default)]
pub struct Scratch {
    free: Vec<Vec<f32>>,
}

impl Scratch {
    /// A buffer of `len` values whose contents are left over from earlier use (callers overwrite them).
    pub fn take(&mut self, len: usize) -> Vec<f32> {
        // The smallest free buffer that holds `len` values without growing, else the largest one.
        let fits = (0..self.free.len())
            .filter(|&i| self.free[i].capacity() >= len)
            .min_by_key(|&i| self.free[i].capacity());
        let largest = (0..self.free.len()).max_by_key(|&i| self.free[i].capacity());
        match fits.or(largest) {
            Some(i) => {
                let mut buffer = self.free.swap_remove(i);
                buffer.resize(len, 0.0);
                buffer
            }
            None => vec![0f32; len],
        }
    }

    /// Returns `buffer` for reuse.
    pub fn give(&mut self, buffer: Vec<f32>) {
        self.free.push(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lcg, max_abs_diff};

    /// Direct convolution in f64 on PyTorch's layouts (NCHW input, `[out, in, k, k]` weight), output NHWC.
    fn direct_conv(
        x_nchw: &[f32],
        shape: MapShape,
        w: &[f32],
        out_c: usize,
        geo: ConvGeometry,
    ) -> Vec<f32> {
        let (c, h, wd, k) = (shape.channels, shape.height, shape.width, geo.kernel);
        let out_shape = geo.out_shape(shape, out_c);
        let mut out = vec![0f32; out_shape.values()];
        for b in 0..shape.batch {
            for oy in 0..out_shape.height {
                for ox in 0..out_shape.width {
                    for o in 0..out_c {
                        let mut s = 0f64;
                        for i in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * geo.stride + ky) as isize - geo.padding as isize;
                                    let ix = (ox * geo.stride + kx) as isize - geo.padding as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                                        continue;
                                    }
                                    let xv =
                                        x_nchw[((b * c + i) * h + iy as usize) * wd + ix as usize];
                                    s += xv as f64 * w[((o * c + i) * k + ky) * k + kx] as f64;
                                }
                            }
                        }
                        let pixel = (b * out_shape.height + oy) * out_shape.width + ox;
                        out[pixel * out_c + o] = s as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_times_reordered_weight_is_the_convolution() {
        // Odd sides, padding, strides 1 and 2, kernels 1 and 3, more than one image.
        for &(b, c, h, wd, out_c, k, stride, padding) in &[
            (2, 3, 7, 5, 4, 3, 2, 1),
            (1, 5, 6, 6, 3, 3, 1, 1),
            (3, 4, 5, 7, 2, 1, 1, 0),
            (1, 2, 9, 4, 5, 3, 2, 0),
        ] {
            let shape = MapShape {
                batch: b,
                height: h,
                width: wd,
                channels: c,
            };
            let geo = ConvGeometry {
                kernel: k,
                stride,
                padding,
            };
            let x = lcg(shape.values(), 3 + c as u64);
            let w = lcg(out_c * c * k * k, 9 + k as u64);
            let want = direct_conv(&x, shape, &w, out_c, geo);
            let nhwc = nchw_to_nhwc(&x, shape);
            let out_shape = geo.out_shape(shape, out_c);
            let rows = out_shape.pixels();
            let patch = geo.patch_len(c);
            let mut cols = vec![f32::NAN; rows * patch];
            im2col(&nhwc, shape, geo, 0, &mut cols);
            let wr = reorder_conv_weight(&w, out_c, c, k);
            let got: Vec<f32> = (0..rows)
                .flat_map(|r| {
                    let row = &cols[r * patch..(r + 1) * patch];
                    (0..out_c)
                        .map(|o| {
                            row.iter()
                                .zip(&wr[o * patch..(o + 1) * patch])
                                .map(|(a, b)| a * b)
                                .sum::<f32>()
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            assert!(
                max_abs_diff(&got, &want) < 1e-5,
                "{b}x{c}x{h}x{wd} k{k} s{stride} p{padding}"
            );
            // A block of rows from the middle matches the same rows of the whole.
            let n = 4.min(rows - 3);
            let mut part = vec![f32::NAN; n * patch];
            im2col(&nhwc, shape, geo, 3, &mut part);
            assert_eq!(part, cols[3 * patch..(3 + n) * patch]);
        }
    }

    #[test]
    fn average_pool_matches_the_window_means() {
        let shape = MapShape {
            batch: 2,
            height: 7,
            width: 6,
            channels: 3,
        };
        let x = lcg(shape.values(), 5);
        let out = pooled_shape(shape, 2);
        // A reused buffer's leftovers do not leak into the means.
        let mut got = vec![f32::NAN; out.values()];
        avg_pool(&x, shape, 2, &mut got);
        assert_eq!(
            out,
            MapShape {
                batch: 2,
                height: 3,
                width: 3,
                channels: 3
            }
        );
        for b in 0..2 {
            for oy in 0..3 {
                for ox in 0..3 {
                    for ch in 0..3 {
                        let at = |y: usize, xx: usize| x[((b * 7 + y) * 6 + xx) * 3 + ch];
                        let mean = (at(2 * oy, 2 * ox)
                            + at(2 * oy, 2 * ox + 1)
                            + at(2 * oy + 1, 2 * ox)
                            + at(2 * oy + 1, 2 * ox + 1))
                            / 4.0;
                        let g = got[((b * 3 + oy) * 3 + ox) * 3 + ch];
                        assert!((g - mean).abs() < 1e-6, "{g} vs {mean}");
                    }
                }
            }
        }
    }

    #[test]
    fn scratch_reuses_the_closest_buffer() {
        let mut scratch = Scratch::default();
        let big = scratch.take(1000);
        let small = scratch.take(10);
        let (big_ptr, small_ptr) = (big.as_ptr(), small.as_ptr());
        scratch.give(big);
        scratch.give(small);
        let again = scratch.take(8);
        assert_eq!((again.len(), again.as_ptr()), (8, small_ptr));
        let grown = scratch.take(2000);
        assert_eq!(grown.len(), 2000, "the largest is grown when none fits");
        assert!(grown.capacity() >= 2000 && (grown.as_ptr() == big_ptr || grown.capacity() > 1000));
    }
}
