//! OpenAI's released CLIP models by name, mirroring clip-anytorch's `clip.available_models()`, `_download` and
//! `load(name_or_path)`: the nine names map to published URLs whose path holds the file's SHA-256; files are
//! cached in `~/.cache/clip` (or `$CLIP_CACHE_DIR`, or an explicit directory), verified, re-downloaded when the
//! cached file does not match, and reused without network when it does.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use serde::Deserialize;

use crate::checkpoint::openai::load_openai_file;
use crate::error::{ClipError, Result};
use crate::hub::{self, HubOptions};
use crate::model::ClipModel;
use crate::model::Precision;
use crate::preprocess::PreprocessConfig;

/// One released model (a row of `configs/openai_models.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OpenAiModel {
    /// The name `clip.load` takes (`"ViT-B/32"`).
    pub name: String,
    pub url: String,
    /// Hex SHA-256 of the file (the second-to-last path component of `url`).
    pub sha256: String,
    /// File name in the cache directory (`ViT-B-32.pt`).
    pub file_name: String,
    /// Input resolution in pixels.
    pub image_size: u32,
    /// The open_clip architecture with the same shapes (QuickGELU twin).
    pub open_clip_config: String,
}

fn registry() -> &'static [OpenAiModel] {
    static REGISTRY: OnceLock<Vec<OpenAiModel>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        // Embedded data checked by this module's tests: a parse failure is a build defect, not user input.
        serde_json::from_str(include_str!("../../configs/openai_models.json")).unwrap_or_default()
    })
}

/// The names of the released models, in clip-anytorch's order.
pub fn available_models() -> Vec<&'static str> {
    registry().iter().map(|m| m.name.as_str()).collect()
}

/// The registry entry for `name`, if it is one of [`available_models`].
pub fn openai_model(name: &str) -> Option<&'static OpenAiModel> {
    registry().iter().find(|m| m.name == name)
}

/// `$CLIP_CACHE_DIR`, else `~/.cache/clip` (clip-anytorch's default download root).
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLIP_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    hub::home_dir().join(".cache").join("clip")
}

fn cache_dir(options: &HubOptions) -> PathBuf {
    options.cache_dir.clone().unwrap_or_else(default_cache_dir)
}

fn offline(options: &HubOptions) -> bool {
    options.offline
        || std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

impl OpenAiModel {
    /// Where the file lives (or would live) in the cache.
    pub fn cache_path(&self, options: &HubOptions) -> PathBuf {
        cache_dir(options).join(&self.file_name)
    }

    /// The cached file's size in bytes, if present (not verified: hashing a large file takes seconds).
    pub fn cached_size(&self, options: &HubOptions) -> Option<u64> {
        std::fs::metadata(self.cache_path(options))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }
}

fn unknown(name: &str) -> ClipError {
    ClipError::InvalidInput(format!(
        "unknown model {name:?}: not a file, and not one of {}",
        available_models().join(", ")
    ))
}

/// Returns the verified cached file of model `name`, downloading it (to a temporary file, checked against the
/// SHA-256 in its URL, then renamed) when missing or when the cached file's hash does not match. Offline, a
/// missing or mismatching file is an error.
pub fn download_openai(name: &str, options: &HubOptions) -> Result<PathBuf> {
    let model = openai_model(name).ok_or_else(|| unknown(name))?;
    let path = model.cache_path(options);
    if path.is_file() {
        if hub::sha256_file(&path)?.eq_ignore_ascii_case(&model.sha256) {
            return Ok(path);
        }
        if offline(options) {
            return Err(ClipError::Download {
                url: model.url.clone(),
                reason: format!(
                    "{} does not match its SHA-256 and downloads are disabled (offline)",
                    path.display()
                ),
            });
        }
    } else if offline(options) {
        return Err(ClipError::Download {
            url: model.url.clone(),
            reason: format!(
                "{} is not cached and downloads are disabled (offline)",
                path.display()
            ),
        });
    }
    // On a mismatch the old file stays in place until the verified download replaces it.
    hub::download(
        &model.url,
        &path,
        Some(&model.sha256),
        options.progress.as_deref(),
    )?;
    Ok(path)
}

/// `clip.load(name_or_path)`: one of [`available_models`] (downloaded and cached as [`download_openai`] does;
/// `options.cache_dir` is the directory holding the `.pt` files) or a path to an OpenAI `.pt` file (TorchScript
/// archive or state dict). Returns the model (architecture
/// inferred from the weights) and its preprocessing: the model's input resolution with OpenAI's mean and std.
pub fn load_openai(
    path_or_name: &str,
    options: &HubOptions,
    device: &Device,
    precision: Precision,
) -> Result<(ClipModel, PreprocessConfig)> {
    let path = Path::new(path_or_name);
    // Names first, as clip.load checks `_MODELS` before the file system.
    let file = if openai_model(path_or_name).is_some() {
        download_openai(path_or_name, options)?
    } else if path.is_file() {
        path.to_path_buf()
    } else {
        return Err(unknown(path_or_name));
    };
    let ckpt = load_openai_file(&file, device, precision)?;
    let size = ckpt.arch.vision.image_size() as u32;
    Ok((
        ckpt.model,
        PreprocessConfig {
            size,
            ..PreprocessConfig::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_models_with_hashes_from_their_urls() {
        let names = available_models();
        assert_eq!(
            names,
            [
                "RN50",
                "RN101",
                "RN50x4",
                "RN50x16",
                "RN50x64",
                "ViT-B/32",
                "ViT-B/16",
                "ViT-L/14",
                "ViT-L/14@336px"
            ]
        );
        for m in registry() {
            assert!(
                m.url.contains(&format!("/{}/{}", m.sha256, m.file_name)),
                "{m:?}"
            );
            assert_eq!(m.sha256.len(), 64);
        }
        let sizes: Vec<u32> = registry().iter().map(|m| m.image_size).collect();
        assert_eq!(sizes, [224, 224, 288, 384, 448, 224, 224, 224, 336]);
    }

    #[test]
    fn unknown_name_is_one_line() {
        let err = load_openai(
            "ViT-Q/99",
            &HubOptions::default(),
            &Device::Cpu,
            Precision::F32,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("ViT-Q/99") && msg.contains("ViT-B/32"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clip-openai-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

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
        // hub::copy_verified is the step download() ends with: a local reader stands in for the network.
        let dir = temp_dir("hash");
        let dest = dir.join("RN50.pt");
        let model = openai_model("RN50").unwrap();
        let mut data: &[u8] = b"some bytes that are not RN50";
        let err = hub::copy_verified(
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
}
