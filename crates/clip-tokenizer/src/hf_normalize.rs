//! The text normalisation of Hugging Face's CLIP tokenizer (transformers 5's `CLIPTokenizer`, backed by the
//! `tokenizers` library; `tokenizer.json`'s normalizer): NFC, each run of whitespace replaced by one space,
//! lowercase — and nothing else: no ftfy, no HTML unescaping, no stripping (the split drops spaces anyway).
//! This is what diffusers' pipelines tokenize prompts with, so Stable Diffusion conditioning uses it.

use crate::nfc::nfc;

/// Which cleaning [`crate::Tokenizer::encode`] applies before the split and BPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextCleaning {
    /// `clip.tokenize`'s: ftfy, `html.unescape` twice, whitespace collapse, Python's `str.lower()`.
    #[default]
    OpenAi,
    /// Hugging Face's `CLIPTokenizer`: NFC, whitespace collapse, lowercase.
    HuggingFace,
}

/// NFC, `\s+` -> " ", lowercase (each character on its own, as the `tokenizers` Lowercase normalizer does).
pub fn hf_normalize(text: &str) -> String {
    let composed = nfc(text);
    let mut out = String::with_capacity(composed.len());
    let mut in_space = false;
    for c in composed.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
                in_space = true;
            }
        } else {
            out.extend(c.to_lowercase());
            in_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_openai_cleaning_would_change() {
        // Values from transformers 5.23 `CLIPTokenizer.backend_tokenizer.normalizer.normalize_str`.
        assert_eq!(hf_normalize("Hello &amp; WORLD"), "hello &amp; world");
        assert_eq!(hf_normalize("\u{2019}q\u{2019}"), "\u{2019}q\u{2019}");
        assert_eq!(hf_normalize("a\u{a0}b  c\tnew\nline"), "a b c new line");
        assert_eq!(hf_normalize("ΣΑΣ"), "σασ");
        assert_eq!(hf_normalize("cafe\u{301}"), "caf\u{e9}");
    }
}
