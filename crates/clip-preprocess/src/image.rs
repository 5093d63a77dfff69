//! In-memory images as Pillow holds them after `Image.open(...).load()`: a mode (`"1"`, `"L"`, `"P"`, `"RGB"`,
//! `"I;16"`, ...), a size, the pixels in Pillow's band order and value conventions, and for `P` a palette.
//! The mode matters: Pillow's `Image.resize` and `Image.convert("RGB")` pick their arithmetic by it.

use crate::error::PreprocessError;

/// Pillow image modes that decoders here produce (plus the premultiplied modes used inside `resize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `"1"`: bilevel, stored like Pillow as one byte per pixel, 0 or 255.
    Bilevel,
    /// `"L"`: 8-bit grey.
    L,
    /// `"LA"`: grey + alpha (2 bytes a pixel here; Pillow stores them in bytes 0 and 3 of 4).
    La,
    /// `"La"`: grey premultiplied by alpha (only inside `resize`).
    LaPremultiplied,
    /// `"P"`: 8-bit palette indices.
    P,
    /// `"PA"`: palette index + alpha.
    Pa,
    /// `"RGB"`.
    Rgb,
    /// `"RGBA"`.
    Rgba,
    /// `"RGBa"`: RGB premultiplied by alpha (only inside `resize`).
    RgbaPremultiplied,
    /// `"CMYK"`.
    Cmyk,
    /// `"I;16"`: 16-bit unsigned grey, little-endian bytes (2 bytes a pixel).
    I16,
    /// `"I;16B"`: 16-bit unsigned grey, big-endian bytes (2 bytes a pixel).
    I16B,
    /// `"I"`: 32-bit signed integer grey.
    I32,
    /// `"F"`: 32-bit float grey.
    F32,
}

