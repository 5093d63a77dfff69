//! Format detection by content (magic bytes, like Pillow's `_accept` checks, whatever the file's
//! extension) and dispatch to one decoder per format; the decompression-bomb guard shared by all.

mod bmp;
mod gif;
mod jpeg;
mod png;
mod tiff;
mod webp;

use crate::error::{decode_error, PreprocessError};
use crate::image::PilImage;

/// Pillow's `Image.MAX_IMAGE_PIXELS` (`1024 * 1024 * 1024 // 4 // 3`).
pub const MAX_IMAGE_PIXELS: u64 = 1024 * 1024 * 1024 / 4 / 3;

/// Pillow raises `DecompressionBombError` above twice `MAX_IMAGE_PIXELS`; we refuse the same images.
pub const PIXEL_LIMIT: u64 = 2 * MAX_IMAGE_PIXELS;

/// Image formats recognised by their first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    WebP,
    Bmp,
    Tiff,
}

/// Detects the format from the first bytes of the file.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::WebP)
    } else if bytes.starts_with(b"BM") {
        Some(Format::Bmp)
    } else if bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
        || bytes.starts_with(b"II+\0")
        || bytes.starts_with(b"MM\0+")
    {
        Some(Format::Tiff)
    } else {
        None
    }
}

/// Refuses zero-sized images and decompression bombs before any pixel buffer is allocated.
pub(crate) fn check_size(width: u32, height: u32) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::ZeroSize {
            path: crate::error::memory_path(),
            width,
            height,
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > PIXEL_LIMIT {
        return Err(PreprocessError::TooLarge {
            path: crate::error::memory_path(),
            width: u64::from(width),
            height: u64::from(height),
            pixels,
            limit: PIXEL_LIMIT,
        });
    }
    Ok(())
}

/// Decodes an image held in memory (errors carry the placeholder path `<memory>`).
pub fn decode(bytes: &[u8]) -> Result<PilImage, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty {
            path: crate::error::memory_path(),
        });
    }
    let format = sniff(bytes).ok_or_else(|| PreprocessError::UnsupportedFormat {
        path: crate::error::memory_path(),
    })?;
    // Backstop: a third-party decoder that panics on hostile input must still give an error, not abort
    // the caller (the decoders here are expected to return errors; this only guards their bugs).
    std::panic::catch_unwind(|| match format {
        Format::Jpeg => jpeg::decode(bytes),
        Format::Png => png::decode(bytes),
        Format::Gif => gif::decode(bytes),
        Format::WebP => webp::decode(bytes),
        Format::Bmp => bmp::decode(bytes),
        Format::Tiff => tiff::decode(bytes),
    })
    .unwrap_or_else(|_| {
        Err(decode_error(format!(
            "the {format:?} decoder failed on malformed data"
        )))
    })
}
