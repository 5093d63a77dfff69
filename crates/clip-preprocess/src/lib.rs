//! Image decoding and OpenAI CLIP's preprocessing, bit-identical to what `clip.load(...)`'s `preprocess`
//! computes with Pillow 13 and torchvision 0.29 (`clip.clip._transform(n)`):
//! `Resize(n, BICUBIC)` -> `CenterCrop(n)` -> `convert("RGB")` -> `ToTensor()` -> `Normalize(mean, std)`.
//!
//! * [`open`] / [`decode`] give a [`PilImage`]: Pillow's mode and pixels after `Image.open`. Formats are
//!   recognised by content: JPEG (libjpeg-turbo's decoder, as in Pillow's wheel), PNG, GIF (first frame),
//!   WebP (lossy and lossless), BMP, TIFF (first image; not JPEG-compressed). Decoded pixels equal
//!   Pillow's for every fixture in `fixtures/images`.
//! * [`resize_crop_rgb`] resizes (Pillow's BICUBIC with its mode rules), centre-crops and converts to RGB.
//! * [`normalize`] gives the CHW float tensor; [`preprocess_path`] / [`preprocess_image`] chain them.
//!
//! Images above Pillow's decompression-bomb limit ([`PIXEL_LIMIT`] pixels) are refused before decoding.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::missing_safety_doc)]
// Modules in layer order (tests/layers.rs): each uses only those above it.
mod error;
mod image;
mod config;
mod decode;
mod geometry;
mod convert;
mod normalize;
mod coeffs;
mod plane;
mod nearest;
mod resample_u8;
mod resample;
mod resize;

// Links libjpeg (the C shim in csrc/ calls into it).
use mozjpeg_sys as _;

use std::path::Path;

pub use config::{PreprocessConfig, MAX_SIZE, OPENAI_MEAN, OPENAI_STD};
pub use decode::{sniff, Format, MAX_IMAGE_PIXELS, PIXEL_LIMIT};
pub use error::PreprocessError;
pub use geometry::{center_crop, center_crop_offset, resized_size};
pub use image::{Mode, PilImage, PixelData, Transparency};
pub use normalize::{normalize, RgbImage};
pub use resize::resize_bicubic;

/// Reads and decodes an image file (format detected from its content, not its extension). Only regular files
/// up to the image size limit are read ([`clip_io::Input::Image`]): a FIFO or device is refused at once.
pub fn open(path: &Path) -> Result<PilImage, PreprocessError> {
    let bytes = clip_io::read_input(path, clip_io::Input::Image)?;
    decode::decode(&bytes).map_err(|e| e.with_path(path))
}

/// Decodes an image held in memory (errors name the path `<memory>`).
pub fn decode(bytes: &[u8]) -> Result<PilImage, PreprocessError> {
    decode::decode(bytes)
}

/// Decodes a file already read into memory; errors name `path`.
pub fn decode_named(bytes: &[u8], path: &Path) -> Result<PilImage, PreprocessError> {
    decode::decode(bytes).map_err(|e| e.with_path(path))
}

/// `decode` + `preprocess_image` for a file already read into memory; errors name `path`.
pub fn preprocess_bytes(
    bytes: &[u8],
    path: &Path,
    config: &PreprocessConfig,
) -> Result<Vec<f32>, PreprocessError> {
    let image = decode::decode(bytes).map_err(|e| e.with_path(path))?;
    preprocess_image(&image, config).map_err(|e| e.with_path(path))
}

/// Resize to `width` x `height` (BICUBIC with Pillow's mode rules) and convert to RGB: a thumbnail.
pub fn resize_rgb(image: &PilImage, width: u32, height: u32) -> Result<RgbImage, PreprocessError> {
    let resized = resize_bicubic(image, width, height)?;
    Ok(RgbImage {
        width,
        height,
        data: convert::to_rgb(&resized)?,
    })
}

/// Resize the shorter side to `size` (BICUBIC with Pillow's mode rules), centre crop `size` x `size`,
/// convert to RGB: the uint8 image `_transform(size)` hands to `ToTensor`.
pub fn resize_crop_rgb(image: &PilImage, size: u32) -> Result<RgbImage, PreprocessError> {
    config::check_size(size)?;
    if image.width() == 0 || image.height() == 0 {
        return Err(PreprocessError::ZeroSize {
            path: error::memory_path(),
            width: image.width(),
            height: image.height(),
        });
    }
    let (rw, rh) = resized_size(image.width(), image.height(), size);
    let left = center_crop_offset(rw, size);
    let top = center_crop_offset(rh, size);
    let cropped = if left >= 0
        && top >= 0
        && left as u64 + u64::from(size) <= u64::from(rw)
        && top as u64 + u64::from(size) <= u64::from(rh)
    {
        // Compute only the crop window of the resized image (same pixels, less work and memory).
        let win = plane::Window {
            out_w: rw,
            out_h: rh,
            x: left as u32..left as u32 + size,
            y: top as u32..top as u32 + size,
        };
        resize::resize_window(image, &win)?
    } else {
        // Not reached after Resize(n) (both sides are >= n); kept for torchvision's padding semantics.
        center_crop(&resize_bicubic(image, rw, rh)?, size)
    };
    let data = convert::to_rgb(&cropped)?;
    Ok(RgbImage {
        width: size,
        height: size,
        data,
    })
}

/// torchvision's `resized_crop(image, top, left, height, width, (size, size), BICUBIC)` on a PIL image (Pillow's
/// `crop` then `resize`), then RGB: the uint8 image `RandomResizedCrop` hands to `ToTensor` in open_clip's training
/// transform. The box must lie inside the image.
pub fn crop_resize_rgb(
    image: &PilImage,
    left: u32,
    top: u32,
    width: u32,
    height: u32,
    size: u32,
) -> Result<RgbImage, PreprocessError> {
    config::check_size(size)?;
    let inside = u64::from(left) + u64::from(width) <= u64::from(image.width())
        && u64::from(top) + u64::from(height) <= u64::from(image.height());
    if width == 0 || height == 0 || !inside {
        return Err(PreprocessError::InvalidArgument(format!(
            "crop box {width}x{height} at ({left}, {top}) is not inside the {}x{} image",
            image.width(),
            image.height()
        )));
    }
    let cropped = geometry::crop(image, i64::from(left), i64::from(top), width, height);
    let resized = resize_bicubic(&cropped, size, size)?;
    Ok(RgbImage {
        width: size,
        height: size,
        data: convert::to_rgb(&resized)?,
    })
}

/// `open` + `resize_crop_rgb` + `normalize`: `3 * size * size` floats, CHW.
pub fn preprocess_path(
    path: &Path,
    config: &PreprocessConfig,
) -> Result<Vec<f32>, PreprocessError> {
    let image = open(path)?;
    preprocess_image(&image, config).map_err(|e| e.with_path(path))
}

/// `resize_crop_rgb` + `normalize`: `3 * size * size` floats, CHW.
pub fn preprocess_image(
    image: &PilImage,
    config: &PreprocessConfig,
) -> Result<Vec<f32>, PreprocessError> {
    config.validate()?;
    let rgb = resize_crop_rgb(image, config.size)?;
    Ok(normalize(&rgb, config.mean, config.std))
}
