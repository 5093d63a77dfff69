//! BMP, following Pillow's `BmpImagePlugin`: OS/2 (12-byte) and Windows v3-v5 headers; 1/4/8-bit palette
//! images become `P`, or `1`/`L` when the palette is the plain black/white or grey ramp; 16-bit is
//! `BGR;15` (or the 5-6-5 / 5-5-5 bitfields), 24-bit `BGR`, 32-bit `BGRX` (alpha only with one of Pillow's
//! known bitfield layouts); RLE8/RLE4 decoded with Pillow's `BmpRleDecoder` rules. Rows are bottom-up
//! unless the height is negative.

use crate::decode::check_size;
use crate::error::{decode_error, PreprocessError};
use crate::image::{Mode, PilImage, PixelData};

const RAW: u32 = 0;
const RLE8: u32 = 1;
const RLE4: u32 = 2;
const BITFIELDS: u32 = 3;

fn u16_at(b: &[u8], i: usize) -> Result<u32, PreprocessError> {
    b.get(i..i + 2)
        .map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])))
        .ok_or_else(truncated)
}

fn u32_at(b: &[u8], i: usize) -> Result<u32, PreprocessError> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(truncated)
}

fn truncated() -> PreprocessError {
    decode_error("image file is truncated")
}

/// How the pixel bytes of one row are laid out (Pillow's raw modes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Raw {
    /// Palette indices of 1, 4 or 8 bits.
    Index(u32),
    /// 1-bit, to 0/255.
    Bit,
    /// 8-bit grey.
    Grey,
    /// 16-bit 5-5-5 (`BGR;15`).
    Bgr15,
    /// 16-bit 5-6-5 (`BGR;16`).
    Bgr16,
    /// 24-bit B, G, R.
    Bgr,
    /// 32-bit little-endian words, channels picked by masks (R, G, B, A; A mask 0 = opaque).
    Masks([u32; 4]),
}

fn extract(v: u32, mask: u32) -> u8 {
    if mask == 0 {
        return 255;
    }
    ((v & mask) >> mask.trailing_zeros()) as u8
}

