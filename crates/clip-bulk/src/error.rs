//! What can go wrong in a bulk run (a bad sample is not an error: it is counted and skipped).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error(transparent)]
    Clip(#[from] clip::ClipError),
    /// `--input` names nothing usable.
    #[error("{0}")]
    Input(String),
    /// An output file or folder that cannot be written.
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
    /// The output folder holds partitions written with other settings.
    #[error("{0}")]
    Conflict(String),
}

impl From<clip::io::FileError> for BulkError {
    fn from(e: clip::io::FileError) -> Self {
        Self::Clip(e.into())
    }
}

pub type Result<T> = std::result::Result<T, BulkError>;
