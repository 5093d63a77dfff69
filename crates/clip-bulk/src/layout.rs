//! The output folder: clip-retrieval's `img_emb/`, `text_emb/` and `metadata/`, plus `done/{i}.json`, the
//! marker that commits partition `i` (written last: a partition without its marker is redone by the next run).
//! Every file appears whole or not at all (written beside and renamed); the marker holds nothing that varies
//! between runs, so sharded runs and one unsharded run produce the same files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{BulkError, Result};

/// A committed partition: where it came from, what it holds and the settings it was written with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub input: String,
    pub samples: usize,
    pub failed: usize,
    /// Why the input stopped being readable before its end, when it did.
    pub damaged: Option<String>,
    pub model: String,
    pub dtype: String,
    pub dim: usize,
    pub text: bool,
    pub float16: bool,
}

impl Marker {
    /// Whether partitions written with `self`'s settings and `other`'s can share a folder.
    fn settings_conflict(&self, other: &Marker) -> Option<String> {
        let mine = (&self.dtype, self.dim, self.text, self.float16);
        let theirs = (&other.dtype, other.dim, other.text, other.float16);
        (mine != theirs).then(|| {
            format!(
                "dtype {}, dim {}, text {}, float16 {}",
                other.dtype, other.dim, other.text, other.float16
            )
        })
    }
}

pub struct Layout {
    pub root: PathBuf,
    /// Digits of partition numbers.
    pub width: usize,
}

impl Layout {
    /// The folders of an output tree rooted at `root` (created when missing).
    pub fn create(root: &Path, width: usize, text: bool) -> Result<Self> {
        let layout = Self {
            root: root.to_path_buf(),
            width,
        };
        let mut folders = vec!["img_emb", "metadata", "done"];
        if text {
            folders.push("text_emb");
        }
        for folder in folders {
            let path = root.join(folder);
            std::fs::create_dir_all(&path).map_err(|e| BulkError::Output {
                path: path.clone(),
                reason: format!("cannot create the folder: {e}"),
            })?;
        }
        Ok(layout)
    }

    fn number(&self, index: usize) -> String {
        format!("{index:0width$}", width = self.width)
    }

    pub fn image_embeddings(&self, index: usize) -> PathBuf {
        self.root
            .join(format!("img_emb/img_emb_{}.npy", self.number(index)))
    }

    pub fn text_embeddings(&self, index: usize) -> PathBuf {
        self.root
            .join(format!("text_emb/text_emb_{}.npy", self.number(index)))
    }

    pub fn metadata(&self, index: usize) -> PathBuf {
        self.root
            .join(format!("metadata/metadata_{}.parquet", self.number(index)))
    }

    pub fn marker(&self, index: usize) -> PathBuf {
        self.root.join(format!("done/{}.json", self.number(index)))
    }

    /// The committed marker of partition `index`, if any. An unreadable marker counts as absent (the partition
    /// is redone).
    pub fn committed(&self, index: usize) -> Option<Marker> {
        let bytes = std::fs::read(self.marker(index)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The partitions among `indices` already committed, each marker read once. Refuses to mix partitions of
    /// other settings (another dtype, dimension, text or float16 choice) into the folder: their rows would not
    /// be comparable.
    pub fn committed_compatible(
        &self,
        indices: impl Iterator<Item = usize>,
        planned: &Marker,
    ) -> Result<std::collections::HashSet<usize>> {
        let mut committed = std::collections::HashSet::new();
        for index in indices {
            if let Some(existing) = self.committed(index) {
                committed.insert(index);
                if let Some(theirs) = existing.settings_conflict(planned) {
                    return Err(BulkError::Conflict(format!(
                        "{} holds partitions written with {theirs}; this run has dtype {}, dim {}, text {}, \
                         float16 {}: use another --output-dir",
                        self.root.display(),
                        planned.dtype,
                        planned.dim,
                        planned.text,
                        planned.float16
                    )));
                }
            }
        }
        Ok(committed)
    }

    /// Removes the temporary files a killed writer of partition `index` left (hidden `.{name}.*.partial`).
    pub fn remove_leftovers(&self, index: usize) {
        for target in [
            self.image_embeddings(index),
            self.text_embeddings(index),
            self.metadata(index),
            self.marker(index),
        ] {
            let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
                continue;
            };
            let prefix = format!(".{}.", name.to_string_lossy());
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if file.starts_with(&prefix) && file.ends_with(".partial") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}
