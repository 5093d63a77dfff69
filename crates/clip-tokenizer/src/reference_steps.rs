//! Step-by-step parity of the cleaning pipeline with the reference Python functions, on every
//! corpus text (fixtures/tokenizer/steps.jsonl.gz, written by scripts/fixtures/gen_tokenizer.py
//! from `html.unescape`, `ftfy.fix_text`, `ftfy.fix_encoding`, `ftfy.badness.is_bad`,
//! `str.lower` and `unicodedata.normalize("NFC", ...)`).

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;

use crate::ftfy::{fix_encoding_for_tests, fix_text, is_bad_for_tests};
use crate::html_unescape::html_unescape;
use crate::nfc::nfc;
use crate::python_str::py_lower;

fn steps() -> Vec<Value> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer/steps.jsonl.gz");
    let raw =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn each_cleaning_step_matches_python() {
    let rows = steps();
    assert!(rows.len() >= 5000);
    let mut failures: Vec<String> = Vec::new();
    let mut counts = [0usize; 6];
    for row in &rows {
        let text = row["text"].as_str().unwrap();
        let s = |k: &str| row[k].as_str().unwrap().to_string();
        let checks: [(&str, String, String); 6] = [
            (
                "html.unescape",
                html_unescape(text).into_owned(),
                s("html_unescape"),
            ),
            ("ftfy.fix_text", fix_text(text).into_owned(), s("fix_text")),
            (
                "ftfy.fix_encoding",
                fix_encoding_for_tests(text),
                s("fix_encoding"),
            ),
            (
                "is_bad",
                is_bad_for_tests(text).to_string(),
                row["is_bad"].as_bool().unwrap().to_string(),
            ),
            ("str.lower", py_lower(text), s("lower")),
            ("NFC", nfc(text).into_owned(), s("nfc")),
        ];
        for (i, (name, got, expected)) in checks.into_iter().enumerate() {
            if got != expected {
                counts[i] += 1;
                failures.push(format!(
                    "{name}({text:?}): python {expected:?}, rust {got:?}"
                ));
            }
        }
    }
    println!(
        "steps: {} texts, mismatches per step {counts:?}",
        rows.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
