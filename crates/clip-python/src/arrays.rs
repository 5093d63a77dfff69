//! Rows computed by the library as numpy arrays: float32 `[N, D]` embeddings and int32 `[N, L]` token ids.
//! An empty batch still has its second dimension, so `np.concatenate` over batches works.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::{Bound, PyResult, Python};

/// Stacks equal-length rows into a `[rows.len(), width]` array.
pub fn stack<'py, T: numpy::Element + Copy>(
    py: Python<'py>,
    rows: &[Vec<T>],
    width: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        if row.len() != width {
            // The library guarantees equal widths; a mismatch is a bug worth a clear message, not a panic.
            return Err(PyValueError::new_err(format!(
                "internal error: a row has {} values, expected {width}",
                row.len()
            )));
        }
        flat.extend_from_slice(row);
    }
    let array = Array2::from_shape_vec((rows.len(), width), flat)
        .map_err(|e| PyValueError::new_err(format!("internal error: {e}")))?;
    Ok(array.into_pyarray(py))
}

/// Token ids as int32 (every CLIP vocabulary has fewer than 2^31 entries).
pub fn ids_to_i32(rows: Vec<Vec<u32>>) -> Vec<Vec<i32>> {
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|id| i32::try_from(id).unwrap_or(i32::MAX))
                .collect()
        })
        .collect()
}
