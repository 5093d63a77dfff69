//! Training data: image-caption pairs from a CSV/TSV file (open_clip's `CsvDataset`) or from img2dataset
//! WebDataset tar shards (`{key}.jpg` + `{key}.txt`). Only the index is read up front (paths, captions, where
//! each image lies in its shard); images are read when a batch needs them.

pub(crate) mod csv;
pub(crate) mod webdataset;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ClipError, Result};

/// Where a sample's image is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ImageRef {
    File(PathBuf),
    /// A member of a tar shard: its data's byte range in the file.
    TarMember {
        shard: Arc<PathBuf>,
        member: String,
        offset: u64,
        len: u64,
    },
}

impl ImageRef {
    /// The image file's bytes (within the image size limit).
    pub fn read(&self) -> Result<Vec<u8>> {
        match self {
            Self::File(path) => Ok(clip_io::read_input(path, clip_io::Input::Image)?),
            Self::TarMember {
                shard, offset, len, ..
            } => {
                let limit = clip_io::limit(clip_io::Input::Image);
                if *len > limit {
                    return Err(ClipError::InvalidInput(format!(
                        "{}: {len} bytes, over the image limit of {limit} bytes",
                        self.label()
                    )));
                }
                let io = |source| ClipError::Io {
                    path: shard.to_path_buf(),
                    source,
                };
                let mut file = std::fs::File::open(shard.as_path()).map_err(io)?;
                file.seek(SeekFrom::Start(*offset)).map_err(io)?;
                let mut bytes = Vec::with_capacity(*len as usize);
                file.take(*len).read_to_end(&mut bytes).map_err(io)?;
                if bytes.len() as u64 != *len {
                    return Err(ClipError::InvalidInput(format!(
                        "{}: the shard ends inside the image",
                        self.label()
                    )));
                }
                Ok(bytes)
            }
        }
    }

    /// How messages and the log name the image.
    pub fn label(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::TarMember { shard, member, .. } => format!("{}:{member}", shard.display()),
        }
    }
}

/// One image-caption pair.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub image: ImageRef,
    pub caption: String,
}

/// How to read `--train-data` / `--val-data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFormat {
    /// A delimited text file with a header row; relative image paths are taken from the current directory,
    /// else from the file's directory.
    Csv {
        separator: u8,
        image_key: String,
        caption_key: String,
    },
    /// Tar shards (a brace pattern, `::`-joined lists).
    WebDataset,
}

/// The samples of a data source, in file order, and what was noticed while indexing them.
#[derive(Debug, Clone)]
pub(crate) struct DataSet {
    /// What the user named (for messages).
    pub name: String,
    pub samples: Vec<Sample>,
    /// Problems that dropped a sample from the index (a shard member without a caption, ...), one line each.
    pub notes: Vec<String>,
}

/// Whether `spec` names WebDataset shards (by open_clip's `--dataset-type auto` rule: a `.tar` name).
pub(crate) fn looks_like_shards(spec: &str) -> bool {
    spec.split("::")
        .any(|part| part.trim_end_matches('}').ends_with(".tar"))
}

impl DataSet {
    pub fn open(spec: &str, format: &DataFormat) -> Result<Self> {
        let set = match format {
            DataFormat::Csv {
                separator,
                image_key,
                caption_key,
            } => csv::read(Path::new(spec), *separator, image_key, caption_key)?,
            DataFormat::WebDataset => webdataset::index(spec)?,
        };
        if set.samples.is_empty() {
            return Err(ClipError::Data {
                name: set.name.clone(),
                reason: "it holds no image-caption pairs".into(),
            });
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }
}
