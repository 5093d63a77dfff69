//! JPEG, decoded like Pillow's `JpegImagePlugin` + `JpegDecode.c`: libjpeg-turbo's decoder (here the copy
//! inside mozjpeg, built statically) with its defaults (ISLOW IDCT, fancy upsampling), 1 component -> `L`,
//! 3 -> `RGB`, 4 -> `CMYK` read with Pillow's "CMYK;I" raw mode (Adobe's inverted polarity, always assumed).
//! Pillow refuses other bit depths and component counts; a truncated file is an error ("image file is
//! truncated"), as with Pillow's default `LOAD_TRUNCATED_IMAGES = False`.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_uint, c_ulong};

use crate::decode::check_size;
use crate::error::{decode_error, PreprocessError};
use crate::image::{Mode, PilImage, PixelData};

#[repr(C)]
struct ClipJpeg {
    _opaque: [u8; 0],
}

extern "C" {
    fn clip_jpeg_new() -> *mut ClipJpeg;
    fn clip_jpeg_free(ctx: *mut ClipJpeg);
    fn clip_jpeg_message(ctx: *const ClipJpeg) -> *const c_char;
    fn clip_jpeg_read_header(
        ctx: *mut ClipJpeg,
        data: *const u8,
        len: c_ulong,
        width: *mut c_uint,
        height: *mut c_uint,
        components: *mut c_int,
    ) -> c_int;
    fn clip_jpeg_decode(ctx: *mut ClipJpeg, out: *mut u8, stride: usize) -> c_int;
}

const CLIP_JPEG_OK: c_int = 0;

/// Owns a libjpeg decompressor; freed on drop.
struct Decompressor(*mut ClipJpeg);

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the pointer came from clip_jpeg_new and is freed exactly once.
        unsafe { clip_jpeg_free(self.0) }
    }
}

impl Decompressor {
    fn message(&self) -> String {
        // SAFETY: the shim always keeps a NUL-terminated message buffer inside the context.
        let msg = unsafe { CStr::from_ptr(clip_jpeg_message(self.0)) };
        let text = msg.to_string_lossy().trim().to_string();
        if text.is_empty() {
            "invalid JPEG data".to_string()
        } else {
            text
        }
    }
}

/// Decodes a JPEG file held in memory.
pub(crate) fn decode(bytes: &[u8]) -> Result<PilImage, PreprocessError> {
    let len = c_ulong::try_from(bytes.len()).map_err(|_| decode_error("JPEG data too large"))?;
    // SAFETY: plain constructor; null on allocation failure.
    let ctx = unsafe { clip_jpeg_new() };
    if ctx.is_null() {
        return Err(decode_error("cannot allocate a JPEG decoder"));
    }
    let dec = Decompressor(ctx);
    let (mut width, mut height, mut components): (c_uint, c_uint, c_int) = (0, 0, 0);
    // SAFETY: `bytes` outlives `dec`'s use of it (libjpeg keeps the pointer until the decoder is freed,
    // which happens at the end of this function); out-parameters are valid.
    let rc = unsafe {
        clip_jpeg_read_header(
            dec.0,
            bytes.as_ptr(),
            len,
            &mut width,
            &mut height,
            &mut components,
        )
    };
    if rc != CLIP_JPEG_OK {
        return Err(decode_error(dec.message()));
    }
    let mode = match components {
        1 => Mode::L,
        3 => Mode::Rgb,
        4 => Mode::Cmyk,
        n => return Err(decode_error(format!("cannot handle {n}-layer images"))),
    };
    check_size(width, height)?;
    let channels = mode.samples_per_pixel();
    let stride = width as usize * channels;
    let mut data = vec![0u8; stride * height as usize];
    // SAFETY: `data` holds `height` rows of `stride` bytes, as the shim writes.
    let rc = unsafe { clip_jpeg_decode(dec.0, data.as_mut_ptr(), stride) };
    if rc != CLIP_JPEG_OK {
        return Err(decode_error(dec.message()));
    }
    if mode == Mode::Cmyk {
        // Pillow's "CMYK;I" unpacker: Adobe writes CMYK inverted.
        for v in &mut data {
            *v = !*v;
        }
    }
    PilImage::new(mode, width, height, PixelData::U8(data), None)
}
