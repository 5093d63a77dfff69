//! Readers for the vocabulary files CLIP checkpoints ship with:
//! - OpenAI's `bpe_simple_vocab_16e6.txt.gz`, read as `SimpleTokenizer.__init__` does (merges are
//!   lines 1..=48894; the vocabulary is the 256 byte characters, the same with `</w>`, the joined
//!   merges, then `<|startoftext|>` and `<|endoftext|>`);
//! - Hugging Face `vocab.json` + `merges.txt` (`#version` header lines skipped, as the
//!   `tokenizers` library does);
//! - Hugging Face `tokenizer.json` (a BPE model; merges as `"a b"` strings or `["a", "b"]` pairs).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::bytes_unicode::{byte_to_char, vocab_byte_order};
use crate::error::TokenizerError;

/// Merges `SimpleTokenizer` reads from the `.txt.gz` file: `merges[1:49152-256-2+1]`.
pub(crate) const OPENAI_MERGES: usize = 49152 - 256 - 2;

/// A vocabulary and its merges, as read from files.
pub(crate) struct VocabFiles {
    /// Token text to id (later duplicates win, as in a Python dict built in order).
    pub(crate) encoder: HashMap<String, u32>,
    /// Id to token text.
    pub(crate) decoder: HashMap<u32, String>,
    pub(crate) merges: Vec<(String, String)>,
    /// The file to name in errors found later.
    pub(crate) path: PathBuf,
}

fn format_err(path: &Path, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A vocabulary file: a regular file within the vocabulary size limit.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    Ok(clip_io::read_input(path, clip_io::Input::Vocabulary)?)
}

fn read_text(path: &Path) -> Result<String, TokenizerError> {
    String::from_utf8(read_bytes(path)?)
        .map_err(|e| format_err(path, format!("not UTF-8 text: {e}")))
}

/// Splits a merges line into its two symbols (Python's `str.split()`).
fn merge_pair(line: &str, path: &Path, line_no: usize) -> Result<(String, String), TokenizerError> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
        _ => Err(format_err(
            path,
            format!("line {line_no}: expected a merge of two symbols, found {line:?}"),
        )),
    }
}

/// Ids at or above this are refused: the decoder table is sized by the largest id (CLIP's is 49407).
pub(crate) const MAX_VOCAB_ID: u32 = 1 << 22;

/// Reads OpenAI's gzipped merges file (`bytes` as read from `path`).
pub(crate) fn parse_bpe_gz(bytes: &[u8], path: &Path) -> Result<VocabFiles, TokenizerError> {
    let mut text = String::new();
    // A small gzip file can inflate without bound: stop at the limit for vocabularies.
    let max = clip_io::limit(clip_io::Input::Vocabulary);
    flate2::read::GzDecoder::new(bytes)
        .take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| format_err(path, format!("not a gzipped UTF-8 text file: {e}")))?;
    if text.len() as u64 > max {
        return Err(format_err(
            path,
            format!("it inflates to more than {max} bytes, larger than any vocabulary"),
        ));
    }
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.len() < OPENAI_MERGES + 1 {
        return Err(format_err(
            path,
            format!(
                "{} lines, but a CLIP merges file has a header and at least {OPENAI_MERGES} merges",
                lines.len()
            ),
        ));
    }
    let merges = lines[1..=OPENAI_MERGES]
        .iter()
        .enumerate()
        .map(|(i, line)| merge_pair(line, path, i + 2))
        .collect::<Result<Vec<_>, _>>()?;
    let table = byte_to_char();
    let bytes_vocab: Vec<String> = vocab_byte_order()
        .iter()
        .map(|&b| table[b as usize].to_string())
        .collect();
    let mut vocab: Vec<String> = bytes_vocab.clone();
    vocab.extend(bytes_vocab.iter().map(|s| format!("{s}</w>")));
    vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    vocab.push("<|startoftext|>".to_string());
    vocab.push("<|endoftext|>".to_string());
    let mut encoder = HashMap::with_capacity(vocab.len());
    let mut decoder = HashMap::with_capacity(vocab.len());
    for (id, token) in vocab.into_iter().enumerate() {
        encoder.insert(token.clone(), id as u32);
        decoder.insert(id as u32, token);
    }
    Ok(VocabFiles {
        encoder,
        decoder,
        merges,
        path: path.to_path_buf(),
    })
}

/// Reads a `{"token": id, ...}` object.
fn vocab_from_json(value: &Value, path: &Path, what: &str) -> Result<VocabFiles, TokenizerError> {
    let object = value
        .as_object()
        .ok_or_else(|| format_err(path, format!("{what} is not a JSON object of token ids")))?;
    let mut encoder = HashMap::with_capacity(object.len());
    let mut decoder = HashMap::with_capacity(object.len());
    for (token, id) in object {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&i| i < MAX_VOCAB_ID)
            .ok_or_else(|| {
                format_err(
                    path,
                    format!("{what}: token {token:?} has id {id}, not an id below {MAX_VOCAB_ID}"),
                )
            })?;
        encoder.insert(token.clone(), id);
        decoder.insert(id, token.clone());
    }
    Ok(VocabFiles {
        encoder,
        decoder,
        merges: Vec::new(),
        path: path.to_path_buf(),
    })
}

