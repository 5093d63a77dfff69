//! Typed errors of the tokenizer: file loading (with the path and, where known, the line) and
//! `clip.tokenize`'s over-long-text condition.

use std::path::PathBuf;

/// Everything that can go wrong while loading a vocabulary or tokenizing.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A directory could not be listed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read: missing, not a regular file, or over the size limit.
    #[error(transparent)]
    File(#[from] clip_io::FileError),
    /// A tokenizer file is malformed or is not a CLIP byte-level BPE vocabulary.
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// A path holds no tokenizer files.
    #[error(
        "no tokenizer files in {} (expected tokenizer.json, vocab.json with merges.txt, \
         or bpe_simple_vocab_16e6.txt.gz)",
        path.display()
    )]
    NotFound { path: PathBuf },
    /// The text needs more tokens (start and end tokens included) than the context holds.
    #[error(
        "text \"{preview}\" is {tokens} tokens, more than the context length {context_length}"
    )]
    TooLong {
        /// The start of the text, cut with '…' when longer.
        preview: String,
        /// Tokens the text needs, start and end tokens included.
        tokens: usize,
        context_length: usize,
    },
    /// The context cannot hold the start and end tokens, or is beyond [`crate::MAX_CONTEXT_LENGTH`].
    #[error(
        "context length {context_length} is out of range: it must be at least 2 (start and end tokens) \
         and at most {}",
        crate::MAX_CONTEXT_LENGTH
    )]
    ContextLength { context_length: usize },
}

/// The first `max_chars` characters of `text` on one line, with '…' when cut, for messages.
pub(crate) fn preview(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(max_chars) {
        // Keep the message on one line whatever the text holds.
        if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_long_is_one_clear_line() {
        let e = TokenizerError::TooLong {
            preview: preview("a very long caption indeed", 14),
            tokens: 93,
            context_length: 77,
        };
        assert_eq!(
            e.to_string(),
            "text \"a very long ca…\" is 93 tokens, more than the context length 77"
        );
    }

    #[test]
    fn preview_keeps_short_text_and_flattens_newlines() {
        assert_eq!(preview("short", 14), "short");
        assert_eq!(preview("a\nb", 14), "a b");
        assert_eq!(preview("", 14), "");
    }
}
