//! Labelled image sets for evaluation and probes: torchvision's `ImageFolder` layout (one folder per class,
//! classes in sorted folder order, the images anywhere below it) or a CSV of `path,label` rows (paths relative
//! to the CSV's folder, labels as class names or indices into a given class list). Encoding keeps every
//! unreadable image with its error, so a report can count and list them instead of dropping them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{ClipError, Result};
use crate::Clip;

/// Extensions taken as images (torchvision's `IMG_EXTENSIONS` plus GIF); other files are listed in `ignored`.
const IMAGE_EXTENSIONS: [&str; 10] = [
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp", "gif",
];

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Index into [`Dataset::classes`].
    pub label: usize,
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    /// Files under an ImageFolder that are not images (reported, not used).
    pub ignored: Vec<PathBuf>,
}

/// A dataset's image features: `features[i]` belongs to `samples[indices[i]]`.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub features: Vec<Vec<f32>>,
    pub indices: Vec<usize>,
    /// Images that could not be read or decoded, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

fn io_error(path: &Path, source: std::io::Error) -> ClipError {
    ClipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Dataset {
    /// A directory as an ImageFolder, a file as a CSV.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::image_folder(path)
        } else if path.is_file() {
            Self::csv(path)
        } else {
            Err(ClipError::InvalidInput(format!(
                "dataset {} does not exist",
                path.display()
            )))
        }
    }

    /// torchvision's `ImageFolder`: each sub-folder (sorted by name) is a class holding the images below it.
    pub fn image_folder(root: &Path) -> Result<Self> {
        let mut classes = Vec::new();
        for entry in std::fs::read_dir(root).map_err(|e| io_error(root, e))? {
            let entry = entry.map_err(|e| io_error(root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') {
                classes.push(name);
            }
        }
        classes.sort();
        if classes.is_empty() {
            return Err(ClipError::InvalidInput(format!(
                "dataset {} has no class folders (expected one folder per class)",
                root.display()
            )));
        }
        let mut samples = Vec::new();
        let mut ignored = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let mut files = Vec::new();
            walk(&root.join(class), &mut files)?;
            files.sort();
            for path in files {
                if is_image(&path) {
                    samples.push(Sample { path, label });
                } else {
                    ignored.push(path);
                }
            }
        }
        Ok(Self {
            classes,
            samples,
            ignored,
        })
    }

    /// `path,label` rows (an optional header row naming a `path` column is skipped). Classes are the sorted
    /// distinct labels; [`Dataset::with_class_names`] maps them onto another list.
    pub fn csv(file: &Path) -> Result<Self> {
        let text = clip_io::read_input_text(file, clip_io::Input::Text)?;
        let base = file.parent().unwrap_or(Path::new(""));
        let mut rows = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv_line(line).map_err(|reason| csv_error(file, number, &reason))?;
            if fields.len() < 2 {
                return Err(csv_error(file, number, "expected path,label"));
            }
            let is_header = rows.is_empty()
                && ["path", "filepath", "file", "filename", "image"]
                    .contains(&fields[0].trim().to_lowercase().as_str());
            if is_header {
                continue;
            }
            rows.push((base.join(fields[0].trim()), fields[1].trim().to_string()));
        }
        if rows.is_empty() {
            return Err(ClipError::InvalidInput(format!(
                "dataset {} has no rows",
                file.display()
            )));
        }
        let classes: Vec<String> = rows
            .iter()
            .map(|(_, l)| l.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let samples = rows
            .into_iter()
            .map(|(path, label)| Sample {
                path,
                label: classes.iter().position(|c| *c == label).unwrap_or(0),
            })
            .collect();
        Ok(Self {
            classes,
            samples,
            ignored: Vec::new(),
        })
    }

    /// Relabels the samples against `names` (a classifier's classes): by name when every dataset class is in
    /// `names`; else an integer label is an index into `names`; else, with as many classes as names, class i
    /// of the dataset (sorted folder order, as ImageNet's synset folders) is `names[i]`.
    pub fn with_class_names(self, names: &[String]) -> Result<Self> {
        let by_name: Option<Vec<usize>> = self
            .classes
            .iter()
            .map(|c| names.iter().position(|n| n == c))
            .collect();
        let by_index: Option<Vec<usize>> = self
            .classes
            .iter()
            .map(|c| c.parse::<usize>().ok().filter(|&i| i < names.len()))
            .collect();
        let mapping = match (by_name, by_index) {
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) if self.classes.len() == names.len() => (0..names.len()).collect(),
            (None, None) => {
                let unknown: Vec<&str> = self
                    .classes
                    .iter()
                    .filter(|c| !names.contains(c))
                    .take(5)
                    .map(String::as_str)
                    .collect();
                return Err(ClipError::InvalidInput(format!(
                    "the dataset has {} classes and the class list {}; dataset classes not in the list: {}",
                    self.classes.len(),
                    names.len(),
                    unknown.join(", ")
                )));
            }
        };
        Ok(Self {
            classes: names.to_vec(),
            samples: self
                .samples
                .into_iter()
                .map(|s| Sample {
                    label: mapping[s.label],
                    path: s.path,
                })
                .collect(),
            ignored: self.ignored,
        })
    }

    pub fn labels(&self) -> Vec<usize> {
        self.samples.iter().map(|s| s.label).collect()
    }

    /// Raw `encode_image` features of every readable sample; `on_progress(done, total)` counts images.
    pub fn encode(&self, clip: &Clip, mut on_progress: impl FnMut(usize, usize)) -> Encoded {
        let paths: Vec<PathBuf> = self.samples.iter().map(|s| s.path.clone()).collect();
        let total = paths.len();
        let results = clip.encode_image_files(&paths, |done| on_progress(done, total));
        let mut encoded = Encoded {
            features: Vec::with_capacity(total),
            indices: Vec::with_capacity(total),
            unreadable: Vec::new(),
        };
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(f) => {
                    encoded.features.push(f);
                    encoded.indices.push(i);
                }
                Err(e) => encoded.unreadable.push((paths[i].clone(), e.to_string())),
            }
        }
        encoded
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Folder nesting followed below a class folder (a guard against symlink cycles).
const MAX_DEPTH: usize = 32;

