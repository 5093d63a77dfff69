//! Output files. A regular-file target (or a new one) is replaced atomically: the data goes to a temporary
//! file beside it, is flushed to disk, and is renamed over the target, so a failure never leaves a partial
//! file and a reader never sees one. Symlinks are followed to their final target, which is what is replaced.
//! A device, FIFO or other special file is opened and written in place, as a shell's `>` does: it is never
//! replaced by a regular file (as root, replacing `/dev/null` breaks the machine).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::FileError;

/// Symlink hops followed before giving up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// An output being written; [`OutputFile::commit`] makes it visible. Dropped without a commit, a temporary
/// file is removed and the target is left as it was.
pub struct OutputFile {
    /// What the user named (for messages).
    path: PathBuf,
    writer: BufWriter<File>,
    mode: Mode,
}

enum Mode {
    /// Temporary file renamed over `target` on commit.
    Replace { temp: PathBuf, target: PathBuf },
    /// A special file written in place.
    InPlace,
}

impl OutputFile {
    /// Opens `path` for writing (following symlinks). Refuses a directory and paths in missing directories.
    pub fn create(path: &Path) -> Result<OutputFile, FileError> {
        let (target, existing) = resolve(path)?;
        let write_err = |source| FileError::Write {
            path: path.to_path_buf(),
            source,
        };
        match existing {
            Some(meta) if meta.is_dir() => Err(FileError::BadOutput {
                path: path.to_path_buf(),
                reason: "it is a directory".into(),
            }),
            Some(meta) if !meta.is_file() => {
                // Devices and FIFOs: written directly. Opening a FIFO waits for a reader, as a shell does.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(write_err)?;
                Ok(OutputFile {
                    path: path.to_path_buf(),
                    writer: BufWriter::new(file),
                    mode: Mode::InPlace,
                })
            }
            existing => {
                let temp = temp_path(&target);
                let file = create_new(&temp, existing.as_ref()).map_err(write_err)?;
                Ok(OutputFile {
                    path: path.to_path_buf(),
                    writer: BufWriter::new(file),
                    mode: Mode::Replace { temp, target },
                })
            }
        }
    }

    /// The path as the caller gave it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes everything and makes the output visible: to disk and renamed over the target for regular
    /// files; flushed for special files.
    pub fn commit(mut self) -> Result<(), FileError> {
        let path = self.path.clone();
        let write_err = |source| FileError::Write {
            path: path.clone(),
            source,
        };
        self.writer.flush().map_err(write_err)?;
        match std::mem::replace(&mut self.mode, Mode::InPlace) {
            Mode::InPlace => Ok(()),
            Mode::Replace { temp, target } => {
                let done = self
                    .writer
                    .get_ref()
                    .sync_all()
                    .and_then(|()| std::fs::rename(&temp, &target));
                if done.is_err() {
                    let _ = std::fs::remove_file(&temp);
                }
                done.map_err(write_err)
            }
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Mode::Replace { temp, .. } = &self.mode {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Writes `bytes` to `path` as [`OutputFile`] does; a write error (`ENOSPC`, ...) names the path.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut out = OutputFile::create(path)?;
    out.write_all(bytes).map_err(|source| FileError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    out.commit()
}

/// Follows symlinks from `path` to the file they end at: its path and, when it exists, its metadata.
fn resolve(path: &Path) -> Result<(PathBuf, Option<std::fs::Metadata>), FileError> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current).map_err(|source| FileError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
                current = match current.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Ok(meta) => return Ok((current, Some(meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((current, None)),
            Err(source) => {
                return Err(FileError::Write {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(FileError::BadOutput {
        path: path.to_path_buf(),
        reason: format!("more than {MAX_LINKS} levels of symbolic links"),
    })
}

/// A fresh name beside `target`: hidden, with the process id and a counter so concurrent writers never meet.
fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.{}.{n}.partial", std::process::id()))
}

/// Creates the temporary file, with the permissions of the file it will replace when there is one.
fn create_new(temp: &Path, replaced: Option<&std::fs::Metadata>) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)?;
    if let Some(meta) = replaced {
        file.set_permissions(meta.permissions())?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn regular_files_are_replaced_whole_and_no_temporary_remains() {
        let dir = temp_dir("regular");
        let path = dir.join("out.npy");
        write_output(&path, b"first").unwrap();
        write_output(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(entries(&dir), ["out.npy"]);
    }

    #[test]
    fn an_uncommitted_output_leaves_the_target_as_it_was() {
        let dir = temp_dir("uncommitted");
        let path = dir.join("out.npy");
        std::fs::write(&path, b"kept").unwrap();
        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"half").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert_eq!(entries(&dir), ["out.npy"]);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_written_through() {
        let dir = temp_dir("symlink");
        let target = dir.join("real.npy");
        let link = dir.join("link.npy");
        std::os::unix::fs::symlink("real.npy", &link).unwrap();
        // Dangling at first: the shell's `>` creates the target.
        write_output(&link, b"one").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        write_output(&link, b"two").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_written_in_place() {
        // /dev/null stays a character device; /dev/full reports ENOSPC as an error.
        use std::os::unix::fs::FileTypeExt;
        write_output(Path::new("/dev/null"), b"data").unwrap();
        let meta = std::fs::metadata("/dev/null").unwrap();
        assert!(meta.file_type().is_char_device());
        if Path::new("/dev/full").exists() {
            let err = write_output(Path::new("/dev/full"), &[0u8; 100_000])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("cannot write /dev/full: "), "{err}");
            assert!(err.contains("No space left on device"), "{err}");
            assert!(std::fs::metadata("/dev/full")
                .unwrap()
                .file_type()
                .is_char_device());
        }
    }

    #[test]
    fn directories_and_missing_parents_are_errors() {
        let dir = temp_dir("dirs");
        let err = write_output(&dir, b"x").unwrap_err().to_string();
        assert!(err.ends_with("it is a directory"), "{err}");
        let err = write_output(&dir.join("no/such/dir/out.npy"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot write "), "{err}");
        assert!(err.contains("No such file or directory"), "{err}");
    }
}
