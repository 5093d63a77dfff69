//! OpenAI's released `.pt` files, cached as clip-anytorch's `_download` caches them: in `~/.cache/clip` (or
//! `$CLIP_CACHE_DIR`, or `HubOptions::cache_dir`), verified against the SHA-256 in their URL, re-downloaded when
//! the cached file does not match, and reused without network when it does.

use std::path::PathBuf;

use super::download::{download, sha256_file};
use super::{home_dir, HubOptions};
use crate::error::{ClipError, Result};
use crate::registry::{available_models, openai_model, OpenAiModel};

/// `$CLIP_CACHE_DIR`, else `~/.cache/clip` (clip-anytorch's default download root).
pub fn clip_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLIP_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    home_dir().join(".cache").join("clip")
}

impl OpenAiModel {
    /// Where the file lives (or would live) in the cache.
    pub fn cache_path(&self, options: &HubOptions) -> PathBuf {
        options
            .cache_dir
            .clone()
            .unwrap_or_else(clip_cache_dir)
            .join(&self.file_name)
    }

    /// The cached file's size in bytes, if present (not verified: hashing a large file takes seconds).
    pub fn cached_size(&self, options: &HubOptions) -> Option<u64> {
        std::fs::metadata(self.cache_path(options))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }
}

/// The error for a name that is none of the released models.
pub(crate) fn unknown(name: &str) -> ClipError {
    ClipError::InvalidInput(format!(
        "unknown model {name:?}: not a file, and not one of {}",
        available_models().join(", ")
    ))
}

/// Returns the verified cached file of model `name`, downloading it (to a temporary file, checked against the
/// SHA-256 in its URL, then renamed) when missing or when the cached file's hash does not match. Offline, a
/// missing or mismatching file is an error.
pub(crate) fn download_openai(name: &str, options: &HubOptions) -> Result<PathBuf> {
    let model = openai_model(name).ok_or_else(|| unknown(name))?;
    let path = model.cache_path(options);
    if path.is_file() {
        if sha256_file(&path)?.eq_ignore_ascii_case(&model.sha256) {
            return Ok(path);
        }
        if options.is_offline() {
            return Err(ClipError::Download {
                url: model.url.clone(),
                reason: format!(
                    "{} does not match its SHA-256 and downloads are disabled (offline)",
                    path.display()
                ),
            });
        }
    } else if options.is_offline() {
        return Err(ClipError::Download {
            url: model.url.clone(),
            reason: format!(
                "{} is not cached and downloads are disabled (offline)",
                path.display()
            ),
        });
    }
    // On a mismatch the old file stays in place until the verified download replaces it.
    download(
        &model.url,
        &path,
        Some(&model.sha256),
        options.progress.as_deref(),
    )?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::super::download::copy_verified;
    use super::*;
    use crate::test_util::temp_dir;

    #[test]
    fn offline_uses_a_verified_cache_and_rejects_a_wrong_hash() {
        let dir = temp_dir("offline");
        let options = HubOptions {
            cache_dir: Some(dir.clone()),
            offline: true,
            progress: None,
        };
        let model = openai_model("RN50").unwrap();
        // Nothing cached: offline is an error, and nothing is written.
        let err = download_openai("RN50", &options).unwrap_err().to_string();
        assert!(err.contains("not cached"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        // A cached file with the wrong content is reported, not used.
        std::fs::write(model.cache_path(&options), b"not the model").unwrap();
        let err = download_openai("RN50", &options).unwrap_err().to_string();
        assert!(err.contains("SHA-256") && !err.contains('\n'), "{err}");
        assert_eq!(model.cached_size(&options), Some(13));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn wrong_hash_download_leaves_nothing_behind() {
        // copy_verified is the step download() ends with: a local reader stands in for the network.
        let dir = temp_dir("hash");
        let dest = dir.join("RN50.pt");
        let model = openai_model("RN50").unwrap();
        let mut data: &[u8] = b"some bytes that are not RN50";
        let err = copy_verified(
            &mut data,
            &dest,
            None,
            Some(&model.sha256),
            None,
            &model.url,
        )
        .unwrap_err();
        assert!(matches!(err, ClipError::Download { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no partial file left"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_name_is_one_line() {
        let msg = unknown("ViT-Q/99").to_string();
        assert!(
            msg.contains("ViT-Q/99") && msg.contains("ViT-B/32"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }
}
