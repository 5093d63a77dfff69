//! TIFF (first image), mapped to modes like Pillow's `TiffImagePlugin.OPEN_INFO`: bilevel/grey 1, 2, 4, 8 bit
//! (WhiteIsZero inverted) -> `1`/`L`, 16-bit grey -> `I;16` (little-endian file) or `I;16B` (big-endian),
//! signed 16/32-bit and unsigned 32-bit grey -> `I`, float -> `F`, grey+alpha -> `LA` (or `L` for an
//! unspecified extra sample), RGB/RGBA 8/16-bit (16-bit keeps the high byte; associated alpha is
//! un-premultiplied like the `RGBa` unpacker), palette -> `P` (colour map high bytes), CMYK -> `CMYK`.
//! Compression (none, LZW, Deflate, PackBits) is lossless, so the `tiff` crate's samples are Pillow's.
//! JPEG-compressed TIFF (decoded by libtiff + libjpeg in Pillow) is refused rather than approximated.

use std::io::Cursor;

use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;
use tiff::ColorType;

use crate::decode::check_size;
use crate::error::{decode_error, PreprocessError};
use crate::image::{Mode, PilImage, PixelData};

fn tiff_error(e: tiff::TiffError) -> PreprocessError {
    match e {
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            decode_error("image file is truncated")
        }
        other => decode_error(format!("invalid TIFF: {other}")),
    }
}

fn unsupported(what: impl std::fmt::Display) -> PreprocessError {
    decode_error(format!("unsupported TIFF layout: {what}"))
}

/// The crate's default limits, except the output buffer, sized for Pillow's pixel limit.
fn dec_limits() -> Limits {
    let mut limits = Limits::default();
    // Up to 8 bytes a pixel (16-bit RGBA / CMYK) at Pillow's pixel limit.
    limits.decoding_buffer_size =
        usize::try_from(crate::decode::PIXEL_LIMIT * 8).unwrap_or(usize::MAX);
    limits
}

/// Pillow's `RGBa` unpacker: premultiplied colour divided by alpha, clipped.
fn unpremultiply(c: u8, a: u8) -> u8 {
    match a {
        0 => 0,
        255 => c,
        _ => (u32::from(c) * 255 / u32::from(a)).min(255) as u8,
    }
}

