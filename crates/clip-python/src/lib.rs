//! Python bindings: `import clip_rs`. A thin face over the `clip` library, like the `clip` binary: arguments
//! are read from Python objects, the library does the work with the GIL released, and results come back as
//! numpy arrays. Every number comes from the library; errors carry its messages (see `errors`).
//!
//! ```python
//! import clip_rs
//! model = clip_rs.load("ViT-B/32")
//! images = model.encode_images(["cat.jpg"], normalize=True)
//! texts = model.encode_texts(["a photo of a cat"], normalize=True)
//! ```

mod arrays;
mod errors;
mod items;
mod model;
mod texts;

use std::path::PathBuf;
use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{ids_to_i32, stack};
use crate::errors::load_error;
use crate::model::Model;
use crate::texts::extract_texts;

/// Loads a model, as `clip --model SPEC --dtype DTYPE`: an OpenAI name (ViT-B/32, RN50, ...), an OpenAI .pt
/// file, a Hugging Face directory or Hub id, an open_clip directory, hf-hub:ORG/NAME, or ARCH:TAG /
/// ARCH:WEIGHTS. dtype is "f32", "bf16", "int8" or "auto" (the fastest within its cosine bar on this CPU). threads fixes the compute threads for the whole process
/// (default: $CLIP_THREADS, else every core); a later load asking for another count raises ClipError.
#[pyfunction]
#[pyo3(signature = (spec, dtype = "f32", threads = None, *, cache_dir = None, offline = false))]
fn load(
    py: Python<'_>,
    spec: &str,
    dtype: &str,
    threads: Option<i64>,
    cache_dir: Option<PathBuf>,
    offline: bool,
) -> PyResult<Model> {
    let precision = clip::Precision::parse_or_auto(dtype).map_err(PyValueError::new_err)?;
    let threads = match threads {
        None => None,
        Some(n) if n >= 1 => {
            Some(usize::try_from(n).map_err(|e| PyValueError::new_err(e.to_string()))?)
        }
        Some(n) => {
            return Err(PyValueError::new_err(format!(
                "threads must be 1 or more, not {n}"
            )))
        }
    };
    let options = clip::LoadOptions {
        hub: clip::hub::HubOptions {
            cache_dir,
            offline,
            progress: None,
        },
        precision,
        threads,
        ..Default::default()
    };
    let spec = spec.to_owned();
    let loaded = py
        .detach(|| clip::Clip::load(&spec, &options))
        .map_err(load_error)?;
    Ok(Model::new(loaded, spec, precision))
}

/// OpenAI's tokenizer (the vocabulary built into the library), shared by every call.
fn openai_tokenizer() -> &'static clip::tokenizer::Tokenizer {
    static TOKENIZER: OnceLock<clip::tokenizer::Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(clip::tokenizer::Tokenizer::openai)
}

/// `clip.tokenize(texts, context_length, truncate)` with OpenAI's vocabulary: int32 [N, context_length],
/// padded with 0. A text longer than the context length raises ValueError unless truncate=True.
#[pyfunction]
#[pyo3(signature = (texts, context_length = clip::tokenizer::DEFAULT_CONTEXT_LENGTH, truncate = false))]
fn tokenize<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    context_length: usize,
    truncate: bool,
) -> PyResult<Bound<'py, numpy::PyArray2<i32>>> {
    let texts = extract_texts(texts)?;
    let ids = py
        .detach(|| openai_tokenizer().tokenize_batch(&texts, context_length, truncate))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    stack(py, &ids_to_i32(ids), context_length)
}

/// CLIP in Rust: OpenAI's CLIP models (tokenizer, preprocessing, image and text towers) on the CPU.
#[pymodule]
mod clip_rs {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::errors::ClipError;
    #[pymodule_export]
    use super::load;
    #[pymodule_export]
    use super::model::Model;
    #[pymodule_export]
    use super::tokenize;

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
