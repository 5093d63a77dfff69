//! Samples as the inputs hold them: a key, an image (bytes from a shard, or a file), an optional caption and
//! optional metadata (img2dataset's `.json`). Shards are read as a stream, one window of samples at a time,
//! so that a shard of any size needs memory for one window only.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::fields::Fields;

/// Image extensions that make a member a sample's image (img2dataset writes `jpg`; others appear in the wild).
pub(crate) const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff"];
/// Longest caption or `.json` member read (a bigger one is a damaged member, not a reason to use memory).
const MAX_TEXT_MEMBER: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// Encoded image bytes (a shard member); `name` is used in messages and to guess the format.
    Bytes { name: String, bytes: Vec<u8> },
    /// An image file, read when the sample is embedded.
    File(PathBuf),
    /// The sample has no image (a caption or `.json` alone).
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub key: String,
    /// What clip-retrieval's `image_path` column holds: the key for shards, the path for files.
    pub image_path: String,
    pub image: ImageSource,
    pub caption: Option<String>,
    pub meta: Option<Fields>,
}

impl Sample {
    fn new(key: String) -> Self {
        Self {
            image_path: key.clone(),
            key,
            image: ImageSource::Missing,
            caption: None,
            meta: None,
        }
    }
}

/// What reading a shard found besides its samples.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ShardReport {
    /// Members that could not be used (an unreadable caption, a `.json` that does not parse, a key seen
    /// again after its sample was complete), one line each.
    pub damaged_members: Vec<String>,
    /// Why reading stopped before the end of the archive (a truncated or corrupt shard).
    pub damaged: Option<String>,
}

/// Streams the samples of the tar shard at `path` to `emit`, `window` at a time, in the order their first
/// member appears. Members of one key are consecutive in WebDataset shards; a key met again later is counted
/// as a damaged member. An error from `emit` stops the reading and is returned.
pub(crate) fn read_shard<E>(
    path: &Path,
    window: usize,
    mut emit: impl FnMut(Vec<Sample>) -> std::result::Result<(), E>,
) -> std::result::Result<std::result::Result<ShardReport, String>, E> {
    let file = match clip::io::open_input(path, clip::io::Input::Data) {
        Ok((file, _)) => file,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return Ok(Err(format!("{}: not a tar archive: {e}", path.display()))),
    };
    let mut report = ShardReport::default();
    let mut pending: Vec<Sample> = Vec::with_capacity(window);
    let mut current: Option<Sample> = None;
    let mut finished_keys = std::collections::HashSet::new();
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                report.damaged = Some(format!(
                    "{}: unreadable after this point: {e}",
                    path.display()
                ));
                break;
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Ok(member) = entry.path().map(|p| p.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some((key, ext)) = split_member(&member) else {
            continue;
        };
        if current.as_ref().is_some_and(|s| s.key != key) {
            let done = current.take().expect("checked above");
            finished_keys.insert(done.key.clone());
            pending.push(done);
            if pending.len() >= window {
                emit(std::mem::take(&mut pending))?;
            }
        }
        if finished_keys.contains(&key) {
            report.damaged_members.push(format!(
                "{}:{member}: its key's sample came earlier in the shard",
                path.display()
            ));
            continue;
        }
        let sample = current.get_or_insert_with(|| Sample::new(key.clone()));
        let ext = ext.to_ascii_lowercase();
        let mut read = |limit: u64| -> std::result::Result<Vec<u8>, String> {
            let size = entry.size();
            if size > limit {
                return Err(format!("{size} bytes, over the limit of {limit}"));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(limit)
                .read_to_end(&mut bytes)
                .map_err(|e| e.to_string())?;
            if (bytes.len() as u64) < size {
                return Err("the shard ends inside this member".into());
            }
            Ok(bytes)
        };
        let damaged = |reason: String| format!("{}:{member}: {reason}", path.display());
        if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            match read(clip::io::limit(clip::io::Input::Image)) {
                Ok(bytes) => {
                    sample.image = ImageSource::Bytes {
                        name: member.clone(),
                        bytes,
                    }
                }
                Err(reason) => {
                    // The data itself is unreadable: whatever follows in the archive is too.
                    report.damaged = Some(damaged(reason));
                    break;
                }
            }
        } else if ext == "txt" {
            match read(MAX_TEXT_MEMBER) {
                Ok(bytes) => {
                    sample.caption = Some(String::from_utf8_lossy(&bytes).trim().to_string())
                }
                Err(reason) => report.damaged_members.push(damaged(reason)),
            }
        } else if ext == "json" {
            match read(MAX_TEXT_MEMBER).and_then(|bytes| {
                serde_json::from_slice::<Fields>(&bytes)
                    .map_err(|e| format!("not a JSON object: {e}"))
            }) {
                Ok(meta) => sample.meta = Some(meta),
                Err(reason) => report.damaged_members.push(damaged(reason)),
            }
        }
    }
    pending.extend(current);
    if !pending.is_empty() {
        emit(pending)?;
    }
    Ok(Ok(report))
}

/// A member's sample key and extension as webdataset splits them: the key is everything up to the first dot
/// of the file name (directories included), the extension the rest.
fn split_member(member: &str) -> Option<(String, &str)> {
    let (dir, file) = match member.rsplit_once('/') {
        Some((dir, file)) => (&member[..dir.len() + 1], file),
        None => ("", member),
    };
    let (stem, ext) = file.split_once('.')?;
    Some((format!("{dir}{stem}"), ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_dot_of_the_file_name() {
        assert_eq!(
            split_member("a/b.c/000.jpg"),
            Some(("a/b.c/000".into(), "jpg"))
        );
        assert_eq!(split_member("000.seg.png"), Some(("000".into(), "seg.png")));
        assert_eq!(split_member("README"), None);
    }
}
