//! Downloads and verified copies: a file is streamed to a temporary sibling, its length and SHA-256 checked,
//! then renamed into place, so the cache never holds a partial or wrong file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{endpoint, Progress};
use crate::error::{ClipError, Result};

pub(crate) const NOT_FOUND: &str = "404 not found";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(300)))
        .build()
        .into()
}

pub(crate) fn get(url: &str) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut request = agent().get(url).header("User-Agent", "clip-rs");
    if let Ok(token) = std::env::var("HF_TOKEN") {
        if url.starts_with(&endpoint()) {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
    }
    request.call()
}

pub(crate) fn download_error(url: &str, error: impl std::fmt::Display) -> ClipError {
    ClipError::Download {
        url: url.to_string(),
        reason: error.to_string(),
    }
}

/// Downloads `url` to `dest` through `dest.incomplete`, verifying the SHA-256 (hex) when one is given; on any
/// failure the temporary file is removed and `dest` is untouched. A 404 is reported with the reason "404 not found".
pub(crate) fn download(
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
pub(crate) fn copy_verified(
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
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
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

pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
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
    use crate::test_util::temp_dir;

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
}
