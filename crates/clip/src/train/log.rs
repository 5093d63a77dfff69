//! `log.jsonl`: one JSON object per line, each with the `step` it belongs to (optimizer steps, validation
//! results, skipped images). A resumed run first drops the lines of steps after its checkpoint, so the log reads
//! as one uninterrupted run.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ClipError, Result};

pub(crate) struct RunLog {
    path: PathBuf,
    file: std::fs::File,
}

impl RunLog {
    /// Opens the log: a new, empty one, or (resuming at step `keep_through`) the existing one without the
    /// lines of later steps.
    pub fn open(path: &Path, keep_through: Option<u64>) -> Result<Self> {
        let io = |source| {
            ClipError::File(clip_io::FileError::Write {
                path: path.to_path_buf(),
                source,
            })
        };
        let kept = match keep_through {
            Some(step) if path.is_file() => {
                let text = clip_io::read_input_text(path, clip_io::Input::Text)?;
                text.lines()
                    .filter(|line| {
                        serde_json::from_str::<Value>(line)
                            .ok()
                            .and_then(|v| v.get("step").and_then(Value::as_u64))
                            .is_some_and(|s| s <= step)
                    })
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            }
            _ => String::new(),
        };
        clip_io::write_output(path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn write(&mut self, value: &Value) -> Result<()> {
        let line = format!("{value}\n");
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| {
                ClipError::File(clip_io::FileError::Write {
                    path: self.path.clone(),
                    source,
                })
            })
    }
}
