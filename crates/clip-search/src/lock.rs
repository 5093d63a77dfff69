//! One writer per index: `clip index` holds an exclusive `flock` on `<db>.lock` (the file keeps the holder's
//! pid for the message). The kernel drops the lock when the process dies, however it dies, so a killed run
//! never leaves the index locked. Searches do not lock: SQLite's WAL lets them read during a run.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, SearchError};

pub struct WriterLock {
    _file: std::fs::File,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

impl WriterLock {
    /// Takes the lock; when another process holds it, waits if `wait`, else fails with [`SearchError::Busy`].
    pub fn acquire(db: &Path, wait: bool) -> Result<Self> {
        let path = lock_path(db);
        let write_error = |source| SearchError::Write {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(write_error)?;
        if !try_lock(&file, wait).map_err(write_error)? {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(SearchError::Busy {
                path: db.to_path_buf(),
                pid: pid.trim().to_string(),
            });
        }
        file.set_len(0).map_err(write_error)?;
        file.rewind().map_err(write_error)?;
        write!(file, "{}", std::process::id()).map_err(write_error)?;
        Ok(Self { _file: file })
    }
}

#[cfg(unix)]
fn try_lock(file: &std::fs::File, wait: bool) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let mode = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: the descriptor is open for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), mode) };
        if rc == 0 {
            return Ok(true);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(error),
        }
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &std::fs::File, _wait: bool) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_the_lock_returns_when_dropped() {
        let dir = std::env::temp_dir().join(format!("clip-search-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("photos.db");
        let first = WriterLock::acquire(&db, false).unwrap();
        // flock locks belong to the open file description: a second open in this process conflicts too.
        match WriterLock::acquire(&db, false) {
            Err(SearchError::Busy { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Busy, got {:?}", other.map(|_| ())),
        }
        drop(first);
        assert!(WriterLock::acquire(&db, false).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