/// Every non-hidden file below `dir` (following links, as `os.walk(followlinks=True)`).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    walk_depth(dir, out, 0)
}

fn walk_depth(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(ClipError::InvalidInput(format!(
            "dataset folder {} is nested more than {MAX_DEPTH} levels deep (a symlink cycle?)",
            dir.display()
        )));
    }
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk_depth(&path, out, depth + 1)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn csv_error(file: &Path, number: usize, reason: &str) -> ClipError {
    ClipError::InvalidInput(format!(
        "dataset {} line {}: {reason}",
        file.display(),
        number + 1
    ))
}

/// Fields of one CSV line: comma-separated, optionally double-quoted with `""` for a quote (RFC 4180).
fn split_csv_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (',', false) => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

/// One CSV field, quoted when it needs to be.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_split_with_quotes() {
        assert_eq!(split_csv_line("a.jpg,cat").unwrap(), vec!["a.jpg", "cat"]);
        assert_eq!(
            split_csv_line("\"a, b.jpg\",\"say \"\"hi\"\"\"").unwrap(),
            vec!["a, b.jpg", "say \"hi\""]
        );
        assert!(split_csv_line("\"open,cat").is_err());
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn relabelling_by_name_index_or_position() {
        let ds = Dataset {
            classes: vec!["b".into(), "a".into()],
            samples: vec![
                Sample {
                    path: "x".into(),
                    label: 0,
                },
                Sample {
                    path: "y".into(),
                    label: 1,
                },
            ],
            ignored: vec![],
        };
        let names: Vec<String> = vec!["a".into(), "c".into(), "b".into()];
        assert_eq!(
            ds.clone().with_class_names(&names).unwrap().labels(),
            vec![2, 0]
        );
        let positional: Vec<String> = vec!["n1".into(), "n2".into()];
        assert_eq!(
            ds.clone().with_class_names(&positional).unwrap().labels(),
            vec![0, 1]
        );
        assert!(ds.with_class_names(&["z".to_string()]).is_err());
    }
}
