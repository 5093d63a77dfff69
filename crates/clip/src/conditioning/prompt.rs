//! Prompts to token rows the way diffusers' pipelines call their `CLIPTokenizer`: `padding="max_length"`,
//! `max_length=tokenizer.model_max_length` (77), `truncation=True`, padded with the tokenizer's own pad token
//! (read from `tokenizer_config.json` / `special_tokens_map.json` as transformers does), and the "pad to the
//! longest prompt with id 0" variant of MLX's stable_diffusion example (`_tokenize`).
//!
//! transformers splits a prompt on its tokenizer's special tokens before anything else, and the pad token is one
//! of them: with SD2's and SDXL's second tokenizer (pad token `"!"`) every `!` in a prompt becomes id 0, the pad
//! id, instead of the BPE token `!</w>` (id 256) that open_clip's own tokenizer gives (diffusers issue #4153).
//! diffusers-identical conditioning needs the same ids, so prompts are split on such a pad token here too.
//!
//! MLX's tokenizer (used with [`Padding::Longest`]) does no such splitting.
//!
//! Text cleaning is OpenAI's (`clip_tokenizer`). transformers' `CLIPTokenizer` normalises with NFC, whitespace
//! collapsing and lowercasing only (no ftfy, no HTML unescaping), so the two agree on every ordinary prompt and
//! differ on prompts holding HTML entities (`&amp;`) or mojibake.

use std::path::{Path, PathBuf};

use clip_tokenizer::{TextCleaning, Tokenizer};
use serde_json::Value;

use crate::conditioning::preset::PadToken;
use crate::error::{ClipError, Result};

const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
const SPECIAL_TOKENS_MAP: &str = "special_tokens_map.json";

/// How prompt rows are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// diffusers: every row padded to the tokenizer's `model_max_length` (77) with its pad token.
    #[default]
    MaxLength,
    /// MLX's stable_diffusion example: rows padded with id 0 to the longest row among the prompts encoded
    /// together (positive and negative).
    Longest,
}

/// One prompt's ids: start token, text ids, end token (cut to the maximum length), not padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptIds {
    pub ids: Vec<u32>,
    /// Text tokens truncation removed (diffusers warns about the same tokens).
    pub dropped: usize,
}

/// A tokenizer with the padding rules of one text encoder.
#[derive(Debug, Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    pad_id: u32,
    /// The pad token's text when it is an ordinary vocabulary entry (`"!"`): prompts are split on it.
    split_on: Option<String>,
    max_length: usize,
}

impl PromptTokenizer {
    /// Reads the tokenizer in `dir` (diffusers `tokenizer/`), or OpenAI's built-in vocabulary when `dir` is
    /// `None` or holds no vocabulary files (single-file checkpoints carry none; every SD model uses OpenAI's
    /// vocabulary). The pad token and maximum length come from the directory's `tokenizer_config.json` /
    /// `special_tokens_map.json`, else `default_pad` and `context_length`.
    pub fn load(dir: Option<&Path>, default_pad: PadToken, context_length: usize) -> Result<Self> {
        // diffusers tokenizes prompts with transformers' CLIPTokenizer: its normalisation (NFC, whitespace,
        // lowercase), not clip.tokenize's ftfy + HTML unescaping.
        let tokenizer = match dir {
            Some(d) if d.is_dir() => Tokenizer::from_model_dir(d)?,
            _ => None,
        }
        .unwrap_or_else(Tokenizer::openai)
        .with_cleaning(TextCleaning::HuggingFace);
        let settings = match dir {
            Some(d) => TokenizerSettings::read(d)?,
            None => TokenizerSettings::default(),
        };
        let pad = settings
            .pad_token
            .clone()
            .unwrap_or_else(|| default_pad.content().to_string());
        let pad_id = token_id(&tokenizer, &pad).ok_or_else(|| ClipError::Config {
            path: settings.source.clone().unwrap_or_default(),
            reason: format!("pad token {pad:?} is not in the vocabulary"),
        })?;
        let max_length = match settings.model_max_length {
            Some(n) if (2..=context_length).contains(&n) => n,
            // transformers writes a huge sentinel when no maximum was set; the model's positions bound it.
            _ => context_length,
        };
        // The start and end tokens are already matched whole by the BPE tokenizer.
        let split_on =
            (pad_id != tokenizer.eot_id() && pad_id != tokenizer.sot_id()).then_some(pad);
        Ok(Self {
            tokenizer,
            pad_id,
            split_on,
            max_length,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// `[SOT, ids..., EOT]`; over `max_length` tokens, the text is cut so that the row ends
    /// `[..., id_(max-2), EOT]`, as transformers' truncation does. With [`Padding::MaxLength`] the text is
    /// split on a pad token like `"!"` as transformers does; [`Padding::Longest`] follows MLX, whose tokenizer
    /// has no special-token splitting (`!` stays the BPE token `!</w>`).
    pub fn ids(&self, text: &str, padding: Padding) -> PromptIds {
        let body = match padding {
            Padding::MaxLength => self.encode(text),
            Padding::Longest => self.tokenizer.encode(text),
        };
        let keep = self.max_length - 2;
        let dropped = body.len().saturating_sub(keep);
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.tokenizer.sot_id());
        ids.extend_from_slice(&body[..body.len() - dropped]);
        ids.push(self.tokenizer.eot_id());
        PromptIds { ids, dropped }
    }

    /// Text ids without start and end tokens; every occurrence of a split-on pad token is that token's id and
    /// the text between occurrences is encoded piece by piece, as transformers' special-token splitting does.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let Some(token) = self.split_on.as_deref().filter(|t| !t.is_empty()) else {
            return self.tokenizer.encode(text);
        };
        let mut ids = Vec::new();
        for (i, piece) in text.split(token).enumerate() {
            if i > 0 {
                ids.push(self.pad_id);
            }
            ids.extend(self.tokenizer.encode(piece));
        }
        ids
    }

