//! Image items as Python passes them: a path (`str` or `os.PathLike`), the bytes of an encoded image file, or
//! a uint8 numpy array (`HxWx3` RGB, `HxWx4` RGBA or `HxW` grey, as `PIL.Image.fromarray` reads it).
//!
//! Items are read in two steps: [`Source`] takes what it needs from each Python object while attached to the
//! interpreter (the bytes of a `bytes` object are borrowed, not copied: `bytes` is immutable and the source
//! keeps it alive), then [`ImageItem`] views of the sources are handed to the library with the GIL released.

use std::path::{Path, PathBuf};

use clip::preprocess::{Mode, PilImage, PixelData};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

use crate::texts::type_name;

/// What the accepted item kinds are, for `TypeError` messages.
const ACCEPTED: &str =
    "a path (str or os.PathLike), bytes of an image file, or a uint8 numpy array \
                        (HxWx3 RGB, HxWx4 RGBA or HxW grey)";

/// The name errors give an image that came as bytes (the library names files by their path).
const BYTES_NAME: &str = "<bytes>";

/// One item's data, taken from its Python object while attached to the interpreter.
pub enum Source<'py> {
    Path(PathBuf),
    /// A `bytes` object, read in place when the GIL is released.
    Bytes(Bound<'py, PyBytes>),
    /// A copy of a mutable buffer (`bytearray`), which another thread could change while the GIL is released.
    Owned(Vec<u8>),
    Pixels(PilImage),
}

/// A view of a [`Source`] that needs no interpreter: what the library's worker threads read.
pub enum ImageItem<'a> {
    Path(&'a Path),
    Bytes(&'a [u8]),
    Pixels(&'a PilImage),
}

impl<'py> Source<'py> {
    /// Reads item `index` of a call: `TypeError` for an object of the wrong type, `ValueError` for an array of
    /// the wrong shape.
    pub fn extract(item: &Bound<'py, PyAny>, index: Option<usize>) -> PyResult<Self> {
        let label = || index.map_or_else(|| "item".to_owned(), |i| format!("item {i}"));
        if let Ok(path) = item.cast::<PyString>() {
            return Ok(Self::Path(PathBuf::from(path.to_cow()?.as_ref())));
        }
        if let Ok(bytes) = item.cast::<PyBytes>() {
            return Ok(Self::Bytes(bytes.clone()));
        }
        if let Ok(bytes) = item.cast::<PyByteArray>() {
            return Ok(Self::Owned(bytes.to_vec()));
        }
        if let Ok(array) = item.cast::<PyUntypedArray>() {
            return pixels_from_array(array, &label()).map(Self::Pixels);
        }
        if item.hasattr("__fspath__")? {
            // pyo3 converts through os.fspath, as `open` does.
            return Ok(Self::Path(item.extract::<PathBuf>()?));
        }
        Err(PyTypeError::new_err(format!(
            "{}: expected {ACCEPTED}, not {}",
            label(),
            type_name(item)
        )))
    }

    pub fn view(&self) -> ImageItem<'_> {
        match self {
            Self::Path(path) => ImageItem::Path(path),
            Self::Bytes(bytes) => ImageItem::Bytes(bytes.as_bytes()),
            Self::Owned(bytes) => ImageItem::Bytes(bytes),
            Self::Pixels(image) => ImageItem::Pixels(image),
        }
    }
}

impl ImageItem<'_> {
    /// Decodes (for paths and bytes) and preprocesses the item as the model's `preprocess` does.
    pub fn prepare(&self, clip: &clip::Clip) -> clip::Result<Vec<f32>> {
        match self {
            Self::Path(path) => clip.preprocess_path(path),
            Self::Bytes(bytes) => clip.preprocess_bytes(bytes, Path::new(BYTES_NAME)),
            Self::Pixels(image) => Ok(clip::preprocess::preprocess_image(
                image,
                clip.preprocess_config(),
            )?),
        }
    }
}

/// A uint8 array as the Pillow image `Image.fromarray` makes of it (mode from the shape).
fn pixels_from_array(array: &Bound<'_, PyUntypedArray>, label: &str) -> PyResult<PilImage> {
    let Ok(typed) = array.cast::<PyArrayDyn<u8>>() else {
        return Err(PyTypeError::new_err(format!(
            "{label}: a numpy image must have dtype uint8, not {}",
            array.dtype()
        )));
    };
    let shape = array.shape().to_vec();
    let mode = match shape.as_slice() {
        [_, _] => Mode::L,
        [_, _, 3] => Mode::Rgb,
        [_, _, 4] => Mode::Rgba,
        _ => {
            return Err(PyValueError::new_err(format!(
                "{label}: a numpy image must have shape HxWx3 (RGB), HxWx4 (RGBA) or HxW (grey), not {shape:?}"
            )))
        }
    };
    let side = |n: usize| {
        u32::try_from(n).map_err(|_| {
            PyValueError::new_err(format!("{label}: image of shape {shape:?} is too large"))
        })
    };
    let (height, width) = (side(shape[0])?, side(shape[1])?);
    let readonly = typed
        .try_readonly()
        .map_err(|e| PyValueError::new_err(format!("{label}: {e}")))?;
    // Any layout is accepted (slices, transposes, Fortran order): the copy is made in row-major order.
    // (`as_slice` also succeeds for Fortran-contiguous arrays, in memory order, so C order is checked first.)
    let data = match readonly.as_slice() {
        Ok(slice) if array.is_c_contiguous() => slice.to_vec(),
        _ => readonly.as_array().iter().copied().collect(),
    };
    PilImage::new(mode, width, height, PixelData::U8(data), None)
        .map_err(|e| PyValueError::new_err(format!("{label}: {e}")))
}
