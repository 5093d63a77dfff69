//! JSON files of model directories (configs, indexes, tokenizer settings), read with the config size limit.

use std::path::Path;

use serde_json::Value;

use crate::error::{ClipError, Result};

/// Parses a JSON file; a syntax error is a [`ClipError::Config`] naming the file, on one line.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = clip_io::read_input_text(path, clip_io::Input::Config)?;
    serde_json::from_str(&text).map_err(|e| ClipError::Config {
        path: path.to_path_buf(),
        reason: crate::checkpoint::store::one_line(&format!("not valid JSON: {e}")),
    })
}
