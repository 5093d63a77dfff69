//! Model files from the Hugging Face Hub, cached in the standard Hugging Face layout
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`:
//! `models--org--name/{refs/main, snapshots/<commit>/<file>, .no_exist/<commit>/<file>}`), so a model fetched
//! once is reused offline and shared with the Python tools. Downloads go to a temporary file that is renamed
//! into place only when complete (and, where a SHA-256 is known, verified): the cache never holds a partial file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{ClipError, Result};

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
    fn is_offline(&self) -> bool {
        self.offline
            || std::env::var("HF_HUB_OFFLINE")
                .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }
}

/// The standard Hugging Face cache root.
pub fn default_cache_dir() -> PathBuf {
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

/// Whether a wanted file must exist in the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
}

/// A Hub model repository at one revision, cached locally.
pub struct HubRepo {
    repo_id: String,
    revision: String,
    repo_dir: PathBuf,
    options: HubOptions,
}

impl HubRepo {
    pub fn new(repo_id: &str, options: &HubOptions) -> Result<Self> {
        if !is_repo_id(repo_id) {
            return Err(ClipError::UnknownModel(repo_id.to_string()));
        }
        let root = options.cache_dir.clone().unwrap_or_else(default_cache_dir);
        Ok(Self {
            repo_id: repo_id.to_string(),
            revision: "main".into(),
            repo_dir: root.join(format!("models--{}", repo_id.replace('/', "--"))),
            options: options.clone(),
        })
    }

    /// Makes sure every file in `wanted` is present (or known absent, for optional ones) in one snapshot and
    /// returns that snapshot's directory. Uses the cache alone when it already has everything.
    pub fn snapshot(&self, wanted: &[(&str, Need)]) -> Result<PathBuf> {
        if let Some(commit) = self.cached_commit() {
            if wanted
                .iter()
                .all(|(file, _)| self.is_settled(&commit, file))
            {
                return self.check_required(&commit, wanted);
            }
        }
        if self.options.is_offline() {
            return Err(self.offline_error(wanted));
        }
        let commit = self.remote_commit()?;
        for (file, _) in wanted {
            if !self.is_settled(&commit, file) {
                self.fetch(&commit, file)?;
            }
        }
        write_atomically(
            &self.repo_dir.join("refs").join(&self.revision),
            commit.as_bytes(),
        )?;
        self.check_required(&commit, wanted)
    }

    /// The first of `candidates` present in the repository (used for alternative weight files).
    pub fn first_present(&self, snapshot: &Path, candidates: &[&str]) -> Option<PathBuf> {
        candidates
            .iter()
            .map(|c| snapshot.join(c))
            .find(|p| p.is_file())
    }

    fn cached_commit(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.repo_dir.join("refs").join(&self.revision)).ok()?;
        let commit = text.trim().to_string();
        (!commit.is_empty() && self.snapshot_dir(&commit).is_dir()).then_some(commit)
    }

    fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.repo_dir.join("snapshots").join(commit)
    }

    fn no_exist_marker(&self, commit: &str, file: &str) -> PathBuf {
        self.repo_dir.join(".no_exist").join(commit).join(file)
    }

    /// Present, or recorded as absent upstream.
    fn is_settled(&self, commit: &str, file: &str) -> bool {
        self.snapshot_dir(commit).join(file).is_file()
            || self.no_exist_marker(commit, file).exists()
    }

    fn check_required(&self, commit: &str, wanted: &[(&str, Need)]) -> Result<PathBuf> {
        let dir = self.snapshot_dir(commit);
        for (file, need) in wanted {
            if *need == Need::Required && !dir.join(file).is_file() {
                return Err(ClipError::Download {
                    url: self.file_url(file),
                    reason: format!("{} has no {file}", self.repo_id),
                });
            }
        }
        Ok(dir)
    }

    fn offline_error(&self, wanted: &[(&str, Need)]) -> ClipError {
        let names: Vec<&str> = wanted.iter().map(|(f, _)| *f).collect();
        ClipError::Download {
            url: self.file_url(names.first().copied().unwrap_or("")),
            reason: format!(
                "offline mode and {} is not fully cached under {} (needs {})",
                self.repo_id,
                self.repo_dir.display(),
                names.join(", ")
            ),
        }
    }

    fn endpoint() -> String {
        std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into())
    }

    fn file_url(&self, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{file}",
            Self::endpoint(),
            self.repo_id,
            self.revision
        )
    }

    fn remote_commit(&self) -> Result<String> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            Self::endpoint(),
            self.repo_id,
            self.revision
        );
        let body = match get(&url) {
            Ok(mut response) => response
                .body_mut()
                .read_to_string()
                .map_err(|e| download_error(&url, e))?,
            Err(ureq::Error::StatusCode(401 | 404)) => {
                return Err(ClipError::Download {
                    url,
                    reason: format!(
                        "model {} not found on the Hugging Face Hub (private models need HF_TOKEN)",
                        self.repo_id
                    ),
                })
            }
            Err(e) => return Err(download_error(&url, e)),
        };
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| download_error(&url, e))?;
        json.get("sha")
            .and_then(|v| v.as_str())
            .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric()) && !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ClipError::Download {
                url,
                reason: "the Hub's answer has no commit hash".into(),
            })
    }

    fn fetch(&self, commit: &str, file: &str) -> Result<()> {
        let url = format!(
            "{}/{}/resolve/{commit}/{file}",
            Self::endpoint(),
            self.repo_id
        );
        let dest = self.snapshot_dir(commit).join(file);
        match download(&url, &dest, None, self.options.progress.as_deref()) {
            Err(ClipError::Download { reason, .. }) if reason == NOT_FOUND => {
                write_atomically(&self.no_exist_marker(commit, file), b"")
            }
            other => other,
        }
    }
}

const NOT_FOUND: &str = "404 not found";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn get(url: &str) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut request = agent().get(url).header("User-Agent", "clip-rs");
    if let Ok(token) = std::env::var("HF_TOKEN") {
        if url.starts_with(&HubRepo::endpoint()) {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
    }
    request.call()
}

fn download_error(url: &str, error: impl std::fmt::Display) -> ClipError {
    ClipError::Download {
        url: url.to_string(),
        reason: error.to_string(),
    }
}

/// Downloads `url` to `dest` through `dest.incomplete`, verifying the SHA-256 (hex) when one is given; on any
/// failure the temporary file is removed and `dest` is untouched. A 404 is reported with the reason "404 not found".
pub fn download(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    progress: Option<&dyn Progress>,
) -> Result<()> {
    let mut response = match get(url) {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(404)) => return Err(download_error(url, NOT_FOUND)),
        Err(e) => return Err(download_error(url, e)),
    };
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut reader = response.body_mut().as_reader();
    let label = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(p) = progress {
        p.begin(&label, total);
    }
    let result = copy_verified(&mut reader, dest, total, sha256, progress, url);
    if let Some(p) = progress {
        p.end();
    }
    result
}

/// Streams `reader` into `dest` via a temporary sibling file; checks length and hash before the rename.
pub fn copy_verified(
    reader: &mut dyn Read,
    dest: &Path,
    expected_len: Option<u64>,
    sha256: Option<&str>,
    progress: Option<&dyn Progress>,
    origin: &str,
) -> Result<()> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClipError::Io { path, source }
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = incomplete_path(dest);
    let outcome = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            let n = reader
                .read(&mut buffer)
                .map_err(|e| download_error(origin, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n]).map_err(io_err(&tmp))?;
            written += n as u64;
            if let Some(p) = progress {
                p.advance(n as u64);
            }
        }
        file.sync_all().map_err(io_err(&tmp))?;
        if let Some(len) = expected_len {
            if written != len {
                return Err(download_error(
                    origin,
                    format!("truncated: got {written} of {len} bytes"),
                ));
            }
        }
        if let Some(expected) = sha256 {
            let actual = hex(&hasher.finalize());
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(download_error(
                    origin,
                    format!("SHA-256 mismatch: expected {expected}, got {actual}"),
                ));
            }
        }
        std::fs::rename(&tmp, dest).map_err(io_err(dest))
    })();
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    outcome
}

fn incomplete_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".incomplete");
    dest.with_file_name(name)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file, hex-encoded.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|source| ClipError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| ClipError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hex(&hasher.finalize()))
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    copy_verified(
        &mut &contents[..],
        path,
        Some(contents.len() as u64),
        None,
        None,
        &path.display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clip-hub-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn repo_ids_are_recognised() {
        assert!(is_repo_id("openai/clip-vit-base-patch32"));
        assert!(is_repo_id("laion/CLIP-ViT-H-14-laion2B-s32B-b79K"));
        assert!(!is_repo_id("ViT-B/32/x"));
        assert!(!is_repo_id("./model"));
        assert!(!is_repo_id("model"));
        assert!(!is_repo_id("/abs/path"));
    }

    #[test]
    fn verified_copy_checks_hash_and_length_and_leaves_nothing_on_failure() {
        let dir = temp_dir("copy");
        let dest = dir.join("weights.bin");
        let data = b"hello clip".to_vec();
        // sha256(b"hello clip") from Python's hashlib.
        let actual = "d73947db74bb84252f67c60f87e0cc79d726d6874f9dbf76164bbd0da0ebf232";
        let wrong = "00".repeat(32);
        let bad = copy_verified(&mut &data[..], &dest, None, Some(&wrong), None, "test");
        assert!(bad.unwrap_err().to_string().contains("SHA-256 mismatch"));
        assert!(!dest.exists());
        assert!(!incomplete_path(&dest).exists());
        let short = copy_verified(&mut &data[..], &dest, Some(100), None, None, "test");
        assert!(short.unwrap_err().to_string().contains("truncated"));
        assert!(!dest.exists() && !incomplete_path(&dest).exists());
        copy_verified(
            &mut &data[..],
            &dest,
            Some(data.len() as u64),
            Some(actual),
            None,
            "t",
        )
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(sha256_file(&dest).unwrap(), actual);
    }

    #[test]
    fn offline_snapshot_uses_cache_and_reports_missing_files() {
        let root = temp_dir("offline");
        let options = HubOptions {
            cache_dir: Some(root.clone()),
            offline: true,
            progress: None,
        };
        let repo = HubRepo::new("org/model", &options).unwrap();
        let wanted = [
            ("config.json", Need::Required),
            ("vocab.json", Need::Optional),
        ];
        let err = repo.snapshot(&wanted).unwrap_err().to_string();
        assert!(
            err.contains("offline") && err.contains("org/model"),
            "{err}"
        );

        let repo_dir = root.join("models--org--model");
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), "abc123").unwrap();
        let snap = repo_dir.join("snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        // vocab.json is neither cached nor known absent: still not settled offline.
        assert!(repo.snapshot(&wanted).is_err());
        std::fs::create_dir_all(repo_dir.join(".no_exist/abc123")).unwrap();
        std::fs::write(repo_dir.join(".no_exist/abc123/vocab.json"), "").unwrap();
        assert_eq!(repo.snapshot(&wanted).unwrap(), snap);
    }
}
