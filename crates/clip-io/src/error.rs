//! What can go wrong with a file, in one line naming it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operating system refused a read (missing file, permission, I/O error).
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Inputs must be regular files: reading a FIFO blocks, a device may never end.
    #[error("cannot read {what} {}: it is {kind}, not a regular file", path.display())]
    NotRegular {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    /// The input is larger than the limit for its kind.
    #[error(
        "cannot read {what} {}: it is larger than the limit of {limit} bytes{hint}",
        path.display()
    )]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        limit: u64,
        /// How to raise the limit, when it can be raised.
        hint: String,
    },
    /// A text input is not UTF-8.
    #[error("cannot read {what} {}: not UTF-8 text (invalid byte at offset {offset})", path.display())]
    NotUtf8 {
        what: &'static str,
        path: PathBuf,
        offset: usize,
    },
    /// The operating system refused a write (`ENOSPC`, permission, missing directory, ...).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An output path that names something that cannot be written as a file.
    #[error("cannot write {}: {reason}", path.display())]
    BadOutput { path: PathBuf, reason: String },
}