impl Mode {
    /// Pillow's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bilevel => "1",
            Mode::L => "L",
            Mode::La => "LA",
            Mode::LaPremultiplied => "La",
            Mode::P => "P",
            Mode::Pa => "PA",
            Mode::Rgb => "RGB",
            Mode::Rgba => "RGBA",
            Mode::RgbaPremultiplied => "RGBa",
            Mode::Cmyk => "CMYK",
            Mode::I16 => "I;16",
            Mode::I16B => "I;16B",
            Mode::I32 => "I",
            Mode::F32 => "F",
        }
    }

    /// Bytes a pixel takes in `PixelData::U8` (8-bit modes and the 16-bit modes), or 1 sample for `I`/`F`.
    pub fn samples_per_pixel(self) -> usize {
        match self {
            Mode::Bilevel | Mode::L | Mode::P => 1,
            Mode::La | Mode::LaPremultiplied | Mode::Pa => 2,
            Mode::I16 | Mode::I16B => 2,
            Mode::Rgb => 3,
            Mode::Rgba | Mode::RgbaPremultiplied | Mode::Cmyk => 4,
            Mode::I32 | Mode::F32 => 1,
        }
    }

    fn sample_kind(self) -> SampleKind {
        match self {
            Mode::I32 => SampleKind::I32,
            Mode::F32 => SampleKind::F32,
            _ => SampleKind::U8,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SampleKind {
    U8,
    I32,
    F32,
}

/// Pixel storage, row-major, bands interleaved.
#[derive(Clone, Debug, PartialEq)]
pub enum PixelData {
    /// 8-bit modes (`Mode::samples_per_pixel` bytes a pixel) and the raw bytes of `I;16`/`I;16B`.
    U8(Vec<u8>),
    /// Mode `I`.
    I32(Vec<i32>),
    /// Mode `F`.
    F32(Vec<f32>),
}

impl PixelData {
    fn len(&self) -> usize {
        match self {
            PixelData::U8(v) => v.len(),
            PixelData::I32(v) => v.len(),
            PixelData::F32(v) => v.len(),
        }
    }

    fn kind(&self) -> SampleKind {
        match self {
            PixelData::U8(_) => SampleKind::U8,
            PixelData::I32(_) => SampleKind::I32,
            PixelData::F32(_) => SampleKind::F32,
        }
    }
}

/// Transparency information as Pillow keeps it in `im.info["transparency"]` (it does not change pixels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transparency {
    /// One fully transparent palette index (GIF, PNG with a single zero alpha).
    Index(u8),
    /// Per-palette-entry alpha (PNG `tRNS` for palette images).
    PaletteAlpha(Vec<u8>),
    /// A transparent grey level (PNG `tRNS` for grey images).
    Grey(u16),
    /// A transparent colour (PNG `tRNS` for RGB images).
    Rgb(u16, u16, u16),
}

/// A decoded image, equal to what Pillow's `Image.open(path)` holds after `load()`.
#[derive(Clone, Debug, PartialEq)]
pub struct PilImage {
    mode: Mode,
    width: u32,
    height: u32,
    data: PixelData,
    /// 256 RGB entries for `P`/`PA` (entries a file leaves out are black, as in Pillow).
    palette: Option<Vec<[u8; 3]>>,
    transparency: Option<Transparency>,
}

impl PilImage {
    /// Builds an image, checking that the data matches the mode and size. `P`/`PA` need a palette
    /// (at most 256 entries; missing entries are black).
    pub fn new(
        mode: Mode,
        width: u32,
        height: u32,
        data: PixelData,
        palette: Option<Vec<[u8; 3]>>,
    ) -> Result<Self, PreprocessError> {
        if data.kind() != mode.sample_kind() {
            return Err(PreprocessError::InvalidArgument(format!(
                "pixel data type does not match mode {mode}"
            )));
        }
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(mode.samples_per_pixel()))
            .ok_or_else(|| PreprocessError::InvalidArgument("image size overflows".into()))?;
        if data.len() != expected {
            return Err(PreprocessError::InvalidArgument(format!(
                "mode {mode} {width}x{height} needs {expected} samples, got {}",
                data.len()
            )));
        }
        let palette = match (mode, palette) {
            (Mode::P | Mode::Pa, Some(mut p)) => {
                if p.len() > 256 {
                    return Err(PreprocessError::InvalidArgument(format!(
                        "palette has {} entries (at most 256)",
                        p.len()
                    )));
                }
                p.resize(256, [0, 0, 0]);
                Some(p)
            }
            (Mode::P | Mode::Pa, None) => {
                return Err(PreprocessError::InvalidArgument(format!(
                    "mode {mode} needs a palette"
                )))
            }
            (_, _) => None,
        };
        Ok(PilImage {
            mode,
            width,
            height,
            data,
            palette,
            transparency: None,
        })
    }

    /// An 8-bit RGB image from interleaved HWC bytes.
    pub fn from_rgb8(width: u32, height: u32, data: Vec<u8>) -> Result<Self, PreprocessError> {
        PilImage::new(Mode::Rgb, width, height, PixelData::U8(data), None)
    }

    pub(crate) fn with_transparency(mut self, transparency: Option<Transparency>) -> Self {
        self.transparency = transparency;
        self
    }

    /// Pillow's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels (see [`PixelData`] for the layout).
    pub fn pixels(&self) -> &PixelData {
        &self.data
    }

    /// The 256-entry RGB palette of `P`/`PA` images.
    pub fn palette(&self) -> Option<&[[u8; 3]]> {
        self.palette.as_deref()
    }

    /// `im.info["transparency"]`, when the file had one.
    pub fn transparency(&self) -> Option<&Transparency> {
        self.transparency.as_ref()
    }

    /// Same image with other pixels and mode, keeping the palette (used by resize and conversions).
    pub(crate) fn derive(&self, mode: Mode, width: u32, height: u32, data: PixelData) -> PilImage {
        PilImage {
            mode,
            width,
            height,
            data,
            palette: if matches!(mode, Mode::P | Mode::Pa) {
                self.palette.clone()
            } else {
                None
            },
            transparency: None,
        }
    }
}