fn parse_json(text: &str, path: &Path) -> Result<Value, TokenizerError> {
    serde_json::from_str(text).map_err(|e| format_err(path, format!("invalid JSON: {e}")))
}

/// Reads Hugging Face `vocab.json` and `merges.txt`.
pub(crate) fn parse_vocab_merges(
    vocab_json: &Path,
    merges_txt: &Path,
) -> Result<VocabFiles, TokenizerError> {
    let vocab = parse_json(&read_text(vocab_json)?, vocab_json)?;
    let mut files = vocab_from_json(&vocab, vocab_json, "vocab.json")?;
    let merges_text = read_text(merges_txt)?;
    for (i, line) in merges_text.lines().enumerate() {
        if line.starts_with("#version") || line.trim().is_empty() {
            continue;
        }
        files.merges.push(merge_pair(line, merges_txt, i + 1)?);
    }
    files.path = merges_txt.to_path_buf();
    Ok(files)
}

/// Reads a Hugging Face `tokenizer.json` holding a BPE model.
pub(crate) fn parse_tokenizer_json(path: &Path) -> Result<VocabFiles, TokenizerError> {
    let root = parse_json(&read_text(path)?, path)?;
    let model = root
        .get("model")
        .ok_or_else(|| format_err(path, "no \"model\" entry: not a tokenizer.json"))?;
    if let Some(kind) = model.get("type").and_then(Value::as_str) {
        if kind != "BPE" {
            return Err(format_err(
                path,
                format!("model type {kind:?}, but CLIP uses BPE"),
            ));
        }
    }
    match model.get("end_of_word_suffix").and_then(Value::as_str) {
        Some("</w>") | None => {}
        Some(other) => {
            return Err(format_err(
                path,
                format!("end_of_word_suffix {other:?}, but CLIP's BPE uses \"</w>\""),
            ))
        }
    }
    let vocab = model
        .get("vocab")
        .ok_or_else(|| format_err(path, "no model.vocab entry"))?;
    let mut files = vocab_from_json(vocab, path, "model.vocab")?;
    let merges = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| format_err(path, "no model.merges list"))?;
    for (i, merge) in merges.iter().enumerate() {
        let pair = match merge {
            Value::String(s) => merge_pair(s, path, i + 1).ok(),
            Value::Array(parts) => match parts.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        };
        let pair = pair
            .ok_or_else(|| format_err(path, format!("model.merges[{i}] is not a pair: {merge}")))?;
        files.merges.push(pair);
    }
    // Added tokens (CLIP's start and end tokens) are normally in the vocabulary already.
    if let Some(added) = root.get("added_tokens").and_then(Value::as_array) {
        for token in added {
            let (Some(content), Some(id)) = (
                token.get("content").and_then(Value::as_str),
                token
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok()),
            ) else {
                return Err(format_err(
                    path,
                    format!("added token without content and id: {token}"),
                ));
            };
            files.encoder.entry(content.to_string()).or_insert(id);
            files
                .decoder
                .entry(id)
                .or_insert_with(|| content.to_string());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_lines_need_two_symbols() {
        let p = Path::new("m.txt");
        assert_eq!(merge_pair("a b", p, 1).unwrap(), ("a".into(), "b".into()));
        let err = merge_pair("a b c", p, 7).unwrap_err().to_string();
        assert_eq!(
            err,
            "m.txt: line 7: expected a merge of two symbols, found \"a b c\""
        );
    }

    #[test]
    fn short_gz_file_is_rejected() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"#version: 0.2\ni n\n").unwrap();
        let bytes = gz.finish().unwrap();
        let err = parse_bpe_gz(&bytes, Path::new("x.txt.gz"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("x.txt.gz: 3 lines"), "{err}");
        let err = parse_bpe_gz(b"not gzip", Path::new("y.gz"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("y.gz: not a gzipped UTF-8 text file"),
            "{err}"
        );
    }

    #[test]
    fn gzip_bombs_stop_at_the_vocabulary_limit() {
        // 65 MiB of newlines compress to about 64 KiB; inflating stops at the 64 MiB limit.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![b'\n'; 1 << 20];
        for _ in 0..65 {
            std::io::Write::write_all(&mut gz, &chunk).unwrap();
        }
        let bytes = gz.finish().unwrap();
        assert!(bytes.len() < 1 << 20);
        let err = parse_bpe_gz(&bytes, Path::new("bomb.gz"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("inflates to more than 67108864 bytes"),
            "{err}"
        );
    }
}
