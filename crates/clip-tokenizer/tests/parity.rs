//! Parity with `clip.tokenize` (clip-anytorch 2.6.0, ftfy 6.3.1) on the reference corpus
//! fixtures/tokenizer/corpus.jsonl (scripts/fixtures/gen_tokenizer.py): every text must give
//! the reference ids, the reference cleaning, and the same too-long verdict.

mod common;

use clip_tokenizer::{clean_text, Tokenizer, TokenizerError, DEFAULT_CONTEXT_LENGTH};
use common::corpus;

fn trimmed(mut ids: Vec<u32>) -> Vec<u32> {
    while ids.last() == Some(&0) {
        ids.pop();
    }
    ids
}

#[test]
fn corpus_is_large_and_varied() {
    let cases = corpus();
    assert!(cases.len() >= 5000, "only {} texts", cases.len());
    for cat in [
        "caption", "html", "mojibake", "emoji", "script", "control", "case", "special", "long",
        "empty",
    ] {
        assert!(cases.iter().any(|c| c.cat == cat), "no {cat} texts");
    }
    assert!(cases.iter().any(|c| c.too_long));
}

#[test]
fn tokenize_matches_clip_on_corpus() {
    check_cases(&corpus());
}

/// Extra corpora in the same layout (e.g. larger fuzz runs of the generator), named by
/// `CLIP_TOKENIZER_EXTRA_CORPUS=path.jsonl`: `cargo test -p clip-tokenizer -- --ignored`.
#[test]
#[ignore]
fn tokenize_matches_clip_on_extra_corpus() {
    let path =
        std::env::var("CLIP_TOKENIZER_EXTRA_CORPUS").expect("set CLIP_TOKENIZER_EXTRA_CORPUS");
    let bytes = std::fs::read(&path).unwrap();
    check_cases(&common::cases_from(common::parse_jsonl(&bytes, &path)));
}

fn check_cases(cases: &[common::Case]) {
    let tok = Tokenizer::openai();
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let got = trimmed(
            tok.tokenize(&case.text, DEFAULT_CONTEXT_LENGTH, true)
                .unwrap(),
        );
        let too_long = matches!(
            tok.tokenize(&case.text, DEFAULT_CONTEXT_LENGTH, false),
            Err(TokenizerError::TooLong { .. })
        );
        if got != case.ids || too_long != case.too_long {
            mismatches.push(format!(
                "#{i} [{}] {:?}\n    clean ref {:?}\n    clean got {:?}\n    ids ref {:?}\n    ids got {:?}\n    too_long ref {} got {}",
                case.cat,
                case.text,
                case.clean,
                clean_text(&case.text),
                case.ids,
                got,
                case.too_long,
                too_long
            ));
        }
    }
    println!(
        "corpus: {} texts, {} mismatches",
        cases.len(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} texts differ from clip.tokenize; first ones:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn clean_text_matches_clip_on_corpus() {
    let cases = corpus();
    let bad: Vec<String> = cases
        .iter()
        .filter(|c| clean_text(&c.text) != c.clean)
        .map(|c| {
            format!(
                "[{}] {:?}: ref {:?} got {:?}",
                c.cat,
                c.text,
                c.clean,
                clean_text(&c.text)
            )
        })
        .collect();
    println!(
        "clean_text: {} texts, {} mismatches",
        cases.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
}
