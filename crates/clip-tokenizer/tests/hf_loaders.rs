//! Loading Hugging Face CLIPTokenizer files (written by transformers 5.23 / tokenizers 0.23 from
//! the same vocabulary: fixtures/tokenizer/hf/, gzipped to fit the fixture budget) and OpenAI's
//! `.txt.gz`: every loader must give the reference ids on the whole corpus.

mod common;

use std::path::Path;

use clip_tokenizer::{Tokenizer, TokenizerError, DEFAULT_CONTEXT_LENGTH};
use common::TempDir;

/// The HF files unpacked into a fresh directory.
fn hf_dir(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    for file in ["vocab.json", "merges.txt", "tokenizer.json"] {
        std::fs::write(
            dir.join(file),
            common::read_fixture(&format!("hf/{file}.gz")),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("tokenizer_config.json"),
        common::read_fixture("hf/tokenizer_config.json"),
    )
    .unwrap();
    dir
}

fn assert_matches_reference(tok: &Tokenizer, what: &str) {
    assert_eq!(tok.vocab_size(), 49408, "{what}");
    assert_eq!((tok.sot_id(), tok.eot_id()), (49406, 49407), "{what}");
    let cases = common::corpus();
    let mut mismatches = 0;
    for case in &cases {
        let mut ids = tok
            .tokenize(&case.text, DEFAULT_CONTEXT_LENGTH, true)
            .unwrap();
        while ids.last() == Some(&0) {
            ids.pop();
        }
        if ids != case.ids {
            mismatches += 1;
            if mismatches <= 5 {
                eprintln!("{what}: {:?}: ref {:?} got {:?}", case.text, case.ids, ids);
            }
        }
    }
    println!("{what}: {} texts, {mismatches} mismatches", cases.len());
    assert_eq!(mismatches, 0, "{what}");
}

#[test]
fn vocab_json_and_merges_txt() {
    let dir = hf_dir("vocab-merges");
    let tok =
        Tokenizer::from_vocab_merges(&dir.join("vocab.json"), &dir.join("merges.txt")).unwrap();
    assert_matches_reference(&tok, "vocab.json + merges.txt");
}

#[test]
fn tokenizer_json() {
    let dir = hf_dir("tokenizer-json");
    let tok = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json")).unwrap();
    assert_matches_reference(&tok, "tokenizer.json");
}

#[test]
fn bpe_gz_file() {
    let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bpe_simple_vocab_16e6.txt.gz");
    let tok = Tokenizer::from_bpe_gz(&gz).unwrap();
    assert_matches_reference(&tok, "bpe_simple_vocab_16e6.txt.gz");
    let tok = Tokenizer::from_path(&gz).unwrap();
    assert_eq!(
        tok.encode("a photo of a dog."),
        [320, 1125, 539, 320, 1929, 269]
    );
}

#[test]
fn from_path_and_model_dir_pick_the_right_files() {
    let dir = hf_dir("paths");
    let dog = [320, 1125, 539, 320, 1929, 269];
    for p in ["tokenizer.json", "vocab.json", "merges.txt"] {
        assert_eq!(
            Tokenizer::from_path(&dir.join(p))
                .unwrap()
                .encode("a photo of a dog."),
            dog,
            "{p}"
        );
    }
    assert_eq!(
        Tokenizer::from_path(&dir)
            .unwrap()
            .encode("a photo of a dog."),
        dog
    );
    assert!(Tokenizer::from_model_dir(&dir).unwrap().is_some());

    // Only vocab.json + merges.txt.
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert!(Tokenizer::from_model_dir(&dir).unwrap().is_some());

    // The diffusers layout: files in tokenizer/.
    let outer = TempDir::new("diffusers");
    std::fs::rename(&*dir, outer.join("tokenizer")).unwrap();
    assert_eq!(
        Tokenizer::from_path(&outer)
            .unwrap()
            .encode("a photo of a dog."),
        dog
    );

    // vocab.json alone is an error naming what is missing.
    let half = TempDir::new("half");
    std::fs::copy(outer.join("tokenizer/vocab.json"), half.join("vocab.json")).unwrap();
    let err = Tokenizer::from_model_dir(&half).unwrap_err();
    assert!(matches!(err, TokenizerError::Format { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("vocab.json: merges.txt is missing beside it"),
        "{err}"
    );
}

#[test]
fn empty_dir_has_no_tokenizer() {
    let dir = TempDir::new("empty");
    assert!(Tokenizer::from_model_dir(&dir).unwrap().is_none());
    let err = Tokenizer::from_path(&dir).unwrap_err();
    assert!(matches!(err, TokenizerError::NotFound { .. }), "{err}");
    let err = Tokenizer::from_model_dir(&dir.join("missing")).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err}");
}

#[test]
fn malformed_files_are_format_errors() {
    let dir = TempDir::new("malformed");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let bad_json = write("tokenizer.json", "{\"model\": ");
    let err = Tokenizer::from_tokenizer_json(&bad_json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer.json: invalid JSON"), "{err}");

    let wordpiece = write(
        "wp.json",
        r#"{"model": {"type": "WordPiece", "vocab": {}}}"#,
    );
    let err = Tokenizer::from_path(&wordpiece).unwrap_err().to_string();
    assert!(
        err.contains("model type \"WordPiece\", but CLIP uses BPE"),
        "{err}"
    );

    let vocab = write(
        "vocab.json",
        r#"{"a": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}"#,
    );
    let merges = write("merges.txt", "#version: 0.2\na b\n");
    let err = Tokenizer::from_vocab_merges(&vocab, &merges)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a CLIP byte-level BPE vocabulary"),
        "{err}"
    );

    let merges = write("merges.txt", "#version: 0.2\na b c\n");
    let err = Tokenizer::from_vocab_merges(&vocab, &merges)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("merges.txt: line 2: expected a merge of two symbols"),
        "{err}"
    );

    let err = Tokenizer::from_path(&dir.join("nothing.txt")).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err}");
    let other = write("notes.txt", "hello");
    let err = Tokenizer::from_path(&other).unwrap_err();
    assert!(matches!(err, TokenizerError::Format { .. }), "{err}");
}

#[test]
fn written_vocabulary_files_equal_transformers_files() {
    let (vocab, merges) = Tokenizer::openai_vocab_merges();
    let ours: serde_json::Value = serde_json::from_str(&vocab).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&common::read_fixture("hf/vocab.json.gz")).unwrap();
    assert_eq!(ours, theirs);
    let theirs = String::from_utf8(common::read_fixture("hf/merges.txt.gz")).unwrap();
    assert_eq!(merges.trim_end(), theirs.trim_end());
    let dir = TempDir::new("written-vocab");
    std::fs::write(dir.join("vocab.json"), vocab).unwrap();
    std::fs::write(dir.join("merges.txt"), merges).unwrap();
    let tok = Tokenizer::from_model_dir(&dir).unwrap().unwrap();
    assert_matches_reference(&tok, "written files");
}
