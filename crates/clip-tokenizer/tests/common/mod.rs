//! Shared helpers of the integration tests: the reference fixtures in fixtures/tokenizer/.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// fixtures/tokenizer/ at the repository root.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer")
}

/// The bytes of a fixture file, gunzipped when its name ends in `.gz`.
pub fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    let raw =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("cannot gunzip {}: {e}", path.display()));
        out
    } else {
        raw
    }
}

/// One JSON value per line of a fixture.
pub fn read_jsonl(name: &str) -> Vec<Value> {
    parse_jsonl(&read_fixture(name), name)
}

/// One JSON value per line.
pub fn parse_jsonl(bytes: &[u8], name: &str) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("fixture is UTF-8");
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1)))
        .collect()
}

/// A corpus entry.
pub struct Case {
    pub text: String,
    pub clean: String,
    /// `clip.tokenize(text, truncate=True)[0]` without the trailing 0 padding.
    pub ids: Vec<u32>,
    pub too_long: bool,
    pub cat: String,
}

pub fn corpus() -> Vec<Case> {
    cases_from(read_jsonl("corpus.jsonl"))
}

/// Corpus entries from JSON values in the corpus.jsonl layout.
pub fn cases_from(values: Vec<Value>) -> Vec<Case> {
    values
        .into_iter()
        .map(|v| Case {
            text: v["text"].as_str().unwrap().to_string(),
            clean: v["clean"].as_str().unwrap().to_string(),
            ids: v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect(),
            too_long: v["too_long"].as_bool().unwrap(),
            cat: v["cat"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// A fresh, empty temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("clip-tokenizer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
