//! img2dataset's WebDataset shards: tar files whose members are grouped into samples by key (the member name up
//! to the first dot of its file name), an image (`jpg`, `jpeg`, `png`, `webp`) and a caption (`txt`) each. The
//! index keeps each image's byte range; captions are read while indexing.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DataSet, ImageRef, Sample};
use crate::error::{ClipError, Result};
use crate::shards::expand;

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];
/// The longest caption read from a shard (a longer `.txt` is cut; the tokenizer truncates far sooner).
const MAX_CAPTION_BYTES: u64 = 1 << 20;

#[derive(Default)]
struct Parts {
    image: Option<(String, u64, u64)>,
    caption: Option<String>,
}

pub(crate) fn index(spec: &str) -> Result<DataSet> {
    let mut samples = Vec::new();
    let mut notes = Vec::new();
    for name in expand(spec)? {
        index_shard(Path::new(&name), &mut samples, &mut notes)?;
    }
    Ok(DataSet {
        name: spec.to_string(),
        samples,
        notes,
    })
}

fn index_shard(path: &Path, samples: &mut Vec<Sample>, notes: &mut Vec<String>) -> Result<()> {
    let (file, _) = clip_io::open_input(path, clip_io::Input::Data)?;
    let shard = Arc::new(PathBuf::from(path));
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive.entries().map_err(|e| ClipError::Data {
        name: path.display().to_string(),
        reason: format!("not a tar archive: {e}"),
    })?;
    // Keys in the order they first appear.
    let mut order: Vec<String> = Vec::new();
    let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // A truncated or damaged shard: keep what was read before the damage.
                notes.push(format!(
                    "{}: stopped reading the shard: {e}",
                    path.display()
                ));
                break;
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(_) => continue,
        };
        let (dir, file_name) = match member.rsplit_once('/') {
            Some((d, f)) => (format!("{d}/"), f.to_string()),
            None => (String::new(), member.clone()),
        };
        let Some((stem, ext)) = file_name.split_once('.') else {
            continue;
        };
        let key = format!("{dir}{stem}");
        let ext = ext.to_ascii_lowercase();
        let slot = parts.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Parts::default()
        });
        if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            slot.image = Some((member.clone(), entry.raw_file_position(), entry.size()));
        } else if ext == "txt" {
            let mut bytes = Vec::new();
            if let Err(e) = (&mut entry).take(MAX_CAPTION_BYTES).read_to_end(&mut bytes) {
                notes.push(format!(
                    "{}:{member}: unreadable caption: {e}",
                    path.display()
                ));
                continue;
            }
            slot.caption = Some(String::from_utf8_lossy(&bytes).trim().to_string());
        }
    }
    for key in order {
        let p = parts.remove(&key).unwrap_or_default();
        match (p.image, p.caption) {
            (Some((member, offset, len)), Some(caption)) => samples.push(Sample {
                image: ImageRef::TarMember {
                    shard: shard.clone(),
                    member,
                    offset,
                    len,
                },
                caption,
            }),
            (Some((member, _, _)), None) => notes.push(format!(
                "{}:{member}: no caption (.txt) for this image",
                path.display()
            )),
            (None, Some(_)) => notes.push(format!(
                "{}:{key}.txt: no image for this caption",
                path.display()
            )),
            (None, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;

    fn shard(path: &Path, members: &[(&str, &[u8])]) {
        let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.finish().unwrap();
    }

    #[test]
    fn samples_by_key_across_shards() {
        let dir = temp_dir("wds");
        shard(
            &dir.join("s-0.tar"),
            &[
                ("000.jpg", b"IMG0"),
                ("000.txt", b" a cat \n"),
                ("001.txt", b"orphan"),
                ("002.png", b"P"),
            ],
        );
        // The key ends at the first dot of the file name: `b.seg.png` is extension `seg.png`, not an image.
        shard(
            &dir.join("s-1.tar"),
            &[
                ("a/b.txt", b"nested"),
                ("a/b.webp", b"WEBP"),
                ("a/b.seg.png", b"S"),
            ],
        );
        let set = index(&format!("{}/s-{{0..1}}.tar", dir.display())).unwrap();
        assert_eq!(set.samples.len(), 2);
        assert_eq!(set.samples[0].caption, "a cat");
        assert_eq!(set.samples[0].image.read().unwrap(), b"IMG0");
        assert_eq!(set.samples[1].caption, "nested");
        assert_eq!(set.samples[1].image.read().unwrap(), b"WEBP");
        assert!(set.samples[1].image.label().ends_with("s-1.tar:a/b.webp"));
        assert_eq!(set.notes.len(), 2, "{:?}", set.notes);
    }

    #[test]
    fn a_truncated_shard_keeps_what_was_read() {
        let dir = temp_dir("wds-cut");
        let path = dir.join("s.tar");
        shard(
            &path,
            &[
                ("0.jpg", &[7u8; 600]),
                ("0.txt", b"x"),
                ("1.jpg", &[8u8; 2000]),
                ("1.txt", b"y"),
            ],
        );
        let bytes = std::fs::read(&path).unwrap();
        // Cut inside the second image's data.
        std::fs::write(&path, &bytes[..3072 + 700]).unwrap();
        let set = index(path.to_str().unwrap()).unwrap();
        assert_eq!(set.samples.len(), 1);
        assert!(!set.notes.is_empty());
        let missing = index(dir.join("nope.tar").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.tar"), "{missing}");
    }
}
