//! How library errors reach Python: the library's own message, under the exception class a Python caller
//! expects. Bad input (an over-long text, an undecodable image, a missing file) is a `ValueError`; anything
//! else the library reports (a model that cannot be loaded, a failed computation) is `clip_rs.ClipError`.

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    clip_rs,
    ClipError,
    PyException,
    "An error reported by the CLIP library (a model that cannot be loaded, a failed computation)."
);

/// The Python exception for a library error met while working on the caller's inputs.
pub fn to_py(error: clip::ClipError) -> PyErr {
    let message = error.to_string();
    if is_input_error(&error) {
        PyValueError::new_err(message)
    } else {
        ClipError::new_err(message)
    }
}

/// The Python exception for a failure to load a model: always `ClipError`, whatever the cause (a missing
/// directory is not a bad argument value in the Python sense, it is the library refusing the model).
pub fn load_error(error: clip::ClipError) -> PyErr {
    ClipError::new_err(error.to_string())
}

/// Errors caused by what the caller passed in, rather than by the model or the machine.
fn is_input_error(error: &clip::ClipError) -> bool {
    matches!(
        error,
        clip::ClipError::InvalidInput(_)
            | clip::ClipError::Tokenizer(_)
            | clip::ClipError::Preprocess(_)
            | clip::ClipError::File(_)
            | clip::ClipError::Io { .. }
    )
}
