//! Downloading models: files of Hugging Face Hub repositories into the standard Hugging Face cache
//! ([`repo`]), and OpenAI's released `.pt` files into `~/.cache/clip` ([`openai`]); both verified, written
//! through a temporary file renamed into place only when complete ([`download`]), and reused offline.

mod download;
pub(crate) mod openai;
pub(crate) mod repo;

pub use repo::{HubRepo, Need};

use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use download::{hex, sha256_file};
pub use openai::clip_cache_dir;

/// Reports download progress (the CLI draws a progress bar; the library stays silent by default).
pub trait Progress: Send + Sync {
    fn begin(&self, label: &str, total_bytes: Option<u64>);
    fn advance(&self, bytes: u64);
    fn end(&self);
}

/// Where and how to fetch model files.
#[derive(Clone, Default)]
pub struct HubOptions {
    /// Overrides the cache root (default: the standard Hugging Face cache).
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network; `HF_HUB_OFFLINE=1` has the same effect.
    pub offline: bool,
    pub progress: Option<Arc<dyn Progress>>,
}

impl HubOptions {
    /// Offline when asked, or when `HF_HUB_OFFLINE` is `1` / `true` (for OpenAI's files too).
    pub(crate) fn is_offline(&self) -> bool {
        self.offline
            || std::env::var("HF_HUB_OFFLINE")
                .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }
}

/// The standard Hugging Face cache root.
pub fn hf_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    home_dir().join(".cache").join("huggingface").join("hub")
}

pub(crate) fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Hub's address (`$HF_ENDPOINT`, else huggingface.co).
pub(crate) fn endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into())
}

/// True for strings shaped like a Hub repository id (`org/name`).
pub fn is_repo_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let valid = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(org), Some(name), None) if valid(org) && valid(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_recognised() {
        assert!(is_repo_id("openai/clip-vit-base-patch32"));
        assert!(is_repo_id("laion/CLIP-ViT-H-14-laion2B-s32B-b79K"));
        assert!(!is_repo_id("ViT-B/32/x"));
        assert!(!is_repo_id("./model"));
        assert!(!is_repo_id("model"));
        assert!(!is_repo_id("/abs/path"));
    }
}
