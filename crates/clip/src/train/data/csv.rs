//! open_clip's `CsvDataset`: a delimited file with a header row (`--csv-separator`, tab by default), the image
//! path in column `--csv-img-key` and the caption in `--csv-caption-key`. Quoted fields may hold the separator.

use std::path::{Path, PathBuf};

use super::{DataSet, ImageRef, Sample};
use crate::error::{ClipError, Result};

pub(crate) fn read(
    path: &Path,
    separator: u8,
    image_key: &str,
    caption_key: &str,
) -> Result<DataSet> {
    let name = path.display().to_string();
    let bad = |reason: String| ClipError::Data {
        name: name.clone(),
        reason,
    };
    let (file, _) = clip_io::open_input(path, clip_io::Input::Data)?;
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(separator)
        .has_headers(true)
        .flexible(false)
        .from_reader(std::io::BufReader::new(file));
    let headers = reader
        .headers()
        .map_err(|e| bad(format!("cannot read the header row: {}", csv_reason(&e))))?
        .clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(bad("it is empty (no header row)".into()));
    }
    let column = |key: &str, flag: &str| {
        headers.iter().position(|h| h == key).ok_or_else(|| {
            let shown: Vec<String> = headers.iter().map(|h| format!("{h:?}")).collect();
            let hint = if headers.len() == 1 && separator != b',' && headers[0].contains(',') {
                " (the file looks comma-separated: pass --csv-separator ,)"
            } else {
                ""
            };
            bad(format!(
                "no column {key:?} (its columns: {}); name the column with {flag}{hint}",
                shown.join(", ")
            ))
        })
    };
    let image_col = column(image_key, "--csv-img-key")?;
    let caption_col = column(caption_key, "--csv-caption-key")?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut samples = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("row {}: {}", i + 2, csv_reason(&e))))?;
        let image = record.get(image_col).unwrap_or_default();
        let caption = record.get(caption_col).unwrap_or_default();
        samples.push(Sample {
            image: ImageRef::File(resolve(image, base)),
            caption: caption.to_string(),
        });
    }
    Ok(DataSet {
        name,
        samples,
        notes: Vec::new(),
    })
}

/// open_clip opens paths as given (relative to the current directory); a relative path that does not exist
/// there is taken from the CSV's directory, so a data folder can be used from anywhere.
fn resolve(image: &str, base: &Path) -> PathBuf {
    let path = PathBuf::from(image);
    if path.is_absolute() || path.exists() {
        path
    } else {
        let beside = base.join(&path);
        if beside.exists() {
            beside
        } else {
            path
        }
    }
}

fn csv_reason(e: &::csv::Error) -> String {
    crate::error::one_line(&e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;

    #[test]
    fn columns_quotes_and_relative_paths() {
        let dir = temp_dir("train-csv");
        std::fs::write(dir.join("a.jpg"), b"x").unwrap();
        let csv = dir.join("d.tsv");
        std::fs::write(
            &csv,
            "title\tfilepath\n\"a, quoted\ttab\"\ta.jpg\nplain\tmissing.jpg\n",
        )
        .unwrap();
        let set = read(&csv, b'\t', "filepath", "title").unwrap();
        assert_eq!(set.samples.len(), 2);
        assert_eq!(set.samples[0].caption, "a, quoted\ttab");
        assert_eq!(set.samples[0].image, ImageRef::File(dir.join("a.jpg")));
        assert_eq!(set.samples[1].image, ImageRef::File("missing.jpg".into()));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = temp_dir("train-csv-bad");
        let csv = dir.join("d.csv");
        std::fs::write(&csv, "filepath,title\na.jpg,x\n").unwrap();
        let e = read(&csv, b'\t', "filepath", "title")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no column \"filepath\"") && e.contains("--csv-separator ,"),
            "{e}"
        );
        let e = read(&csv, b',', "path", "title").unwrap_err().to_string();
        assert!(e.contains("--csv-img-key"), "{e}");
        std::fs::write(&csv, "").unwrap();
        let e = read(&csv, b',', "filepath", "title")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        std::fs::write(&csv, "filepath,title\na.jpg,x,extra\n").unwrap();
        let e = read(&csv, b',', "filepath", "title")
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 2"), "{e}");
    }
}
