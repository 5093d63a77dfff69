//! The tokenizer: `SimpleTokenizer.encode`/`decode` and `clip.tokenize` of clip-anytorch 2.6.0
//! (clip/simple_tokenizer.py, clip/clip.py), with loaders for every vocabulary file layout.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::bpe::Bpe;
use crate::bytes_unicode::char_to_byte;
use crate::clean::clean_text;
use crate::error::{preview, TokenizerError};
use crate::hf_normalize::{hf_normalize, TextCleaning};
use crate::pretokenize::{split_words, split_words_exact};
use crate::vocab_files::{
    parse_bpe_gz, parse_tokenizer_json, parse_vocab_merges, read_bytes, VocabFiles,
};

/// The context length of every CLIP model.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;
/// The largest context length accepted (rows are allocated at this length before any text is read;
/// CLIP models use 77, long-context variants a few hundred).
pub const MAX_CONTEXT_LENGTH: usize = 8192;

const SOT: &str = "<|startoftext|>";
const EOT: &str = "<|endoftext|>";
/// OpenAI's vocabulary, embedded so that [`Tokenizer::openai`] needs no file.
static OPENAI_BPE: &[u8] = include_bytes!("../data/bpe_simple_vocab_16e6.txt.gz");
const OPENAI_FILE_NAME: &str = "bpe_simple_vocab_16e6.txt.gz";
/// Characters of the text shown in a [`TokenizerError::TooLong`] message.
const PREVIEW_CHARS: usize = 40;

/// CLIP's tokenizer. Immutable, `Send + Sync`; cloning shares the vocabulary.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
    cleaning: TextCleaning,
}

struct Inner {
    bpe: Bpe,
    /// Bytes each id decodes to (through the byte decoder).
    decoder: Vec<Option<Box<[u8]>>>,
    /// Vocabulary text of each id.
    tokens: Vec<Option<String>>,
    sot: u32,
    eot: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("sot", &self.inner.sot)
            .field("eot", &self.inner.eot)
            .finish()
    }
}

impl Tokenizer {
    /// OpenAI's tokenizer from the embedded `bpe_simple_vocab_16e6.txt.gz` (parsed once).
    pub fn openai() -> Tokenizer {
        static OPENAI: OnceLock<Tokenizer> = OnceLock::new();
        OPENAI
            .get_or_init(|| {
                // The embedded file is part of this crate and checked by its tests.
                parse_bpe_gz(OPENAI_BPE, Path::new(OPENAI_FILE_NAME))
                    .and_then(Tokenizer::from_files)
                    .expect("the embedded CLIP vocabulary is valid")
            })
            .clone()
    }

    /// OpenAI's vocabulary as the Hugging Face `vocab.json` and `merges.txt` texts (ids in order, merges after a
    /// `#version: 0.2` line), for writing a model directory that transformers' `CLIPTokenizer` reads.
    pub fn openai_vocab_merges() -> (String, String) {
        // The embedded file is part of this crate and checked by its tests.
        let files = parse_bpe_gz(OPENAI_BPE, Path::new(OPENAI_FILE_NAME))
            .expect("the embedded CLIP vocabulary is valid");
        let mut ids: Vec<(&u32, &String)> = files.decoder.iter().collect();
        ids.sort_unstable();
        let entries: Vec<String> = ids
            .iter()
            .map(|(id, token)| {
                let key = serde_json::to_string(token).expect("a string serialises");
                format!("{key}: {id}")
            })
            .collect();
        let vocab = format!("{{{}}}\n", entries.join(", "));
        let mut merges = String::from("#version: 0.2\n");
        for (a, b) in &files.merges {
            merges.push_str(a);
            merges.push(' ');
            merges.push_str(b);
            merges.push('\n');
        }
        (vocab, merges)
    }

