//! Which model made an index's embeddings: a SHA-256 over the model's files (config and weights) plus the
//! dtype and embedding size. Embeddings of two models are not comparable, so an index refuses any other model.
//! The same weights at another path are the same model. Hashes are cached in the index by path, size and
//! modification time, so a search does not re-read hundreds of megabytes of weights.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Result, SearchError};
use crate::store::{Store, StoredModel};

pub(crate) fn file_stat(path: &Path) -> std::io::Result<(u64, i64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.len(), mtime_ns(&meta)))
}

pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

fn hash_file(path: &Path) -> Result<String> {
    let read_error = |source| SearchError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity of `clip` as loaded from `spec`, hashing its files (or taking their hashes from `store`'s
/// cache, and adding new ones to it when `store` is writable).
pub fn model_identity(
    clip: &clip::Clip,
    spec: &str,
    dtype: clip::Precision,
    store: &Store,
    writable: bool,
) -> Result<StoredModel> {
    let mut files: Vec<&Path> = clip.model_files().iter().map(|p| p.as_path()).collect();
    files.sort();
    let mut combined = Sha256::new();
    for file in files {
        let (size, mtime) = file_stat(file).map_err(|source| SearchError::Read {
            path: file.to_path_buf(),
            source,
        })?;
        let hash = match store.cached_file_hash(file, size, mtime)? {
            Some(hash) => hash,
            None => {
                let hash = hash_file(file)?;
                if writable {
                    store.cache_file_hash(file, size, mtime, &hash)?;
                }
                hash
            }
        };
        // Names are left out: the same weights copied elsewhere are the same model.
        combined.update(hash.as_bytes());
    }
    Ok(StoredModel {
        spec: spec.to_string(),
        weights_sha256: hex(&combined.finalize()),
        dtype: dtype.to_string(),
        dim: clip.model().config().projection_dim,
    })
}

/// A short description for error messages.
pub fn describe(model: &StoredModel) -> String {
    format!(
        "model {} ({}, weights sha256 {}…, {} dims)",
        model.spec,
        model.dtype,
        &model.weights_sha256[..model.weights_sha256.len().min(12)],
        model.dim
    )
}

/// Refuses a model other than the one the index was built with.
pub fn check_same_model(store: &Store, stored: &StoredModel, given: &StoredModel) -> Result<()> {
    if stored.weights_sha256 == given.weights_sha256
        && stored.dtype == given.dtype
        && stored.dim == given.dim
    {
        return Ok(());
    }
    Err(SearchError::ModelMismatch {
        path: store.path().to_path_buf(),
        stored: describe(stored),
        given: describe(given),
    })
}
