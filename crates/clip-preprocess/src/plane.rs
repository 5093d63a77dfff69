//! What the resampler's passes work on: a borrowed plane of interleaved samples (possibly only the rows or
//! columns a previous pass kept) and the window of the output a resize computes (the centre crop).

use std::ops::Range;

/// What one pass reads: rows of `width` pixels (each pixel a fixed number of interleaved samples). The
/// vertical pass reads the columns `cols`; source row `y` is stored at `y - row_offset`, source column
/// `x` at `x - col_offset` (a previous pass may have kept only the rows or columns the next one needs).
#[derive(Clone)]
pub(crate) struct Plane<'a, T> {
    pub data: &'a [T],
    pub width: usize,
    pub cols: Range<usize>,
    pub row_offset: usize,
    pub col_offset: usize,
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
