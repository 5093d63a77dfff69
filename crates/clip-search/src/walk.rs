//! Finding the photos under the folders given: every regular file whose extension is one the decoder reads,
//! in a stable (sorted) order. Hidden files and folders (a leading `.`, which covers macOS's AppleDouble `._*`
//! files) are skipped; symbolic links to files are followed, links to folders are not (they can loop).

use std::path::{Path, PathBuf};

use crate::error::{Result, SearchError};
use crate::identity::mtime_ns;

/// Extensions (lower case) of the formats `clip-preprocess` decodes.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "png", "webp", "gif", "bmp", "tif", "tiff",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

#[derive(Debug, Default)]
pub struct Walk {
    pub files: Vec<FoundFile>,
    /// Folders or files that could not be read, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The absolute form of a root, which must exist: a missing root is an error, never "everything under it was
/// deleted" (an unmounted drive must not empty the index).
pub fn absolute_root(root: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(root).map_err(|source| SearchError::Read {
        path: root.to_path_buf(),
        source,
    })
}

/// Walks `roots` (absolute, from [`absolute_root`]); a root may also be a single image file.
pub fn walk(roots: &[PathBuf]) -> Walk {
    let mut out = Walk::default();
    for root in roots {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => walk_dir(root, &mut out),
            Ok(meta) if meta.is_file() => out.files.push(FoundFile {
                path: root.clone(),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
            }),
            Ok(_) => out
                .failed
                .push((root.clone(), "not a regular file or folder".into())),
            Err(e) => out.failed.push((root.clone(), e.to_string())),
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.dedup_by(|a, b| a.path == b.path);
    out
}

fn walk_dir(dir: &Path, out: &mut Walk) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            out.failed.push((dir.to_path_buf(), e.to_string()));
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for path in children {
        if is_hidden(&path) {
            continue;
        }
        let Ok(link_meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if link_meta.is_dir() {
            walk_dir(&path, out);
            continue;
        }
        if !is_image_name(&path) {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => out.files.push(FoundFile {
                path,
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
            }),
            // A link to a folder, a FIFO or a device named like an image: not a photo.
            Ok(_) => {}
            Err(e) => out.failed.push((path, e.to_string())),
        }
    }
}
