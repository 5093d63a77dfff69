//! Text arguments: one `str` or a sequence of them, as `clip.tokenize` accepts.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// `texts` as owned strings: a single `str` is one text (never a sequence of characters).
pub fn extract_texts(texts: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(text) = texts.cast::<PyString>() {
        return Ok(vec![text.to_cow()?.into_owned()]);
    }
    let iter = texts.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "texts must be a str or a list of str, not {}",
            type_name(texts)
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        match item.cast::<PyString>() {
            Ok(text) => out.push(text.to_cow()?.into_owned()),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "texts[{i}] must be a str, not {}",
                    type_name(&item)
                )))
            }
        }
    }
    Ok(out)
}

/// The Python type name of `value`, for error messages.
pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |n| n.to_string())
}
