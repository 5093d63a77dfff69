//! Errors of decoding and preprocessing. Each names the file (when there is one) and says what went wrong
//! in one line, e.g. `cannot decode image photos/x.jpg: image file is truncated`.

use std::path::{Path, PathBuf};

/// Everything that can go wrong between a path (or bytes) and a normalised tensor.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file could not be read: missing, not a regular file, or over the size limit.
    #[error(transparent)]
    File(#[from] clip_io::FileError),
    /// The bytes look like a supported format but are corrupt, truncated or use an unsupported feature.
    #[error("cannot decode image {}: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },
    /// The bytes are not in any format this crate decodes.
    #[error("cannot decode image {}: unsupported or unrecognised image format", path.display())]
    UnsupportedFormat { path: PathBuf },
    /// The file is empty.
    #[error("cannot decode image {}: the file is empty", path.display())]
    Empty { path: PathBuf },
    /// The image (or a requested size) has a zero dimension.
    #[error("image {} has zero size ({width}x{height})", path.display())]
    ZeroSize {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    /// Pillow refuses images above twice `Image.MAX_IMAGE_PIXELS` (a decompression bomb); so do we.
    #[error(
        "image {} is too large: {width}x{height} = {pixels} pixels exceeds the limit of {limit} pixels \
         (possible decompression bomb)",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    /// A Pillow mode this pipeline does not handle.
    #[error("image {} has unsupported mode {mode}", path.display())]
    UnsupportedMode { path: PathBuf, mode: String },
    /// A bad argument (e.g. a crop size of zero).
    #[error("invalid preprocessing argument: {0}")]
    InvalidArgument(String),
}

/// The placeholder path used for images decoded from memory.
pub(crate) fn memory_path() -> PathBuf {
    PathBuf::from("<memory>")
}

impl PreprocessError {
    /// Replaces the path of a path-carrying error (decoders work on bytes and learn the path later).
    pub(crate) fn with_path(self, new_path: &Path) -> Self {
        let p = new_path.to_path_buf();
        match self {
            PreprocessError::Decode { reason, .. } => PreprocessError::Decode { path: p, reason },
            PreprocessError::UnsupportedFormat { .. } => {
                PreprocessError::UnsupportedFormat { path: p }
            }
            PreprocessError::Empty { .. } => PreprocessError::Empty { path: p },
            PreprocessError::ZeroSize { width, height, .. } => PreprocessError::ZeroSize {
                path: p,
                width,
                height,
            },
            PreprocessError::TooLarge {
                width,
                height,
                pixels,
                limit,
                ..
            } => PreprocessError::TooLarge {
                path: p,
                width,
                height,
                pixels,
                limit,
            },
            PreprocessError::UnsupportedMode { mode, .. } => {
                PreprocessError::UnsupportedMode { path: p, mode }
            }
            other @ (PreprocessError::InvalidArgument(_) | PreprocessError::File(_)) => other,
        }
    }
}

/// Shorthand for a decode error on in-memory data (the path is filled in by `open`).
pub(crate) fn decode_error(reason: impl Into<String>) -> PreprocessError {
    PreprocessError::Decode {
        path: memory_path(),
        reason: reason.into(),
    }
}
