//! What can go wrong when indexing and searching, each with the file it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("index {path}: {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path} is not a clip search index: {reason}")]
    NotAnIndex { path: PathBuf, reason: String },
    #[error("{path} does not exist (create it with `clip index DIR --db {}`)", path.display())]
    NoIndex { path: PathBuf },
    #[error(
        "index {path} was built with {stored}; the model given is {given} (search with the model the index \
         was built with, or index into a new --db)"
    )]
    ModelMismatch {
        path: PathBuf,
        stored: String,
        given: String,
    },
    #[error("index {path} is busy: another `clip index` (pid {pid}) is updating it")]
    Busy { path: PathBuf, pid: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged: {reason} (it is rebuilt from the index by the next `clip index`)")]
    DamagedSidecar { path: PathBuf, reason: String },
    #[error("invalid query: {0}")]
    Query(String),
    #[error(transparent)]
    Clip(#[from] clip::ClipError),
    #[error(transparent)]
    Hnsw(#[from] crate::hnsw::HnswError),
}

pub type Result<T> = std::result::Result<T, SearchError>;
