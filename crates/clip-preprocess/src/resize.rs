//! `PIL.Image.Image.resize(size, BICUBIC)` with Pillow's mode rules: same size returns a copy; `1` and `P`
//! are resized with NEAREST whatever the filter; `RGBA`/`LA` are premultiplied (`RGBa`/`La`), resampled and
//! un-premultiplied; every other mode is resampled as it is (8-bit modes channel by channel, `I;16`,
//! `I` and `F` with their own passes).

use crate::convert::{premultiply, unpremultiply_all};
use crate::error::PreprocessError;
use crate::image::{Mode, PilImage, PixelData};
use crate::nearest::resize_nearest;
use crate::plane::Window;
use crate::resample::{resample_f32, resample_i16_raw, resample_i32, resample_u8};

/// Resizes to `out_w` x `out_h` exactly as Pillow's `Image.resize((out_w, out_h), Image.BICUBIC)`.
pub fn resize_bicubic(
    image: &PilImage,
    out_w: u32,
    out_h: u32,
) -> Result<PilImage, PreprocessError> {
    resize_window(image, &Window::full(out_w, out_h))
}

/// The window `win` of Pillow's BICUBIC resize (pixels identical to cropping the full result).
pub(crate) fn resize_window(image: &PilImage, win: &Window) -> Result<PilImage, PreprocessError> {
    if win.out_w == 0
        || win.out_h == 0
        || win.out_w > i32::MAX as u32
        || win.out_h > i32::MAX as u32
    {
        return Err(PreprocessError::InvalidArgument(format!(
            "cannot resize to {}x{}: height and width must be > 0 and fit a C int",
            win.out_w, win.out_h
        )));
    }
    if win.x.end > win.out_w
        || win.y.end > win.out_h
        || win.x.start > win.x.end
        || win.y.start > win.y.end
    {
        return Err(PreprocessError::InvalidArgument(
            "resize window outside the output".into(),
        ));
    }
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mode = image.mode();
    let (ww, wh) = (win.x.len() as u32, win.y.len() as u32);
    let data = match (mode, image.pixels()) {
        (Mode::Bilevel | Mode::P, PixelData::U8(d)) => {
            PixelData::U8(resize_nearest(d, w, h, 1, win))
        }
        (Mode::La | Mode::Rgba, PixelData::U8(d))
            if (win.out_w, win.out_h) != (w as u32, h as u32) =>
        {
            let ch = mode.samples_per_pixel();
            let mut out = resample_u8(&premultiply(d, ch), w, h, ch, win);
            unpremultiply_all(&mut out, ch);
            PixelData::U8(out)
        }
        (Mode::I16 | Mode::I16B, PixelData::U8(d)) => PixelData::U8(resample_i16_raw(d, w, h, win)),
        (_, PixelData::U8(d)) => PixelData::U8(resample_u8(d, w, h, mode.samples_per_pixel(), win)),
        (_, PixelData::I32(d)) => PixelData::I32(resample_i32(d, w, h, win)),
        (_, PixelData::F32(d)) => PixelData::F32(resample_f32(d, w, h, win)),
    };
    Ok(image.derive(mode, ww, wh, data))
}