    /// From a `bpe_simple_vocab_16e6.txt.gz`-style merges file.
    pub fn from_bpe_gz(path: &Path) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_files(parse_bpe_gz(&read_bytes(path)?, path)?)
    }

    /// From Hugging Face `vocab.json` and `merges.txt`.
    pub fn from_vocab_merges(
        vocab_json: &Path,
        merges_txt: &Path,
    ) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_files(parse_vocab_merges(vocab_json, merges_txt)?)
    }

    /// From a Hugging Face `tokenizer.json` (CLIP's BPE model; its normalizer and pre-tokenizer
    /// settings are not used: cleaning and splitting are always `clip.tokenize`'s).
    pub fn from_tokenizer_json(path: &Path) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_files(parse_tokenizer_json(path)?)
    }

    /// A file (`.txt.gz`, `tokenizer.json`, `vocab.json` with `merges.txt` beside it, or
    /// `merges.txt` with `vocab.json` beside it) or a directory holding tokenizer files.
    pub fn from_path(path: &Path) -> Result<Tokenizer, TokenizerError> {
        if path.is_dir() {
            return Tokenizer::from_model_dir(path)?.ok_or_else(|| TokenizerError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let sibling = |n: &str| path.with_file_name(n);
        if name.ends_with(".gz") {
            Tokenizer::from_bpe_gz(path)
        } else if name == "merges.txt" {
            Tokenizer::from_vocab_merges(&sibling("vocab.json"), path)
        } else if name == "vocab.json" {
            Tokenizer::from_vocab_merges(path, &sibling("merges.txt"))
        } else if name.ends_with(".json") {
            Tokenizer::from_tokenizer_json(path)
        } else if !path.exists() {
            Err(TokenizerError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            })
        } else {
            Err(TokenizerError::Format {
                path: path.to_path_buf(),
                reason: "not a tokenizer file (expected *.txt.gz, tokenizer.json, vocab.json or merges.txt)"
                    .to_string(),
            })
        }
    }

    /// The tokenizer files in `dir` (or in its `tokenizer/` subdirectory, the diffusers layout):
    /// `tokenizer.json`, else `vocab.json` + `merges.txt`, else `bpe_simple_vocab_16e6.txt.gz`.
    /// `Ok(None)` when there are none.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Tokenizer>, TokenizerError> {
        if let Err(source) = std::fs::read_dir(dir) {
            return Err(TokenizerError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
        for candidate in [dir.to_path_buf(), dir.join("tokenizer")] {
            if let Some(t) = Tokenizer::from_dir_files(&candidate)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn from_dir_files(dir: &Path) -> Result<Option<Tokenizer>, TokenizerError> {
        let tokenizer_json = dir.join("tokenizer.json");
        let vocab_json = dir.join("vocab.json");
        let merges_txt = dir.join("merges.txt");
        let gz = dir.join(OPENAI_FILE_NAME);
        if tokenizer_json.is_file() {
            Tokenizer::from_tokenizer_json(&tokenizer_json).map(Some)
        } else if vocab_json.is_file() || merges_txt.is_file() {
            if !(vocab_json.is_file() && merges_txt.is_file()) {
                let (found, missing) = if vocab_json.is_file() {
                    (vocab_json, "merges.txt")
                } else {
                    (merges_txt, "vocab.json")
                };
                return Err(TokenizerError::Format {
                    path: found,
                    reason: format!("{missing} is missing beside it"),
                });
            }
            Tokenizer::from_vocab_merges(&vocab_json, &merges_txt).map(Some)
        } else if gz.is_file() {
            Tokenizer::from_bpe_gz(&gz).map(Some)
        } else {
            Ok(None)
        }
    }

    fn from_files(files: VocabFiles) -> Result<Tokenizer, TokenizerError> {
        let format_err = |reason: String| TokenizerError::Format {
            path: files.path.clone(),
            reason,
        };
        let special = |name: &str| {
            files
                .encoder
                .get(name)
                .copied()
                .ok_or_else(|| format_err(format!("the vocabulary has no {name} token")))
        };
        let sot = special(SOT)?;
        let eot = special(EOT)?;
        let bpe = Bpe::new(&files.encoder, &files.merges).map_err(format_err)?;
        let size = files.decoder.keys().max().map_or(0, |&m| m as usize + 1);
        let mut decoder: Vec<Option<Box<[u8]>>> = vec![None; size];
        let mut tokens: Vec<Option<String>> = vec![None; size];
        for (&id, token) in &files.decoder {
            decoder[id as usize] = Some(token_bytes(token).into());
            tokens[id as usize] = Some(token.clone());
        }
        Ok(Tokenizer {
            inner: Arc::new(Inner {
                bpe,
                decoder,
                tokens,
                sot,
                eot,
            }),
            cleaning: TextCleaning::OpenAi,
        })
    }

    /// The same vocabulary with another text cleaning (OpenAI's by default).
    pub fn with_cleaning(mut self, cleaning: TextCleaning) -> Tokenizer {
        self.cleaning = cleaning;
        self
    }

    pub fn cleaning(&self) -> TextCleaning {
        self.cleaning
    }

    /// Cleans `text` and encodes it to BPE ids, without start and end tokens
    /// (`SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        self.encode_into(text, usize::MAX, &mut ids);
        ids
    }

    /// Appends the ids of `text` to `ids`, stopping after the word that takes `ids` past `max_ids` (the
    /// words after it cannot change the ids before it, so a truncating caller need not encode them).
    fn encode_into(&self, text: &str, max_ids: usize, ids: &mut Vec<u32>) {
        match self.cleaning {
            TextCleaning::OpenAi => {
                for word in split_words(&clean_text(text)) {
                    if ids.len() > max_ids {
                        return;
                    }
                    // Python finds these two in its BPE cache, so they are never split.
                    match word {
                        SOT => ids.push(self.inner.sot),
                        EOT => ids.push(self.inner.eot),
                        _ => self.inner.bpe.encode_word(word.as_bytes(), ids),
                    }
                }
            }
            TextCleaning::HuggingFace => {
                // `tokenizers` takes the special tokens out of the raw text first (exact matches only); the
                // pieces between are normalised and split, and a special token's spelling inside them is BPE'd
                // like any word.
                let mut rest = text;
                loop {
                    let next = [(SOT, self.inner.sot), (EOT, self.inner.eot)]
                        .into_iter()
                        .filter_map(|(s, id)| rest.find(s).map(|at| (at, s.len(), id)))
                        .min();
                    let end = next.map_or(rest.len(), |(at, _, _)| at);
                    for word in split_words_exact(&hf_normalize(&rest[..end])) {
                        if ids.len() > max_ids {
                            return;
                        }
                        self.inner.bpe.encode_word(word.as_bytes(), ids);
                    }
                    match next {
                        Some((at, len, id)) => {
                            ids.push(id);
                            rest = &rest[at + len..];
                        }
                        None => break,
                    }
                }
            }
        }
    }

    /// Ids back to text (`SimpleTokenizer.decode`): token bytes joined, decoded as UTF-8 with
    /// U+FFFD for invalid sequences, `</w>` replaced by a space. Ids outside the vocabulary
    /// are skipped (Python raises `KeyError`).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if let Some(Some(b)) = self.inner.decoder.get(id as usize) {
                bytes.extend_from_slice(b);
            }
        }
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }

    /// `clip.tokenize(text, context_length, truncate)` for one text: start token, ids, end
    /// token, padded with 0 to `context_length`. Too long: [`TokenizerError::TooLong`], or with
    /// `truncate`, cut to `context_length` with the end token last.
    pub fn tokenize(
        &self,
        text: &str,
        context_length: usize,
        truncate: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        if !(2..=MAX_CONTEXT_LENGTH).contains(&context_length) {
            return Err(TokenizerError::ContextLength { context_length });
        }
        let mut tokens = Vec::with_capacity(context_length);
        tokens.push(self.inner.sot);
        // Truncating needs only the first context_length - 2 ids and one more to know the text is cut.
        let max_ids = if truncate {
            context_length - 1
        } else {
            usize::MAX
        };
        self.encode_into(text, max_ids, &mut tokens);
        tokens.push(self.inner.eot);
        if tokens.len() > context_length {
            if !truncate {
                return Err(TokenizerError::TooLong {
                    preview: preview(text, PREVIEW_CHARS),
                    tokens: tokens.len(),
                    context_length,
                });
            }
            tokens.truncate(context_length);
            tokens[context_length - 1] = self.inner.eot;
        }
        tokens.resize(context_length, 0);
        Ok(tokens)
    }

    /// `clip.tokenize(texts, context_length, truncate)`: one row per text; the first too-long
    /// text fails the batch, as in Python.
    pub fn tokenize_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        context_length: usize,
        truncate: bool,
    ) -> Result<Vec<Vec<u32>>, TokenizerError> {
        texts
            .iter()
            .map(|t| self.tokenize(t.as_ref(), context_length, truncate))
            .collect()
    }

    /// Id of `<|startoftext|>` (49406 for OpenAI's vocabulary).
    pub fn sot_id(&self) -> u32 {
        self.inner.sot
    }

    /// Id of `<|endoftext|>` (49407 for OpenAI's vocabulary).
    pub fn eot_id(&self) -> u32 {
        self.inner.eot
    }

    /// Number of ids (the largest id plus one; 49408 for OpenAI's vocabulary).
    pub fn vocab_size(&self) -> usize {
        self.inner.decoder.len()
    }

    /// The vocabulary entry of `id` as stored (byte-level characters, `</w>` kept).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.inner.tokens.get(id as usize)?.as_deref()
    }
}

/// A token's bytes through `byte_decoder`; characters outside the byte alphabet (not in CLIP's
/// vocabulary) keep their UTF-8 bytes.
fn token_bytes(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

// Keeps the public type usable across threads; a compile-time check.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
};
