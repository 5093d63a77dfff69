//! PNG, mapped to Pillow's modes as `PngImagePlugin._MODES` does: grey 1 -> `1`, grey 2/4 -> `L` (scaled by
//! 0x55 / 0x11 like the `L;2`/`L;4` unpackers), grey 8 -> `L`, grey 16 -> `I;16`, RGB 8/16 -> `RGB` (16-bit
//! keeps the high byte), palette 1/2/4/8 -> `P`, grey+alpha 8 -> `LA`, grey+alpha 16 -> `RGBA` (`LA;16B`),
//! RGBA 8/16 -> `RGBA`. `tRNS` is kept as Pillow's `info["transparency"]` and never changes pixels.
//! Samples are lossless, so the `png` crate (no transformations) gives Pillow's values exactly.

use std::io::Cursor;

use crate::decode::check_size;
use crate::error::{decode_error, PreprocessError};
use crate::image::{Mode, PilImage, PixelData, Transparency};

fn png_error(e: png::DecodingError) -> PreprocessError {
    match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            decode_error("image file is truncated")
        }
        other => decode_error(format!("invalid PNG: {other}")),
    }
}

/// Unpacks `bits`-bit samples (MSB first) of one row into bytes.
fn unpack_bits(row: &[u8], bits: u8, count: usize, out: &mut Vec<u8>) {
    let per_byte = 8 / bits as usize;
    let mask = (1u16 << bits) as u8 - 1;
    for i in 0..count {
        let byte = row[i / per_byte];
        let shift = 8 - bits as usize * (i % per_byte + 1);
        out.push((byte >> shift) & mask);
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<PilImage, PreprocessError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    // The crate's 64 MiB default is too small for large photos: allow 8 bytes a pixel (16-bit RGBA) at
    // Pillow's pixel limit, which is checked first. Text and ICC chunks play no part in the pixels.
    decoder.set_limits(png::Limits {
        bytes: usize::try_from(crate::decode::PIXEL_LIMIT * 8).unwrap_or(usize::MAX),
    });
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    {
        let header = decoder.read_header_info().map_err(png_error)?;
        check_size(header.width, header.height)?;
    }
    let mut reader = decoder.read_info().map_err(png_error)?;
    let (width, height, color, depth, palette, trns) = {
        let info = reader.info();
        (
            info.width,
            info.height,
            info.color_type,
            info.bit_depth as u8,
            info.palette.as_ref().map(|p| p.to_vec()),
            info.trns.as_ref().map(|t| t.to_vec()),
        )
    };
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| decode_error("PNG image too large"))?;
    let mut raw = vec![0u8; size];
    let frame = reader.next_frame(&mut raw).map_err(png_error)?;
    let line = frame.line_size;
    let (w, h) = (width as usize, height as usize);
    let rows = raw.chunks(line).take(h);
    use png::ColorType as C;
    let mut out = Vec::with_capacity(w * h * 4);
    let mode = match (color, depth) {
        (C::Grayscale, 1) => {
            rows.for_each(|r| unpack_bits(r, 1, w, &mut out));
            out.iter_mut()
                .for_each(|v| *v = if *v != 0 { 255 } else { 0 });
            Mode::Bilevel
        }
        (C::Grayscale, 2 | 4) => {
            let scale = if depth == 2 { 0x55 } else { 0x11 };
            rows.for_each(|r| unpack_bits(r, depth, w, &mut out));
            out.iter_mut().for_each(|v| *v *= scale);
            Mode::L
        }
        (C::Grayscale, 8) => {
            rows.for_each(|r| out.extend_from_slice(&r[..w]));
            Mode::L
        }
        (C::Grayscale, 16) => {
            // I;16 is stored little-endian; PNG is big-endian ("I;16B" raw mode).
            rows.for_each(|r| {
                r[..2 * w]
                    .chunks_exact(2)
                    .for_each(|s| out.extend_from_slice(&[s[1], s[0]]))
            });
            Mode::I16
        }
        (C::Rgb, 8) => {
            rows.for_each(|r| out.extend_from_slice(&r[..3 * w]));
            Mode::Rgb
        }
        (C::Rgb, 16) => {
            rows.for_each(|r| r[..6 * w].chunks_exact(2).for_each(|s| out.push(s[0])));
            Mode::Rgb
        }
        (C::Indexed, 1 | 2 | 4) => {
            rows.for_each(|r| unpack_bits(r, depth, w, &mut out));
            Mode::P
        }
        (C::Indexed, 8) => {
            rows.for_each(|r| out.extend_from_slice(&r[..w]));
            Mode::P
        }
        (C::GrayscaleAlpha, 8) => {
            rows.for_each(|r| out.extend_from_slice(&r[..2 * w]));
            Mode::La
        }
        (C::GrayscaleAlpha, 16) => {
            rows.for_each(|r| {
                r[..4 * w]
                    .chunks_exact(4)
                    .for_each(|s| out.extend_from_slice(&[s[0], s[0], s[0], s[2]]))
            });
            Mode::Rgba
        }
        (C::Rgba, 8) => {
            rows.for_each(|r| out.extend_from_slice(&r[..4 * w]));
            Mode::Rgba
        }
        (C::Rgba, 16) => {
            rows.for_each(|r| r[..8 * w].chunks_exact(2).for_each(|s| out.push(s[0])));
            Mode::Rgba
        }
        (c, d) => {
            return Err(decode_error(format!(
                "unsupported PNG colour type {c:?} with {d}-bit samples"
            )))
        }
    };
    let palette = if mode == Mode::P {
        let p = palette.ok_or_else(|| decode_error("palette PNG without a PLTE chunk"))?;
        Some(
            p.chunks_exact(3)
                .take(256)
                .map(|c| [c[0], c[1], c[2]])
                .collect(),
        )
    } else {
        None
    };
    let transparency = trns.and_then(|t| parse_trns(mode, &t));
    Ok(
        PilImage::new(mode, width, height, PixelData::U8(out), palette)?
            .with_transparency(transparency),
    )
}

/// `chunk_tRNS`: one fully transparent palette index (`^\xff*\x00\xff*$`) or per-entry alphas for `P`,
/// a grey level or colour for the others.
fn parse_trns(mode: Mode, t: &[u8]) -> Option<Transparency> {
    let be16 = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
    match mode {
        Mode::P => {
            let zeros = t.iter().filter(|&&v| v == 0).count();
            let simple = zeros == 1 && t.iter().all(|&v| v == 0 || v == 255);
            match t.iter().position(|&v| v == 0) {
                Some(i) if simple => Some(Transparency::Index(i as u8)),
                _ => Some(Transparency::PaletteAlpha(t.to_vec())),
            }
        }
        Mode::Bilevel if t.len() >= 2 => {
            Some(Transparency::Grey(if be16(0) != 0 { 255 } else { 0 }))
        }
        Mode::L | Mode::I16 if t.len() >= 2 => Some(Transparency::Grey(be16(0))),
        Mode::Rgb if t.len() >= 6 => Some(Transparency::Rgb(be16(0), be16(2), be16(4))),
        _ => None,
    }
}
