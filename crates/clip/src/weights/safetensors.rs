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

/// One tensor to write: name, shape, row-major f32 values.
pub(crate) type F32Entry<'a> = (&'a str, &'a [usize], &'a [f32]);

/// Writes f32 tensors as a `.safetensors` file (header, then the data in the order given), atomically: the file
/// appears complete or not at all. The header carries `{"format": "pt"}`, which transformers expects.
pub(crate) fn write_f32(path: &Path, tensors: &[F32Entry]) -> Result<()> {
    use std::io::Write;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, shape, values) in tensors {
        let count: usize = shape.iter().product();
        if count != values.len() {
            return Err(ClipError::InvalidInput(format!(
                "tensor {name}: shape {shape:?} holds {count} values, {} given",
                values.len()
            )));
        }
        let end = offset + 4 * values.len();
        header.insert(
            (*name).to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::to_string(&Value::Object(header))
        .map_err(|e| ClipError::InvalidInput(format!("safetensors header: {e}")))?;
    // Readers map the data after the header; padding keeps it 8-byte aligned (as the safetensors library does).
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let write_err = |source| {
        ClipError::File(clip_io::FileError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut out = clip_io::OutputFile::create(path)?;
    out.write_all(&(text.len() as u64).to_le_bytes())
        .and_then(|()| out.write_all(text.as_bytes()))
        .map_err(write_err)?;
    for (_, _, values) in tensors {
        for chunk in values.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            out.write_all(&bytes).map_err(write_err)?;
        }
    }
    out.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;

    #[test]
    fn written_files_read_back() {
        let dir = temp_dir("st-write");
        let path = dir.join("t.safetensors");
        let a = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0];
        let b = [42.0f32];
        write_f32(&path, &[("a.weight", &[2, 3], &a), ("scale", &[], &b)]).unwrap();
        let store = open(std::slice::from_ref(&path), Precision::F32).unwrap();
        let t = store.take("a.weight", &[2, 3]).unwrap();
        assert_eq!(
            t.to_vec2::<f32>().unwrap(),
            [[1.5, -2.0, 3.25], [0.0, 7.0, 8.0]]
        );
        assert_eq!(
            store
                .take("scale", &[])
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            42.0
        );
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        assert!(std::str::from_utf8(&bytes[8..8 + n])
            .unwrap()
            .contains("\"format\":\"pt\""));
        assert!(write_f32(&path, &[("bad", &[4], &b)]).is_err());
    }
}
