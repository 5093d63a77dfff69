//! The LiT fast path's on-disk cache of image features. With the image tower locked, an image's features never
//! change, so they are computed once and reused by every epoch and every later run on the same model. One
//! append-only file per image tower (named by a hash of its parameters and the preprocessing): a header, then
//! records of a 32-byte key (SHA-256 of the image's path or shard member, size and modification time) and the
//! features. A crash mid-append leaves a partial last record, which is ignored and overwritten; records
//! already written are never lost.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use clip_preprocess::PreprocessConfig;
use sha2::{Digest, Sha256};

use crate::error::{ClipError, Result};
use crate::model::layout::is_image_side;
use crate::model::params::Params;
use crate::train::data::ImageRef;

const MAGIC: &[u8; 8] = b"CLIPFEA1";

pub(crate) type Key = [u8; 32];

pub(crate) struct FeatureCache {
    path: PathBuf,
    dim: usize,
    entries: HashMap<Key, Vec<f32>>,
    file: std::fs::File,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClipError + '_ {
    move |source| ClipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A hash naming an image tower: its parameters (in name order) and the preprocessing that feeds it.
pub(crate) fn tower_key(params: &Params, preprocess: &PreprocessConfig) -> Result<String> {
    let mut digest = Sha256::new();
    for (name, tensor) in params.iter().filter(|(n, _)| is_image_side(n)) {
        digest.update(name.as_bytes());
        digest.update(format!("{:?}", tensor.dims()).as_bytes());
        for v in tensor.flatten_all()?.to_vec1::<f32>()? {
            digest.update(v.to_le_bytes());
        }
    }
    digest.update(
        format!(
            "{} {:?} {:?}",
            preprocess.size, preprocess.mean, preprocess.std
        )
        .as_bytes(),
    );
    Ok(crate::hub::hex(&digest.finalize()))
}

/// The key of an image: where it is, its size and modification time (a replaced file gets a new key).
pub(crate) fn image_key(image: &ImageRef) -> Result<Key> {
    let mut digest = Sha256::new();
    let (path, extra) = match image {
        ImageRef::File(p) => (p.as_path(), String::new()),
        ImageRef::TarMember {
            shard,
            member,
            offset,
            len,
        } => (shard.as_path(), format!("{member} {offset} {len}")),
    };
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    digest.update(absolute.to_string_lossy().as_bytes());
    digest.update(format!("\n{extra}\n{}\n{modified}", meta.len()).as_bytes());
    Ok(digest.finalize().into())
}

impl FeatureCache {
    /// Opens (or creates) the cache of tower `tower_key` with `dim` features in `dir`.
    pub fn open(dir: &Path, tower_key: &str, dim: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(format!(
            "{}.features",
            &tower_key[..32.min(tower_key.len())]
        ));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let header_len = MAGIC.len() + 8;
        let mut entries = HashMap::new();
        let valid_header = bytes.len() >= header_len
            && &bytes[..8] == MAGIC
            && u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default()) == dim as u64;
        let record = 32 + 4 * dim;
        let keep = if valid_header {
            let whole = (bytes.len() - header_len) / record;
            for r in bytes[header_len..header_len + whole * record].chunks_exact(record) {
                let key: Key = r[..32].try_into().unwrap_or_default();
                let values = r[32..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                entries.insert(key, values);
            }
            header_len + whole * record
        } else {
            // A new file (or one of another layout): start it over.
            file.set_len(0).map_err(io(&path))?;
            file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
            file.write_all(MAGIC).map_err(io(&path))?;
            file.write_all(&(dim as u64).to_le_bytes())
                .map_err(io(&path))?;
            header_len
        };
        // Drop a partial last record.
        file.set_len(keep as u64).map_err(io(&path))?;
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        Ok(Self {
            path,
            dim,
            entries,
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &Key) -> Option<&[f32]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Appends records and flushes them to disk.
    pub fn append(&mut self, records: Vec<(Key, Vec<f32>)>) -> Result<()> {
        let mut bytes = Vec::with_capacity(records.len() * (32 + 4 * self.dim));
        for (key, values) in &records {
            if values.len() != self.dim {
                return Err(ClipError::InvalidInput(format!(
                    "feature cache {}: {} features, expected {}",
                    self.path.display(),
                    values.len(),
                    self.dim
                )));
            }
            bytes.extend_from_slice(key);
            bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        }
        let path = self.path.clone();
        self.file.write_all(&bytes).map_err(io(&path))?;
        self.file.sync_data().map_err(io(&path))?;
        self.entries.extend(records);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;

    #[test]
    fn records_survive_reopening_and_a_torn_tail() {
        let dir = temp_dir("feature-cache");
        let mut cache = FeatureCache::open(&dir, "abc", 3).unwrap();
        cache
            .append(vec![
                ([1; 32], vec![1.0, 2.0, 3.0]),
                ([2; 32], vec![4.0, 5.0, 6.0]),
            ])
            .unwrap();
        assert!(cache.append(vec![([3; 32], vec![1.0])]).is_err());
        let path = cache.path().to_path_buf();
        drop(cache);
        // A crash in the middle of a third record.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[9; 20]);
        std::fs::write(&path, &bytes).unwrap();
        let mut cache = FeatureCache::open(&dir, "abc", 3).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&[2; 32]).unwrap(), [4.0, 5.0, 6.0]);
        cache.append(vec![([3; 32], vec![7.0, 8.0, 9.0])]).unwrap();
        drop(cache);
        let cache = FeatureCache::open(&dir, "abc", 3).unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&[3; 32]).unwrap(), [7.0, 8.0, 9.0]);
    }

    #[test]
    fn keys_follow_the_file() {
        let dir = temp_dir("feature-key");
        let path = dir.join("a.jpg");
        std::fs::write(&path, b"one").unwrap();
        let a = image_key(&ImageRef::File(path.clone())).unwrap();
        assert_eq!(a, image_key(&ImageRef::File(path.clone())).unwrap());
        std::fs::write(&path, b"other").unwrap();
        assert_ne!(a, image_key(&ImageRef::File(path)).unwrap());
    }
}