fn unpack_row(raw: Raw, row: &[u8], width: usize, out: &mut Vec<u8>) {
    match raw {
        Raw::Index(bits) => {
            let per_byte = (8 / bits) as usize;
            let mask = ((1u32 << bits) - 1) as u8;
            for i in 0..width {
                let shift = 8 - bits as usize * (i % per_byte + 1);
                out.push((row[i / per_byte] >> shift) & mask);
            }
        }
        Raw::Bit => (0..width).for_each(|i| {
            out.push(if row[i / 8] & (0x80 >> (i % 8)) != 0 {
                255
            } else {
                0
            })
        }),
        Raw::Grey => out.extend_from_slice(&row[..width]),
        Raw::Bgr15 | Raw::Bgr16 => {
            for s in row[..2 * width].chunks_exact(2) {
                let p = u32::from(s[0]) | u32::from(s[1]) << 8;
                let b = (p & 31) * 255 / 31;
                let (g, r) = if raw == Raw::Bgr15 {
                    (((p >> 5) & 31) * 255 / 31, ((p >> 10) & 31) * 255 / 31)
                } else {
                    (((p >> 5) & 63) * 255 / 63, ((p >> 11) & 31) * 255 / 31)
                };
                out.extend_from_slice(&[r as u8, g as u8, b as u8]);
            }
        }
        Raw::Bgr => row[..3 * width]
            .chunks_exact(3)
            .for_each(|s| out.extend_from_slice(&[s[2], s[1], s[0]])),
        Raw::Masks(m) => {
            let alpha = m[3] != 0;
            for s in row[..4 * width].chunks_exact(4) {
                let v = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                out.extend_from_slice(&[extract(v, m[0]), extract(v, m[1]), extract(v, m[2])]);
                if alpha {
                    out.push(extract(v, m[3]));
                }
            }
        }
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<PilImage, PreprocessError> {
    let mut offset = u32_at(bytes, 10)? as usize;
    let header_size = u32_at(bytes, 14)? as usize;
    let header = bytes
        .get(18..14usize.saturating_add(header_size).max(18))
        .ok_or_else(truncated)?;
    let mut pos = 14 + header_size;
    let (width, height, bits, compression, colors, padding, top_down);
    let mut masks = [0u32; 4];
    if header_size == 12 {
        width = u16_at(header, 0)?;
        height = u16_at(header, 2)?;
        bits = u16_at(header, 6)?;
        compression = RAW;
        colors = 0u64;
        padding = 3usize;
        top_down = false;
    } else if matches!(header_size, 40 | 52 | 56 | 64 | 108 | 124) {
        top_down = header[7] == 0xFF;
        width = u32_at(header, 0)?;
        let h = u32_at(header, 4)?;
        height = if top_down { h.wrapping_neg() } else { h };
        bits = u16_at(header, 10)?;
        compression = u32_at(header, 12)?;
        colors = u64::from(u32_at(header, 28)?);
        padding = 4;
        if compression == BITFIELDS {
            if header.len() >= 48 {
                for (i, m) in
                    masks
                        .iter_mut()
                        .enumerate()
                        .take(if header.len() >= 52 { 4 } else { 3 })
                {
                    *m = u32_at(header, 36 + 4 * i)?;
                }
            } else {
                for m in masks.iter_mut().take(3) {
                    *m = u32_at(bytes, pos)?;
                    pos += 4;
                }
            }
        }
    } else {
        return Err(decode_error(format!(
            "Unsupported BMP header type ({header_size})"
        )));
    }
    check_size(width, height)?;
    let colors = if colors == 0 {
        1u64 << bits.min(32)
    } else {
        colors
    };
    if offset == 14 + header_size && bits <= 8 {
        offset += padding * colors as usize;
    }
    let mut raw = match bits {
        1 | 4 | 8 => Raw::Index(bits),
        16 => Raw::Bgr15,
        24 => Raw::Bgr,
        32 => Raw::Masks([0xFF0000, 0xFF00, 0xFF, 0]),
        _ => {
            return Err(decode_error(format!(
                "Unsupported BMP pixel depth ({bits})"
            )))
        }
    };
    let mut mode = match bits {
        1 | 4 | 8 => Mode::P,
        _ => Mode::Rgb,
    };
    match compression {
        BITFIELDS => {
            let rgb = [masks[0], masks[1], masks[2]];
            raw = match bits {
                32 => {
                    const KNOWN: [[u32; 4]; 8] = [
                        [0xFF0000, 0xFF00, 0xFF, 0x0],
                        [0xFF000000, 0xFF0000, 0xFF00, 0x0],
                        [0xFF000000, 0xFF00, 0xFF, 0x0],
                        [0xFF000000, 0xFF0000, 0xFF00, 0xFF],
                        [0xFF, 0xFF00, 0xFF0000, 0xFF000000],
                        [0xFF0000, 0xFF00, 0xFF, 0xFF000000],
                        [0xFF000000, 0xFF00, 0xFF, 0xFF0000],
                        [0x0, 0x0, 0x0, 0x0],
                    ];
                    if !KNOWN.contains(&masks) {
                        return Err(decode_error("Unsupported BMP bitfields layout"));
                    }
                    if masks == [0; 4] {
                        // Pillow reads this layout as BGRA.
                        masks = [0xFF0000, 0xFF00, 0xFF, 0xFF000000];
                    }
                    if masks[3] != 0 {
                        mode = Mode::Rgba;
                    }
                    Raw::Masks(masks)
                }
                24 if rgb == [0xFF0000, 0xFF00, 0xFF] => Raw::Bgr,
                16 if rgb == [0xF800, 0x7E0, 0x1F] => Raw::Bgr16,
                16 if rgb == [0x7C00, 0x3E0, 0x1F] => Raw::Bgr15,
                _ => return Err(decode_error("Unsupported BMP bitfields layout")),
            };
        }
        RAW | RLE8 | RLE4 => {}
        c => return Err(decode_error(format!("Unsupported BMP compression ({c})"))),
    }
    let mut palette = None;
    if mode == Mode::P {
        if !(colors > 0 && colors <= 65536) {
            return Err(decode_error(format!(
                "Unsupported BMP Palette size ({colors})"
            )));
        }
        let end = pos
            .saturating_add(padding * colors as usize)
            .min(bytes.len());
        let pal = bytes.get(pos..end).unwrap_or(&[]);
        let entry = |i: usize| pal.get(i * padding..i * padding + 3);
        let grey = if colors == 2 {
            [0u8, 255]
                .iter()
                .enumerate()
                .all(|(i, &v)| entry(i) == Some(&[v, v, v][..]))
        } else {
            (0..colors as usize)
                .all(|i| entry(i) == Some(&[i as u8, i as u8, i as u8][..]) && i < 256)
        };
        if grey {
            // Pillow then reads the data with the "1" / "L" raw modes, which only fit these depths.
            mode = if colors <= 2 { Mode::Bilevel } else { Mode::L };
            raw = match (mode, bits, compression) {
                (Mode::Bilevel, 1, RAW) => Raw::Bit,
                (Mode::L, 8, RAW | RLE8) => Raw::Grey,
                _ => return Err(decode_error("unsupported greyscale BMP layout")),
            };
        } else {
            if colors > 256 {
                return Err(decode_error(format!(
                    "Unsupported BMP Palette size ({colors})"
                )));
            }
            // Palette entries are B, G, R (+ pad); a short palette keeps its whole entries.
            palette = Some(
                pal.chunks(padding)
                    .filter(|c| c.len() >= 3)
                    .map(|c| [c[2], c[1], c[0]])
                    .collect(),
            );
        }
    }
    let (w, h) = (width as usize, height as usize);
    let mut out = Vec::new();
    if compression == RLE8 || compression == RLE4 {
        if !matches!(raw, Raw::Index(_) | Raw::Grey) {
            return Err(decode_error("unsupported BMP RLE layout"));
        }
        let data = rle(bytes, offset, w, h, compression == RLE4)?;
        for r in 0..h {
            let src = if top_down { r } else { h - 1 - r };
            out.extend_from_slice(&data[src * w..(src + 1) * w]);
        }
    } else {
        let stride = ((w as u64 * u64::from(bits) + 31) >> 3) as usize & !3;
        let needed = stride.checked_mul(h).ok_or_else(truncated)?;
        let data = bytes
            .get(offset..)
            .filter(|d| d.len() >= needed)
            .ok_or_else(truncated)?;
        out.reserve(w * h * mode.samples_per_pixel());
        for r in 0..h {
            let src = if top_down { r } else { h - 1 - r };
            unpack_row(raw, &data[src * stride..(src + 1) * stride], w, &mut out);
        }
    }
    PilImage::new(mode, width, height, PixelData::U8(out), palette)
}

/// Pillow's `BmpRleDecoder.decode`, producing `w * h` indices in file row order.
fn rle(
    bytes: &[u8],
    offset: usize,
    w: usize,
    h: usize,
    rle4: bool,
) -> Result<Vec<u8>, PreprocessError> {
    let dest = w * h;
    // Grows with the data actually present (a hostile header cannot reserve memory up front).
    let mut data: Vec<u8> = Vec::new();
    let mut pos = offset;
    let mut x = 0usize;
    let next = |pos: &mut usize| -> Option<u8> {
        let v = bytes.get(*pos).copied();
        if v.is_some() {
            *pos += 1;
        }
        v
    };
    while data.len() < dest {
        let (Some(count), Some(byte)) = (next(&mut pos), next(&mut pos)) else {
            break;
        };
        if count != 0 {
            let n = if x + count as usize > w {
                w.saturating_sub(x)
            } else {
                count as usize
            };
            if rle4 {
                let (first, second) = (byte >> 4, byte & 0x0F);
                data.extend((0..n).map(|i| if i % 2 == 0 { first } else { second }));
            } else {
                data.extend(std::iter::repeat_n(byte, n));
            }
            x += n;
        } else if byte == 0 {
            while !data.len().is_multiple_of(w) {
                data.push(0);
            }
            x = 0;
        } else if byte == 1 {
            break;
        } else if byte == 2 {
            let (Some(right), Some(up)) = (next(&mut pos), next(&mut pos)) else {
                break;
            };
            let skip = (right as usize + up as usize * w).min(dest.saturating_sub(data.len()));
            data.extend(std::iter::repeat_n(0, skip));
            x = data.len() % w;
        } else {
            let count = (dest - data.len()).min(byte as usize);
            let byte_count = if rle4 { count.div_ceil(2) } else { count };
            let end = (pos + byte_count).min(bytes.len());
            let read = &bytes[pos.min(end)..end];
            pos = end;
            if rle4 {
                for (i, b) in read.iter().enumerate() {
                    data.push(b >> 4);
                    if i * 2 + 1 < count {
                        data.push(b & 0x0F);
                    }
                }
            } else {
                data.extend_from_slice(read);
            }
            if read.len() < byte_count || data.len() == dest {
                break;
            }
            x += byte as usize;
            // Word alignment is relative to the start of the file.
            if !pos.is_multiple_of(2) {
                pos += 1;
            }
        }
    }
    if data.len() < dest {
        return Err(decode_error("not enough image data"));
    }
    data.truncate(dest);
    Ok(data)
}
