//! WebP, as Pillow's `WebPImagePlugin` decodes it through libwebp's `WebPAnimDecoder` (RGBA output, canvas
//! zero-filled for the first frame): mode `RGBA` when the file declares alpha, else `RGB`. The pure-Rust
//! `image-webp` decoder reproduces libwebp's output exactly, lossy (including its "fancy" chroma
//! upsampling and YUV->RGB fixed-point arithmetic) and lossless alike.

use std::io::Cursor;

use crate::decode::check_size;
use crate::error::{decode_error, PreprocessError};
use crate::image::{Mode, PilImage, PixelData};

fn webp_error(e: image_webp::DecodingError) -> PreprocessError {
    match e {
        image_webp::DecodingError::IoError(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            decode_error("image file is truncated")
        }
        other => decode_error(format!("invalid WebP: {other}")),
    }
}

/// Size from a simple-format lossless header (as Pillow's `_get_size` reads it).
fn vp8l_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(12..16)? != b"VP8L" || *bytes.get(20)? != 0x2F {
        return None;
    }
    let bits = u32::from_le_bytes(bytes.get(21..25)?.try_into().ok()?);
    Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<PilImage, PreprocessError> {
    // libwebp's demuxer (behind Pillow's WebPAnimDecoder) refuses a file shorter than its RIFF header
    // says, even when the first frame is complete.
    let riff_size = bytes
        .get(4..8)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    if u64::from(riff_size) + 8 > bytes.len() as u64 {
        return Err(decode_error("image file is truncated"));
    }
    if let Some((w, h)) = vp8l_dimensions(bytes) {
        check_size(w, h)?;
        if w == 16384 || h == 16384 {
            // image-webp 0.2 computes (1 + bits) & 0x3FFF, which wraps a 16384-pixel side to 0.
            return Err(decode_error(
                "lossless WebP with a side of 16384 pixels is not supported",
            ));
        }
    }
    let mut decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(webp_error)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height)?;
    // The size is checked against Pillow's pixel limit above; allow RGBA at that limit.
    decoder.set_memory_limit(usize::try_from(crate::decode::PIXEL_LIMIT * 4).unwrap_or(usize::MAX));
    if decoder.is_animated() {
        // libwebp's animation decoder starts from a transparent black canvas.
        decoder
            .set_background_color([0, 0, 0, 0])
            .map_err(webp_error)?;
    }
    let mode = if decoder.has_alpha() {
        Mode::Rgba
    } else {
        Mode::Rgb
    };
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| decode_error("WebP image too large"))?;
    let mut data = vec![0u8; size];
    decoder.read_image(&mut data).map_err(webp_error)?;
    PilImage::new(mode, width, height, PixelData::U8(data), None)
}
