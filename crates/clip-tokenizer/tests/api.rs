//! The public API: `clip.tokenize`'s context length, truncation and over-long error, batches,
//! decoding (against `SimpleTokenizer.decode` references in fixtures/tokenizer/decode.jsonl),
//! and use from several threads.

mod common;

use clip_tokenizer::{Tokenizer, TokenizerError, DEFAULT_CONTEXT_LENGTH};

#[test]
fn openai_vocabulary_constants() {
    let tok = Tokenizer::openai();
    assert_eq!(tok.vocab_size(), 49408);
    assert_eq!(tok.sot_id(), 49406);
    assert_eq!(tok.eot_id(), 49407);
    assert_eq!(DEFAULT_CONTEXT_LENGTH, 77);
    assert_eq!(tok.id_to_token(49406), Some("<|startoftext|>"));
    assert_eq!(tok.id_to_token(320), Some("a</w>"));
    assert_eq!(tok.id_to_token(49408), None);
}

// Expected rows from clip-anytorch 2.6.0: `clip.tokenize(text, context_length=n, truncate=t)`.
#[test]
fn context_length_and_truncation_match_clip() {
    let tok = Tokenizer::openai();
    assert_eq!(
        tok.tokenize("a photo of a dog", 5, true).unwrap(),
        [49406, 320, 1125, 539, 49407]
    );
    assert_eq!(
        tok.tokenize("a photo of a dog", 2, true).unwrap(),
        [49406, 49407]
    );
    assert_eq!(
        tok.tokenize_batch(&["a photo of a dog", ""], 8, false)
            .unwrap(),
        [
            vec![49406, 320, 1125, 539, 320, 1929, 49407, 0],
            vec![49406, 49407, 0, 0, 0, 0, 0, 0]
        ]
    );
    let err = tok.tokenize("a photo of a dog", 5, false).unwrap_err();
    assert!(matches!(
        err,
        TokenizerError::TooLong {
            tokens: 7,
            context_length: 5,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "text \"a photo of a dog\" is 7 tokens, more than the context length 5"
    );
}

#[test]
fn too_long_message_is_one_line_with_a_preview() {
    let tok = Tokenizer::openai();
    let text = format!("a very long caption\n{}", "dog ".repeat(100));
    let err = tok
        .tokenize(&text, DEFAULT_CONTEXT_LENGTH, false)
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        "text \"a very long caption dog dog dog dog dog …\" is 106 tokens, more than the context length 77"
    );
    assert!(!msg.contains('\n'));
    let row = tok.tokenize(&text, DEFAULT_CONTEXT_LENGTH, true).unwrap();
    assert_eq!(row.len(), 77);
    assert_eq!(row[76], 49407);
}

#[test]
fn tiny_context_is_an_error() {
    let tok = Tokenizer::openai();
    for n in [0, 1] {
        let err = tok.tokenize("", n, true).unwrap_err();
        assert!(
            matches!(err, TokenizerError::ContextLength { context_length } if context_length == n)
        );
    }
}

#[test]
fn batch_fails_on_the_first_too_long_text() {
    let tok = Tokenizer::openai();
    let long = "cat ".repeat(80);
    let texts = vec!["a dog".to_string(), long.clone()];
    assert!(matches!(
        tok.tokenize_batch(&texts, DEFAULT_CONTEXT_LENGTH, false),
        Err(TokenizerError::TooLong { tokens: 82, .. })
    ));
    let rows = tok
        .tokenize_batch(&texts, DEFAULT_CONTEXT_LENGTH, true)
        .unwrap();
    assert_eq!(
        rows[1],
        tok.tokenize(&long, DEFAULT_CONTEXT_LENGTH, true).unwrap()
    );
}

#[test]
fn too_long_verdict_matches_clip_on_corpus() {
    let tok = Tokenizer::openai();
    for case in common::corpus() {
        let needed = tok.encode(&case.text).len() + 2;
        assert_eq!(
            needed > DEFAULT_CONTEXT_LENGTH,
            case.too_long,
            "{:?}",
            case.text
        );
    }
}

#[test]
fn decode_matches_simple_tokenizer() {
    let tok = Tokenizer::openai();
    let rows = common::read_jsonl("decode.jsonl");
    assert!(rows.len() > 200);
    for row in rows {
        let ids: Vec<u32> = row["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            tok.decode(&ids),
            row["text"].as_str().unwrap(),
            "ids {ids:?}"
        );
    }
}

/// Decoding gives back the cleaned text, up to the spaces `</w>` puts after every word and the
/// characters CLIP's split pattern matches with no alternative (whitespace, and U+0345).
#[test]
fn decode_round_trips_clean_text() {
    let tok = Tokenizer::openai();
    let squeeze = |s: &str| {
        s.chars()
            .filter(|&c| !c.is_whitespace() && c != '\u{345}')
            .collect::<String>()
    };
    for case in common::corpus() {
        let ids = tok.encode(&case.text);
        assert_eq!(
            squeeze(&tok.decode(&ids)),
            squeeze(&case.clean),
            "{:?}",
            case.text
        );
    }
}

#[test]
fn shared_across_threads() {
    let tok = Tokenizer::openai();
    let texts: Vec<String> = common::corpus()
        .into_iter()
        .take(400)
        .map(|c| c.text)
        .collect();
    let expected: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (tok, texts, expected) = (tok.clone(), &texts, &expected);
            s.spawn(move || {
                for (t, e) in texts.iter().zip(expected) {
                    assert_eq!(&tok.encode(t), e);
                }
            });
        }
    });
}
