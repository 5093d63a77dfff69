//! Model files from the Hugging Face Hub, cached in the standard Hugging Face layout
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`:
//! `models--org--name/{refs/main, snapshots/<commit>/<file>, .no_exist/<commit>/<file>}`), so a model fetched
//! once is reused offline and shared with the Python tools.

use std::path::PathBuf;

use super::download::{download, download_error, get, write_atomically, NOT_FOUND};
use super::{endpoint, hf_cache_dir, is_repo_id, HubOptions};
use crate::error::{ClipError, Result};

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
        let root = options.cache_dir.clone().unwrap_or_else(hf_cache_dir);
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

    fn file_url(&self, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{file}",
            endpoint(),
            self.repo_id,
            self.revision
        )
    }

    fn remote_commit(&self) -> Result<String> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            endpoint(),
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
        let url = format!("{}/{}/resolve/{commit}/{file}", endpoint(), self.repo_id);
        let dest = self.snapshot_dir(commit).join(file);
        match download(&url, &dest, None, self.options.progress.as_deref()) {
            Err(ClipError::Download { reason, .. }) if reason == NOT_FOUND => {
                write_atomically(&self.no_exist_marker(commit, file), b"")
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;

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
