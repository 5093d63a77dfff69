//! `clip_rs.Model`: a loaded model with the tokenizer and preprocessing that belong to it, as `clip.load`
//! returns. Every method releases the GIL while the library works, so Python threads keep running and several
//! threads may encode with one model at once (the model is immutable; each call has its own scratch).

use std::sync::atomic::{AtomicUsize, Ordering};

use numpy::ndarray::Array3;
use numpy::{IntoPyArray, PyArray2, PyArray3, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

use crate::arrays::{ids_to_i32, stack};
use crate::errors::to_py;
use crate::items::{ImageItem, Source};
use crate::texts::{extract_texts, type_name};

/// A CLIP model loaded by `clip_rs.load`.
#[pyclass(frozen, module = "clip_rs", name = "Model")]
pub struct Model {
    clip: clip::Clip,
    spec: String,
    dtype: clip::Precision,
}

/// What `encode_images` does with an item that cannot be read or encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnError {
    /// Raise `ValueError` for the first such item (by index).
    Raise,
    /// Give that item a row of NaN.
    Nan,
}

impl OnError {
    fn parse(text: &str) -> PyResult<Self> {
        match text {
            "raise" => Ok(Self::Raise),
            "nan" => Ok(Self::Nan),
            other => Err(PyValueError::new_err(format!(
                "on_error must be \"raise\" or \"nan\", not {other:?}"
            ))),
        }
    }
}

impl Model {
    pub fn new(clip: clip::Clip, spec: String, dtype: clip::Precision) -> Self {
        Self { clip, spec, dtype }
    }

    fn dim(&self) -> usize {
        self.clip.model().config().projection_dim
    }
}

#[pymethods]
impl Model {
    /// Embeds images: one float32 row per item, in order, as `model.encode_image(preprocess(image))`.
    ///
    /// Items are paths (str or os.PathLike), bytes of image files, or uint8 numpy arrays (HxWx3 RGB,
    /// HxWx4 RGBA, HxW grey); a uint8 array of shape NxHxWx3 is also accepted as N images. With
    /// on_error="raise" the first item that cannot be decoded raises ValueError naming its index; with
    /// on_error="nan" its row is NaN and the others are computed.
    #[pyo3(signature = (items, normalize = false, on_error = "raise"))]
    fn encode_images<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        normalize: bool,
        on_error: &str,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let on_error = OnError::parse(on_error)?;
        let sources = image_sources(items)?;
        let views: Vec<(usize, ImageItem<'_>)> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.view()))
            .collect();
        let clip = &self.clip;
        // With on_error="raise", items after the first failing one are skipped (only the first failure is
        // reported); items before it are still prepared, so the reported index does not depend on timing.
        let first_failure = AtomicUsize::new(usize::MAX);
        let results = py.detach(|| {
            let mut results = clip.encode_images_with(
                &views,
                |(i, item)| {
                    if on_error == OnError::Raise && *i > first_failure.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    let prepared = item.prepare(clip);
                    if prepared.is_err() {
                        first_failure.fetch_min(*i, Ordering::Relaxed);
                    }
                    prepared.map(Some)
                },
                |_| {},
            );
            if normalize {
                for row in results.iter_mut().flatten().flatten() {
                    clip::normalize_rows(std::slice::from_mut(row));
                }
            }
            results
        });
        let dim = self.dim();
        let mut rows = Vec::with_capacity(results.len());
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(Some(row)) => rows.push(row),
                Err(e) if on_error == OnError::Raise => {
                    return Err(PyValueError::new_err(format!("item {i}: {e}")));
                }
                // A failed item with on_error="nan" (skipped items exist only after a raised failure).
                _ => rows.push(vec![f32::NAN; dim]),
            }
        }
        stack(py, &rows, dim)
    }

    /// Embeds texts: one float32 row per text, as `model.encode_text(clip.tokenize(texts))`. A text longer
    /// than the context length raises ValueError unless truncate=True.
    #[pyo3(signature = (texts, normalize = false, truncate = false))]
    fn encode_texts<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        normalize: bool,
        truncate: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let texts = extract_texts(texts)?;
        let clip = &self.clip;
        let rows = py
            .detach(|| {
                let mut rows = clip.encode_texts(&texts, truncate)?;
                if normalize {
                    clip::normalize_rows(&mut rows);
                }
                Ok(rows)
            })
            .map_err(to_py)?;
        stack(py, &rows, self.dim())
    }

    /// The model's input for one image: float32 [3, S, S], equal to OpenAI's `preprocess(PIL image)`.
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let source = Source::extract(item, None)?;
        let view = source.view();
        let clip = &self.clip;
        let pixels = py.detach(|| view.prepare(clip)).map_err(to_py)?;
        let size = self.clip.preprocess_config().size as usize;
        let array = Array3::from_shape_vec((3, size, size), pixels)
            .map_err(|e| PyValueError::new_err(format!("internal error: {e}")))?;
        Ok(array.into_pyarray(py))
    }

    /// Token ids of the model's tokenizer: int32 [N, context_length], as `clip.tokenize`.
    #[pyo3(signature = (texts, truncate = false))]
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        truncate: bool,
    ) -> PyResult<Bound<'py, PyArray2<i32>>> {
        let texts = extract_texts(texts)?;
        let clip = &self.clip;
        let ids = py
            .detach(|| clip.tokenize(&texts, truncate))
            .map_err(to_py)?;
        stack(py, &ids_to_i32(ids), self.clip.context_length())
    }

    /// Length of the embeddings (the projection dimension).
    #[getter]
    fn embedding_dim(&self) -> usize {
        self.dim()
    }

    /// Side of the square image the model takes (what `preprocess` produces).
    #[getter]
    fn image_size(&self) -> u32 {
        self.clip.preprocess_config().size
    }

    /// Tokens per text, start and end tokens included.
    #[getter]
    fn context_length(&self) -> usize {
        self.clip.context_length()
    }

    /// The arithmetic the model computes with: "f32", "bf16" or "int8".
    #[getter]
    fn dtype(&self) -> String {
        self.dtype.to_string()
    }

    /// The model string it was loaded from.
    #[getter]
    fn spec(&self) -> &str {
        &self.spec
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        // Python's own quoting of the spec, so the repr reads as Python.
        let spec = PyString::new(slf.py(), &this.spec).repr()?;
        Ok(format!(
            "clip_rs.Model(spec={spec}, dtype='{}', embedding_dim={}, image_size={}, context_length={})",
            this.dtype,
            this.dim(),
            this.image_size(),
            this.context_length()
        ))
    }
}

/// The items of an `encode_images` call: any iterable of items, or a uint8 NxHxWx3 array. A single item
/// (a path, bytes, one image array) is refused: iterating it would silently give wrong items.
fn image_sources<'py>(items: &Bound<'py, PyAny>) -> PyResult<Vec<Source<'py>>> {
    let single = items.cast::<PyString>().is_ok()
        || items.cast::<PyBytes>().is_ok()
        || items.cast::<PyByteArray>().is_ok()
        || items.hasattr("__fspath__")?
        || items.cast::<PyUntypedArray>().is_ok_and(|a| a.ndim() != 4);
    if single {
        return Err(PyTypeError::new_err(format!(
            "items must be a list of images, not a single {} (wrap it in a list)",
            type_name(items)
        )));
    }
    let iter = items.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "items must be a list of images, not {}",
            type_name(items)
        ))
    })?;
    let mut sources = Vec::new();
    for (i, item) in iter.enumerate() {
        sources.push(Source::extract(&item?, Some(i))?);
    }
    Ok(sources)
}
