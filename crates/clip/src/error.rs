//! The library's error type: every failure names the thing it is about (path, tensor, model id).

use std::path::PathBuf;

pub type Result<T, E = ClipError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("invalid checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("checkpoint {path}: tensor {name} is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("checkpoint {path}: unexpected tensors {names}")]
    UnexpectedTensors { path: PathBuf, names: String },
    #[error("checkpoint {path}: tensor {name} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("unknown model {0:?}: not a local directory or file, and not a Hugging Face id of the form org/name")]
    UnknownModel(String),
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("{0}")]
    InvalidInput(String),
    /// A training run stopped on request before its last step (its checkpoints stay; `--resume` continues).
    #[error("training stopped after step {step}")]
    Stopped { step: u64 },
    /// Training or validation data that cannot be used (no rows, a missing column, not a tar archive).
    #[error("data {name}: {reason}")]
    Data { name: String, reason: String },
    #[error("the classifier was made with model {expected}, not with the loaded model {found}; rebuild it for this model")]
    ModelMismatch { expected: String, found: String },
    /// A file that could not be read or written (missing, not a regular file, over its size limit, disk full).
    #[error(transparent)]
    File(#[from] clip_io::FileError),
    #[error(transparent)]
    Tokenizer(#[from] clip_tokenizer::TokenizerError),
    #[error(transparent)]
    Preprocess(#[from] clip_preprocess::PreprocessError),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Joins the lines of a message so every error prints as one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_messages() {
        assert_eq!(one_line("a\n  b\n\nc"), "a; b; c");
    }
}