/// Unpacks MSB-first `bits`-bit samples, `width` a row, rows padded to whole bytes.
fn unpack_rows(
    data: &[u8],
    bits: u8,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, PreprocessError> {
    let row_bytes = (width * bits as usize).div_ceil(8);
    if data.len() < row_bytes * height {
        return Err(decode_error("image file is truncated"));
    }
    let per_byte = 8 / bits as usize;
    let mask = ((1u16 << bits) - 1) as u8;
    let mut out = Vec::with_capacity(width * height);
    for row in data.chunks(row_bytes.max(1)).take(height) {
        for i in 0..width {
            let shift = 8 - bits as usize * (i % per_byte + 1);
            out.push((row[i / per_byte] >> shift) & mask);
        }
    }
    Ok(out)
}

/// The `tiff` crate refuses palette images; their samples are plain indices, so a copy of the file whose
/// first IFD says BlackIsZero instead decodes to exactly those indices. Returns `None` when the first IFD
/// has no inline PhotometricInterpretation = 3 (classic TIFF only).
fn palette_as_grey(bytes: &[u8]) -> Option<Vec<u8>> {
    let be = bytes.starts_with(b"MM");
    let u16_at = |i: usize| {
        bytes.get(i..i + 2).map(|s| {
            if be {
                u16::from_be_bytes([s[0], s[1]])
            } else {
                u16::from_le_bytes([s[0], s[1]])
            }
        })
    };
    let u32_at = |i: usize| {
        bytes.get(i..i + 4).map(|s| {
            let a = [s[0], s[1], s[2], s[3]];
            if be {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = u32_at(4)? as usize;
    let count = u16_at(ifd)? as usize;
    for e in 0..count {
        let entry = ifd + 2 + 12 * e;
        // Tag 262 (PhotometricInterpretation), type SHORT, one value stored inline.
        if u16_at(entry)? == 262
            && u16_at(entry + 2)? == 3
            && u32_at(entry + 4)? == 1
            && u16_at(entry + 8)? == 3
        {
            let mut copy = bytes.to_vec();
            let one = if be {
                1u16.to_be_bytes()
            } else {
                1u16.to_le_bytes()
            };
            copy[entry + 8..entry + 10].copy_from_slice(&one);
            return Some(copy);
        }
    }
    None
}

/// Size in bytes of one value of a TIFF field type (0 for unknown types).
fn type_size(kind: u16) -> u64 {
    match kind {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => 0,
    }
}

/// Refuses a first IFD whose entries point past the end of the file. The `tiff` crate sizes some tag
/// buffers from the entry's count before reading, so a corrupt count would otherwise make it try to
/// allocate gigabytes (an abort, not an error).
fn check_first_ifd(bytes: &[u8]) -> Result<(), PreprocessError> {
    let corrupt = || decode_error("invalid TIFF: corrupt image file directory");
    let be = bytes.starts_with(b"MM");
    let read = |i: usize, n: usize| -> Result<u64, PreprocessError> {
        let s = bytes.get(i..i + n).ok_or_else(corrupt)?;
        let mut v = 0u64;
        for k in 0..n {
            let byte = if be { s[k] } else { s[n - 1 - k] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    };
    let big = read(2, 2)? == 43;
    let (ifd, count_size, entry_size, inline) = if big {
        (read(8, 8)?, 8, 20, 8)
    } else {
        (read(4, 4)?, 2, 12, 4)
    };
    let ifd = usize::try_from(ifd).map_err(|_| corrupt())?;
    let entries = usize::try_from(read(ifd, count_size)?).map_err(|_| corrupt())?;
    let len = bytes.len() as u64;
    if entries.saturating_mul(entry_size) as u64 > len {
        return Err(corrupt());
    }
    for e in 0..entries {
        let at = ifd + count_size + e * entry_size;
        let kind = read(at + 2, 2)? as u16;
        let (count, offset) = if big {
            (read(at + 4, 8)?, read(at + 12, 8)?)
        } else {
            (read(at + 4, 4)?, read(at + 8, 4)?)
        };
        let size = count.checked_mul(type_size(kind)).ok_or_else(corrupt)?;
        if size > inline && offset.checked_add(size).is_none_or(|end| end > len) {
            return Err(corrupt());
        }
    }
    Ok(())
}

pub(crate) fn decode(bytes: &[u8]) -> Result<PilImage, PreprocessError> {
    check_first_ifd(bytes)?;
    let big_endian = bytes.starts_with(b"MM");
    let mut dec = Decoder::new(Cursor::new(bytes))
        .map_err(tiff_error)?
        .with_limits(dec_limits());
    let (width, height) = dec.dimensions().map_err(tiff_error)?;
    check_size(width, height)?;
    let tag =
        |dec: &mut Decoder<Cursor<&[u8]>>, t: Tag, default: u32| -> Result<u32, PreprocessError> {
            Ok(dec
                .find_tag_unsigned::<u32>(t)
                .map_err(tiff_error)?
                .unwrap_or(default))
        };
    let compression = tag(&mut dec, Tag::Compression, 1)?;
    if matches!(compression, 6 | 7) {
        return Err(unsupported("JPEG compression"));
    }
    if tag(&mut dec, Tag::FillOrder, 1)? != 1 {
        return Err(unsupported("FillOrder 2"));
    }
    let photometric = tag(&mut dec, Tag::PhotometricInterpretation, 1)?;
    let sample_format = tag(&mut dec, Tag::SampleFormat, 1)?;
    let extra: Vec<u32> = dec
        .find_tag_unsigned_vec::<u32>(Tag::ExtraSamples)
        .map_err(tiff_error)?
        .unwrap_or_default();
    let colormap = if photometric == 3 {
        Some(dec.get_tag_u32_vec(Tag::ColorMap).map_err(tiff_error)?)
    } else {
        None
    };
    let (w, h) = (width as usize, height as usize);
    let (color, result) = if photometric == 3 {
        let copy = palette_as_grey(bytes)
            .ok_or_else(|| unsupported("palette image without an inline photometric tag"))?;
        let mut grey = Decoder::new(Cursor::new(copy.as_slice()))
            .map_err(tiff_error)?
            .with_limits(dec_limits());
        let color = match grey.colortype().map_err(tiff_error)? {
            ColorType::Gray(b) => ColorType::Palette(b),
            other => other,
        };
        (color, grey.read_image().map_err(tiff_error)?)
    } else {
        (
            dec.colortype().map_err(tiff_error)?,
            dec.read_image().map_err(tiff_error)?,
        )
    };
    let white_is_zero = photometric == 0;
    let n = w * h;
    let short = || decode_error("image file is truncated");
    let (mode, data, palette) = match (color, result) {
        (ColorType::Gray(b @ (1 | 2 | 4)), DecodingResult::U8(d)) => {
            // The tiff crate already inverted WhiteIsZero samples, as Pillow's "1;I"/"L;2I"/"L;4I" do.
            let mut v = unpack_rows(&d, b, w, h)?;
            let (mode, scale) = match b {
                1 => (Mode::Bilevel, 255),
                2 => (Mode::L, 0x55),
                _ => (Mode::L, 0x11),
            };
            v.iter_mut().for_each(|x| *x *= scale);
            (mode, PixelData::U8(v), None)
        }
        (ColorType::Gray(8), DecodingResult::U8(d)) => (
            Mode::L,
            PixelData::U8(d.get(..n).ok_or_else(short)?.to_vec()),
            None,
        ),
        (ColorType::Gray(16), DecodingResult::U16(d)) => {
            let d = d.get(..n).ok_or_else(short)?;
            // Pillow reads 16-bit WhiteIsZero as plain I;16 (no inversion): undo the crate's.
            let value = |v: u16| if white_is_zero { 0xFFFF - v } else { v };
            if big_endian && white_is_zero {
                return Err(unsupported("big-endian 16-bit WhiteIsZero"));
            }
            let mut out = Vec::with_capacity(2 * n);
            for &v in d {
                let v = value(v);
                out.extend_from_slice(&if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                });
            }
            (
                if big_endian { Mode::I16B } else { Mode::I16 },
                PixelData::U8(out),
                None,
            )
        }
        (ColorType::Gray(16), DecodingResult::I16(d)) if !white_is_zero => (
            Mode::I32,
            PixelData::I32(
                d.get(..n)
                    .ok_or_else(short)?
                    .iter()
                    .map(|&v| i32::from(v))
                    .collect(),
            ),
            None,
        ),
        (ColorType::Gray(32), DecodingResult::I32(d)) if !white_is_zero => (
            Mode::I32,
            PixelData::I32(d.get(..n).ok_or_else(short)?.to_vec()),
            None,
        ),
        (ColorType::Gray(32), DecodingResult::U32(d)) if !white_is_zero && !big_endian => {
            // "I;32N": the unsigned words are read as signed integers.
            (
                Mode::I32,
                PixelData::I32(
                    d.get(..n)
                        .ok_or_else(short)?
                        .iter()
                        .map(|&v| v as i32)
                        .collect(),
                ),
                None,
            )
        }
        (ColorType::Gray(32), DecodingResult::F32(d)) if !white_is_zero => (
            Mode::F32,
            PixelData::F32(d.get(..n).ok_or_else(short)?.to_vec()),
            None,
        ),
        (
            ColorType::GrayA(8)
            | ColorType::Multiband {
                bit_depth: 8,
                num_samples: 2,
            },
            DecodingResult::U8(d),
        ) if photometric == 1 => {
            let d = d.get(..2 * n).ok_or_else(short)?;
            match extra.as_slice() {
                [0] => (
                    Mode::L,
                    PixelData::U8(d.chunks_exact(2).map(|p| p[0]).collect()),
                    None,
                ),
                [2] => (Mode::La, PixelData::U8(d.to_vec()), None),
                // Pillow opens these as "La", which it cannot convert to RGB.
                _ => return Err(unsupported("grey with associated alpha (mode La)")),
            }
        }
        (ColorType::RGB(8), DecodingResult::U8(d)) => (
            Mode::Rgb,
            PixelData::U8(d.get(..3 * n).ok_or_else(short)?.to_vec()),
            None,
        ),
        (ColorType::RGB(16), DecodingResult::U16(d)) => (
            Mode::Rgb,
            PixelData::U8(
                d.get(..3 * n)
                    .ok_or_else(short)?
                    .iter()
                    .map(|&v| (v >> 8) as u8)
                    .collect(),
            ),
            None,
        ),
        (ColorType::RGBA(bits @ (8 | 16)), result) => {
            let high: Vec<u8> = match result {
                DecodingResult::U8(d) if bits == 8 => d.get(..4 * n).ok_or_else(short)?.to_vec(),
                DecodingResult::U16(d) if bits == 16 => d
                    .get(..4 * n)
                    .ok_or_else(short)?
                    .iter()
                    .map(|&v| (v >> 8) as u8)
                    .collect(),
                _ => return Err(unsupported("RGBA sample type")),
            };
            match extra.as_slice() {
                [0] => (
                    Mode::Rgb,
                    PixelData::U8(
                        high.chunks_exact(4)
                            .flat_map(|p| [p[0], p[1], p[2]])
                            .collect(),
                    ),
                    None,
                ),
                [1] => (
                    Mode::Rgba,
                    PixelData::U8(
                        high.chunks_exact(4)
                            .flat_map(|p| {
                                let a = p[3];
                                if a == 0 {
                                    [0, 0, 0, 0]
                                } else {
                                    [
                                        unpremultiply(p[0], a),
                                        unpremultiply(p[1], a),
                                        unpremultiply(p[2], a),
                                        a,
                                    ]
                                }
                            })
                            .collect(),
                    ),
                    None,
                ),
                [] | [2] => (Mode::Rgba, PixelData::U8(high), None),
                [999] if bits == 8 => (Mode::Rgba, PixelData::U8(high), None),
                other => return Err(unsupported(format!("RGBA with extra samples {other:?}"))),
            }
        }
        (ColorType::Palette(b @ (1 | 2 | 4 | 8)), DecodingResult::U8(d)) => {
            let idx = if b == 8 {
                d.get(..n).ok_or_else(short)?.to_vec()
            } else {
                unpack_rows(&d, b, w, h)?
            };
            let map = colormap.unwrap_or_default();
            let count = map.len() / 3;
            // Pillow: "RGB;L" palette of the colour map's high bytes (`b // 256`).
            let pal: Vec<[u8; 3]> = (0..count.min(256))
                .map(|i| {
                    [
                        (map[i] / 256) as u8,
                        (map[count + i] / 256) as u8,
                        (map[2 * count + i] / 256) as u8,
                    ]
                })
                .collect();
            (Mode::P, PixelData::U8(idx), Some(pal))
        }
        (ColorType::CMYK(8), DecodingResult::U8(d)) if extra.is_empty() => (
            Mode::Cmyk,
            PixelData::U8(d.get(..4 * n).ok_or_else(short)?.to_vec()),
            None,
        ),
        (ColorType::CMYK(16), DecodingResult::U16(d)) if extra.is_empty() => (
            Mode::Cmyk,
            PixelData::U8(
                d.get(..4 * n)
                    .ok_or_else(short)?
                    .iter()
                    .map(|&v| (v >> 8) as u8)
                    .collect(),
            ),
            None,
        ),
        (c, _) => {
            return Err(unsupported(format!(
                "{c:?} with sample format {sample_format}"
            )))
        }
    };
    PilImage::new(mode, width, height, data, palette)
}
