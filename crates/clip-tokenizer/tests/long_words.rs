//! Long unspaced words (fixtures/tokenizer/long_words.jsonl.gz, scripts/fixtures/gen_tokenizer_long.py):
//! OpenAI's quadratic BPE loop and our near-linear merging must give the same ids, in full and truncated.

mod common;

use clip_tokenizer::{Tokenizer, DEFAULT_CONTEXT_LENGTH};

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .expect("ids array")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn long_words_match_clip() {
    let rows = common::read_jsonl("long_words.jsonl.gz");
    assert!(rows.len() >= 48, "only {} rows", rows.len());
    let tok = Tokenizer::openai();
    let mut longest = 0;
    for row in &rows {
        let text = row["text"].as_str().expect("text");
        longest = longest.max(text.chars().count());
        assert_eq!(tok.encode(text), ids(&row["ids"]), "encode {:.40}…", text);
        let mut truncated = tok
            .tokenize(text, DEFAULT_CONTEXT_LENGTH, true)
            .expect("truncating never fails");
        while truncated.last() == Some(&0) {
            truncated.pop();
        }
        assert_eq!(truncated, ids(&row["truncated"]), "tokenize {:.40}…", text);
    }
    assert!(longest >= 20_000, "longest word only {longest} characters");
}
