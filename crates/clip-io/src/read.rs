//! Bounded reads of regular files (and of standard input when a command asks for it).

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

use crate::error::FileError;
use crate::limits::{limit, raise_hint, Input};

/// Opens `path` for reading if it is a regular file no larger than `kind`'s limit; returns the file and its
/// size. FIFOs, devices, sockets and directories are refused without blocking: the file is opened
/// non-blocking and checked through the open handle, so nothing can swap it in between.
pub fn open_input(path: &Path, kind: Input) -> Result<(File, u64), FileError> {
    let read_err = |source| FileError::Read {
        what: kind.label(),
        path: path.to_path_buf(),
        source,
    };
    let file = open_nonblocking(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            what: kind.label(),
            path: path.to_path_buf(),
            kind: describe(&meta),
        });
    }
    let max = limit(kind);
    if meta.len() > max {
        return Err(too_large(path, kind, max));
    }
    Ok((file, meta.len()))
}

/// The whole of a regular file, at most `kind`'s limit (checked before reading, and again while reading in
/// case the file grows).
pub fn read_input(path: &Path, kind: Input) -> Result<Vec<u8>, FileError> {
    let (file, size) = open_input(path, kind)?;
    read_bounded(file, size, kind).map_err(|e| match e {
        Bounded::Io(source) => FileError::Read {
            what: kind.label(),
            path: path.to_path_buf(),
            source,
        },
        Bounded::TooLarge(max) => too_large(path, kind, max),
    })
}

/// [`read_input`] as UTF-8 text.
pub fn read_input_text(path: &Path, kind: Input) -> Result<String, FileError> {
    let bytes = read_input(path, kind)?;
    String::from_utf8(bytes).map_err(|e| FileError::NotUtf8 {
        what: kind.label(),
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Standard input, at most `kind`'s limit (for commands given `-` as a file).
pub fn read_stdin(kind: Input) -> Result<Vec<u8>, FileError> {
    let path = Path::new("<stdin>");
    read_bounded(std::io::stdin().lock(), 0, kind).map_err(|e| match e {
        Bounded::Io(source) => FileError::Read {
            what: kind.label(),
            path: path.to_path_buf(),
            source,
        },
        Bounded::TooLarge(max) => too_large(path, kind, max),
    })
}

enum Bounded {
    Io(std::io::Error),
    TooLarge(u64),
}

fn read_bounded(reader: impl Read, size_hint: u64, kind: Input) -> Result<Vec<u8>, Bounded> {
    let max = limit(kind);
    // The hint comes from fstat of a regular file already checked against the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(size_hint.min(max)).unwrap_or(0));
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Bounded::Io)?;
    if bytes.len() as u64 > max {
        return Err(Bounded::TooLarge(max));
    }
    Ok(bytes)
}

fn too_large(path: &Path, kind: Input, max: u64) -> FileError {
    FileError::TooLarge {
        what: kind.label(),
        path: path.to_path_buf(),
        limit: max,
        hint: raise_hint(kind),
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting; reads of regular files
    // ignore the flag.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// "a directory", "a FIFO", ... for messages.
pub(crate) fn describe(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;

    #[test]
    fn regular_files_are_read_whole() {
        let dir = temp_dir("regular");
        let path = dir.join("a.txt");
        std::fs::write(&path, "hello").unwrap();
        assert_eq!(read_input(&path, Input::Text).unwrap(), b"hello");
        assert_eq!(read_input_text(&path, Input::Text).unwrap(), "hello");
    }

    #[test]
    fn directories_and_devices_are_refused_at_once() {
        let dir = temp_dir("kinds");
        let err = read_input(&dir, Input::Image).unwrap_err().to_string();
        assert!(err.contains("is a directory, not a regular file"), "{err}");
        #[cfg(unix)]
        {
            let err = read_input(Path::new("/dev/zero"), Input::Text)
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                "cannot read text file /dev/zero: it is a character device, not a regular file"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_without_writer_does_not_block() {
        let dir = temp_dir("fifo");
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_input(&fifo, Input::Image).unwrap_err().to_string();
        assert!(err.contains("is a FIFO (named pipe)"), "{err}");
    }

    #[test]
    fn missing_and_non_utf8_files_name_the_problem() {
        let dir = temp_dir("missing");
        let err = read_input(&dir.join("nope.jpg"), Input::Image)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read image "), "{err}");
        assert!(err.contains("No such file"), "{err}");
        let path = dir.join("latin1.txt");
        std::fs::write(&path, b"caf\xe9").unwrap();
        let err = read_input_text(&path, Input::Text).unwrap_err().to_string();
        assert!(
            err.contains("not UTF-8 text (invalid byte at offset 3)"),
            "{err}"
        );
    }
}