    /// Pads rows of one batch: to `max_length` with the pad token, or to the longest row with 0.
    pub fn pad(&self, rows: &[PromptIds], padding: Padding) -> Vec<Vec<u32>> {
        let (len, pad) = match padding {
            Padding::MaxLength => (self.max_length, self.pad_id),
            Padding::Longest => (rows.iter().map(|r| r.ids.len()).max().unwrap_or(0), 0),
        };
        rows.iter()
            .map(|r| {
                let mut row = r.ids.clone();
                row.resize(len, pad);
                row
            })
            .collect()
    }
}

/// The id whose vocabulary entry is exactly `token` (special tokens included).
fn token_id(tokenizer: &Tokenizer, token: &str) -> Option<u32> {
    if token == "<|endoftext|>" {
        return Some(tokenizer.eot_id());
    }
    if token == "<|startoftext|>" {
        return Some(tokenizer.sot_id());
    }
    (0..tokenizer.vocab_size() as u32).find(|&id| tokenizer.id_to_token(id) == Some(token))
}

/// What transformers reads from a tokenizer directory besides the vocabulary.
#[derive(Debug, Default)]
struct TokenizerSettings {
    pad_token: Option<String>,
    model_max_length: Option<usize>,
    /// The file the pad token came from, for errors.
    source: Option<PathBuf>,
}

impl TokenizerSettings {
    /// `tokenizer_config.json` first, then `special_tokens_map.json` for a pad token it lacks (transformers
    /// applies the map's entries over the config's).
    fn read(dir: &Path) -> Result<Self> {
        let mut out = TokenizerSettings::default();
        for name in [TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let value = read_json(&path)?;
            if let Some(pad) = value.get("pad_token").and_then(token_content) {
                out.pad_token = Some(pad);
                out.source = Some(path.clone());
            }
            if name == TOKENIZER_CONFIG {
                out.model_max_length = value
                    .get("model_max_length")
                    .and_then(Value::as_f64)
                    .filter(|n| n.is_finite() && *n >= 0.0 && *n <= usize::MAX as f64)
                    .map(|n| n as usize);
            }
        }
        Ok(out)
    }
}

/// A special token as written by transformers: a string, or an `AddedToken` object with `content`.
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

pub(crate) use crate::json::read_json;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_end_token() {
        let t = PromptTokenizer::load(None, PadToken::EndOfText, 77).unwrap();
        assert_eq!(t.pad_id(), 49407);
        let long = "cat ".repeat(100);
        let p = t.ids(&long, Padding::MaxLength);
        assert_eq!((p.ids.len(), p.dropped), (77, 25));
        assert_eq!((p.ids[0], p.ids[76]), (49406, 49407));
        let short = t.ids("a cat", Padding::MaxLength);
        assert_eq!(short.dropped, 0);
        let rows = t.pad(&[short.clone(), p], Padding::MaxLength);
        assert_eq!(rows[0].len(), 77);
        assert_eq!(rows[0][4..], [49407; 73]);
        let rows = t.pad(&[short, t.ids("a", Padding::Longest)], Padding::Longest);
        assert_eq!(rows[1], [49406, 320, 49407, 0]);
    }

    #[test]
    fn exclamation_is_id_zero() {
        let t = PromptTokenizer::load(None, PadToken::Exclamation, 77).unwrap();
        assert_eq!(t.pad_id(), 0);
        // transformers 5.23 with stabilityai/stable-diffusion-2-1's tokenizer files: "! !! !!!" is six pad ids
        // (diffusers issue #4153); "wow!" is "wow" then the pad id.
        assert_eq!(t.encode("! !! !!!"), [0; 6]);
        let eot = PromptTokenizer::load(None, PadToken::EndOfText, 77).unwrap();
        assert_eq!(eot.encode("! !! !!!"), [256, 748, 995]);
        let wow = eot.encode("wow");
        assert_eq!(t.encode("wow!"), [wow, vec![0]].concat());
        assert_eq!(t.ids("!", Padding::Longest).ids, [49406, 256, 49407]);
        assert_eq!(t.ids("!", Padding::MaxLength).ids, [49406, 0, 49407]);
    }

    #[test]
    fn special_token_forms() {
        assert_eq!(
            token_content(&serde_json::json!({"content": "!", "lstrip": false})),
            Some("!".into())
        );
        assert_eq!(
            token_content(&serde_json::json!("<|endoftext|>")),
            Some("<|endoftext|>".into())
        );
        assert_eq!(token_content(&Value::Null), None);
    }
}
