//! Which model a saved classifier belongs to: a readable name and a SHA-256 over the model directory's
//! `config.json` and weight files (`model.safetensors`, its shards, or `pytorch_model.bin`), the files
//! `formats::hf::open_weights` reads. Class embeddings only mean something in the embedding space of the
//! weights that made them, so a classifier is refused by any other model.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::formats::hf::model_files;
use crate::hub::sha256_file;
use crate::Clip;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    /// For people: the Hub id (`org/name`) for a cached model, else the directory name.
    pub name: String,
    /// Hex SHA-256 over the per-file SHA-256s of the model's config and weight files.
    pub sha256: String,
}

impl ModelIdentity {
    /// Hashes the files `clip` was loaded from (reads the weights once: about a second per GB).
    pub fn of(clip: &Clip) -> Result<Self> {
        Self::of_files(clip.model_files(), display_name(clip.source()))
    }

    fn of_files(files: &[PathBuf], name: String) -> Result<Self> {
        let mut digest = Sha256::new();
        for file in files {
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            digest.update(format!("{file_name} {}\n", sha256_file(file)?).as_bytes());
        }
        Ok(Self {
            name,
            sha256: crate::hub::hex(&digest.finalize()),
        })
    }

    pub fn of_dir(dir: &Path) -> Result<Self> {
        Self::of_files(&model_files(dir)?, display_name(dir))
    }
}

/// `org/name` for a Hugging Face cache snapshot (`.../models--org--name/snapshots/<rev>`), else the last path part.
fn display_name(dir: &Path) -> String {
    let parts: Vec<String> = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.len() >= 3 && parts[parts.len() - 2] == "snapshots" {
        if let Some(repo) = parts[parts.len() - 3].strip_prefix("models--") {
            return repo.replacen("--", "/", 1);
        }
    }
    parts
        .iter()
        .rev()
        .find(|p| !p.is_empty() && *p != "." && *p != "/")
        .cloned()
        .unwrap_or_else(|| dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_cache_layout() {
        let dir = Path::new("/cache/models--openai--clip-vit-base-patch32/snapshots/abc123");
        assert_eq!(display_name(dir), "openai/clip-vit-base-patch32");
        assert_eq!(display_name(Path::new("fixtures/models/tiny")), "tiny");
    }
}
