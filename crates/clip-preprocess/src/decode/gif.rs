//! GIF, first frame only, as Pillow's `GifImagePlugin` (default `RGB_AFTER_FIRST` strategy) leaves it after
//! `Image.open`: mode `P` with the frame's local palette (else the global one), or `L` when that palette is
//! the identity grey ramp (`_is_palette_needed` is false). The canvas is the logical screen, grown to hold
//! the frame; pixels outside the frame are the transparent index when the frame has one, else 0.

use std::io::Cursor;

use crate::decode::check_size;
use crate::error::{decode_error, PreprocessError};
use crate::image::{Mode, PilImage, PixelData, Transparency};

fn gif_error(e: gif::DecodingError) -> PreprocessError {
    match e {
        gif::DecodingError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            decode_error("image file is truncated")
        }
        other => decode_error(format!("invalid GIF: {other}")),
    }
}

/// Pillow keeps no palette when every entry `i` is `(i, i, i)`.
fn palette_needed(p: &[u8]) -> bool {
    p.chunks(3)
        .enumerate()
        .any(|(i, c)| c.len() < 3 || !(c[0] as usize == i && c[1] == c[0] && c[2] == c[0]))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<PilImage, PreprocessError> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    // The frame is checked against Pillow's pixel limit below; this only backs that up.
    if let Some(limit) = std::num::NonZeroU64::new(crate::decode::PIXEL_LIMIT) {
        options.set_memory_limit(gif::MemoryLimit::Bytes(limit));
    }
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(gif_error)?;
    let (screen_w, screen_h) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let global = decoder.global_palette().map(|p| p.to_vec());
    let frame = decoder
        .next_frame_info()
        .map_err(gif_error)?
        .ok_or_else(|| decode_error("image not found in GIF frame"))?
        .clone();
    let (right, bottom) = (
        u32::from(frame.left) + u32::from(frame.width),
        u32::from(frame.top) + u32::from(frame.height),
    );
    check_size(screen_w.max(right), screen_h.max(bottom))?;
    let mut buffer = vec![0u8; decoder.buffer_size()];
    decoder.read_into_buffer(&mut buffer).map_err(gif_error)?;
    let (x0, y0) = (usize::from(frame.left), usize::from(frame.top));
    let (fw, fh) = (usize::from(frame.width), usize::from(frame.height));
    let width = screen_w.max((x0 + fw) as u32);
    let height = screen_h.max((y0 + fh) as u32);
    let palette_bytes = frame.palette.clone().or(global);
    let palette = palette_bytes.filter(|p| palette_needed(p));
    let fill = frame.transparent.unwrap_or(0);
    let mut data = vec![fill; width as usize * height as usize];
    if buffer.len() < fw * fh {
        return Err(decode_error("image file is truncated"));
    }
    for (row, src) in buffer.chunks_exact(fw.max(1)).take(fh).enumerate() {
        let start = (y0 + row) * width as usize + x0;
        data[start..start + fw].copy_from_slice(src);
    }
    let transparency = frame.transparent.map(Transparency::Index);
    let (mode, palette) = match palette {
        Some(p) => (
            Mode::P,
            Some(
                p.chunks_exact(3)
                    .take(256)
                    .map(|c| [c[0], c[1], c[2]])
                    .collect(),
            ),
        ),
        None => (Mode::L, None),
    };
    Ok(
        PilImage::new(mode, width, height, PixelData::U8(data), palette)?
            .with_transparency(transparency),
    )
}
