//! What `--input` names, cut into numbered output partitions: each tar shard is one partition (numbered by
//! its position in the expanded list, as clip-retrieval numbers them); a folder of images or a CSV file is cut
//! into partitions of a fixed number of samples, in sorted (folder) or file (CSV) order.

use std::path::{Path, PathBuf};

use crate::error::{BulkError, Result};
use crate::samples::{ImageSource, Sample, IMAGE_EXTENSIONS};

#[derive(Debug, Clone, PartialEq)]
pub enum PartSource {
    /// A WebDataset tar shard, read when the partition is processed.
    Shard(PathBuf),
    /// Samples whose images are files (a folder's or a CSV's).
    Files(Vec<Sample>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The partition's number (`img_emb_{index}.npy`).
    pub index: usize,
    pub source: PartSource,
}

impl Part {
    /// How messages name the partition's input.
    pub fn label(&self) -> String {
        match &self.source {
            PartSource::Shard(path) => path.display().to_string(),
            PartSource::Files(samples) => format!(
                "partition {} ({} files from {})",
                self.index,
                samples.len(),
                samples.first().map_or("", |s| s.image_path.as_str())
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub parts: Vec<Part>,
    /// Digits of partition numbers in file names (clip-retrieval's `zfill(int(log10(count)) + 1)`).
    pub width: usize,
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Samples per partition for folders and CSV files.
    pub samples_per_part: usize,
    /// CSV column holding image paths (default: the first of filepath, image_path, image, path, file, url).
    pub csv_image_column: Option<String>,
    /// CSV column holding captions (default: the first of caption, text, title).
    pub csv_caption_column: Option<String>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            samples_per_part: 10_000,
            csv_image_column: None,
            csv_caption_column: None,
        }
    }
}

/// The partitions `inputs` name: one folder, one `.csv`/`.tsv` file, or shard patterns (brace ranges `{000..099}`,
/// alternatives `{a,b}`, `::`-joined lists and globs; several patterns are concatenated in order).
pub fn plan(inputs: &[String], options: &PlanOptions) -> Result<Plan> {
    if options.samples_per_part == 0 {
        return Err(BulkError::Input(
            "samples per partition must be at least 1".into(),
        ));
    }
    let parts = match inputs {
        [] => return Err(BulkError::Input("no input given".into())),
        [one] if Path::new(one).is_dir() => chunk(folder_samples(Path::new(one))?, options),
        [one] if is_csv(one) => chunk(csv_samples(Path::new(one), options)?, options),
        patterns => shard_paths(patterns)?
            .into_iter()
            .enumerate()
            .map(|(index, path)| Part {
                index,
                source: PartSource::Shard(path),
            })
            .collect(),
    };
    if parts.is_empty() {
        return Err(BulkError::Input(format!(
            "{}: no images found",
            inputs.join(" ")
        )));
    }
    let width = parts.len().ilog10() as usize + 1;
    Ok(Plan { parts, width })
}

fn is_csv(input: &str) -> bool {
    let lower = input.to_ascii_lowercase();
    (lower.ends_with(".csv") || lower.ends_with(".tsv")) && Path::new(input).is_file()
}

fn chunk(samples: Vec<Sample>, options: &PlanOptions) -> Vec<Part> {
    samples
        .chunks(options.samples_per_part)
        .enumerate()
        .map(|(index, chunk)| Part {
            index,
            source: PartSource::Files(chunk.to_vec()),
        })
        .collect()
}

/// Every shard the patterns name, in order; a name that exists nowhere is an error (a typo must not silently
/// embed nothing).
fn shard_paths(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for pattern in patterns {
        for name in clip::shards::expand(pattern)? {
            if name.contains(['*', '?', '[']) {
                let matches = glob::glob(&name)
                    .map_err(|e| BulkError::Input(format!("glob {name:?}: {e}")))?;
                let mut found: Vec<PathBuf> = matches
                    .filter_map(|m| m.ok())
                    .filter(|p| p.is_file())
                    .collect();
                if found.is_empty() {
                    return Err(BulkError::Input(format!("{name}: no file matches")));
                }
                found.sort();
                paths.extend(found);
            } else {
                let path = PathBuf::from(&name);
                if !path.is_file() {
                    let why = if path.exists() {
                        "not a file"
                    } else {
                        "no such file"
                    };
                    return Err(BulkError::Input(format!("{name}: {why}")));
                }
                paths.push(path);
            }
        }
    }
    Ok(paths)
}

/// Images under `dir` (recursively, sorted by path), each with its sibling `{stem}.txt` caption and
/// `{stem}.json` metadata when present (clip-retrieval's files reader pairs them the same way).
fn folder_samples(dir: &Path) -> Result<Vec<Sample>> {
    let mut images = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| BulkError::Input(format!("{}: cannot list: {e}", folder.display())))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| BulkError::Input(format!("{}: cannot list: {e}", folder.display())))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| BulkError::Input(format!("{}: {e}", path.display())))?;
            if kind.is_dir() {
                stack.push(path);
            } else if has_image_extension(&path) {
                images.push(path);
            }
        }
    }
    images.sort();
    let mut samples = Vec::with_capacity(images.len());
    for path in images {
        let key = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .with_extension("")
            .to_string_lossy()
            .into_owned();
        let caption = std::fs::read_to_string(path.with_extension("txt"))
            .ok()
            .map(|c| c.trim().to_string());
        let meta = std::fs::read(path.with_extension("json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<crate::fields::Fields>(&bytes).ok());
        samples.push(Sample {
            key,
            image_path: path.display().to_string(),
            image: ImageSource::File(path),
            caption,
            meta,
        });
    }
    Ok(samples)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

const IMAGE_COLUMNS: [&str; 6] = ["filepath", "image_path", "image", "path", "file", "url"];
const CAPTION_COLUMNS: [&str; 3] = ["caption", "text", "title"];

/// Rows of a CSV (comma) or TSV (tab) file with a header; relative image paths are taken from the current
/// directory, else from the file's directory. Other columns become metadata.
fn csv_samples(file: &Path, options: &PlanOptions) -> Result<Vec<Sample>> {
    let name = file.display().to_string();
    let bad = |reason: String| BulkError::Input(format!("{name}: {reason}"));
    let separator = if name.to_ascii_lowercase().ends_with(".tsv") {
        b'\t'
    } else {
        b','
    };
    let (reader, _) = clip::io::open_input(file, clip::io::Input::Data)?;
    let mut rows = csv::ReaderBuilder::new()
        .delimiter(separator)
        .from_reader(std::io::BufReader::new(reader));
    let headers = rows
        .headers()
        .map_err(|e| bad(format!("cannot read the header row: {e}")))?
        .clone();
    let find = |wanted: &Option<String>, defaults: &[&str]| -> Option<usize> {
        match wanted {
            Some(column) => headers.iter().position(|h| h == column),
            None => defaults
                .iter()
                .find_map(|d| headers.iter().position(|h| h == *d)),
        }
    };
    let columns: Vec<String> = headers.iter().map(|h| format!("{h:?}")).collect();
    let image_col = find(&options.csv_image_column, &IMAGE_COLUMNS).ok_or_else(|| {
        bad(format!(
            "no image column {} (its columns: {})",
            options
                .csv_image_column
                .as_deref()
                .map_or_else(|| IMAGE_COLUMNS.join("/"), str::to_string),
            columns.join(", ")
        ))
    })?;
    let caption_col = find(&options.csv_caption_column, &CAPTION_COLUMNS);
    if let (Some(wanted), None) = (&options.csv_caption_column, caption_col) {
        return Err(bad(format!(
            "no caption column {wanted:?} (its columns: {})",
            columns.join(", ")
        )));
    }
    let base = file.parent().unwrap_or(Path::new(""));
    let mut samples = Vec::new();
    for (row, record) in rows.records().enumerate() {
        let record = record.map_err(|e| bad(format!("row {}: {e}", row + 2)))?;
        let image = record.get(image_col).unwrap_or_default();
        let path = PathBuf::from(image);
        let path = if path.is_absolute() || path.exists() || !base.join(&path).exists() {
            path
        } else {
            base.join(&path)
        };
        let mut meta = crate::fields::Fields::default();
        for (i, value) in record.iter().enumerate() {
            if i != image_col && Some(i) != caption_col {
                meta.insert(headers[i].to_string(), value.into());
            }
        }
        samples.push(Sample {
            key: format!("{row}"),
            image_path: image.to_string(),
            image: ImageSource::File(path),
            caption: caption_col.and_then(|c| record.get(c)).map(str::to_string),
            meta: (!meta.is_empty()).then_some(meta),
        });
    }
    Ok(samples)
}
