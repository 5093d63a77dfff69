//! Opening `.safetensors` checkpoints, memory-mapped, alone or as the shards a `model.safetensors.index.json`
//! names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use serde_json::Value;

use crate::error::{ClipError, Result};
use crate::kernels::Precision;
use crate::weights::store::{candle_reason, check_readable, TensorStore};

/// Memory-maps one or more `.safetensors` files (shards of one checkpoint). Errors name `paths[0]`.
pub(crate) fn open(paths: &[PathBuf], precision: Precision) -> Result<TensorStore> {
    let Some(first) = paths.first() else {
        return Err(ClipError::Checkpoint {
            path: PathBuf::new(),
            reason: "no safetensors file given".into(),
        });
    };
    for p in paths {
        check_readable(p)?;
    }
    // SAFETY: the map is read-only; like every mmap-based loader (candle, safetensors, transformers) we rely on
    // the file not being truncated or rewritten by another process while the model loads. The data is copied
    // out of the map before the store is dropped, so the model never aliases the file.
    let st = unsafe { MmapedSafetensors::multi(paths) }.map_err(|e| ClipError::Checkpoint {
        path: first.clone(),
        reason: candle_reason(&e),
    })?;
    Ok(TensorStore::from_safetensors(first.clone(), st, precision))
}

/// The shard files named by a safetensors index's `weight_map`, each once, in a stable order. Shards live beside
/// the index: a name that would leave its directory is refused.
pub(crate) fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let value = crate::json::read_json(index).map_err(|e| match e {
        ClipError::Config { path, reason } => ClipError::Checkpoint { path, reason },
        other => other,
    })?;
    let bad = |reason: &str| ClipError::Checkpoint {
        path: index.to_path_buf(),
        reason: reason.to_string(),
    };
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no weight_map object"))?;
    let mut files = BTreeSet::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| bad("weight_map values must be file names"))?;
        if file.contains('/') || file.contains('\\') || file == ".." || file.is_empty() {
            return Err(bad(&format!(
                "shard name {file:?} is not a plain file name"
            )));
        }
        files.insert(file.to_string());
    }
    let dir = index.parent().unwrap_or(Path::new("."));
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}
