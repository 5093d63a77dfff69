//! CLIP's split of cleaned text into words, `re.findall(pat, text)` with the `regex` module:
//!
//! `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//! compiled with IGNORECASE.
//!
//! A hand-written scanner over character classes generated from `regex` itself: case-insensitive
//! matching makes the literals accept `ſ` for `s`, and U+0345 (which case-folds to a letter) is
//! matched by none of the classes, so it is skipped like whitespace.

use crate::generated::python_unicode::{CASELESS_LETTERS, SPLIT_CLASS};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// `[^\s\p{L}\p{N}]`
    Other,
    /// `[\p{L}]`
    Letter,
    /// `[\p{N}]`
    Number,
    /// Matched by no alternative (`\s`, and U+0345).
    Skip,
}

fn class_of(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '\t'..='\r' | ' ' => Class::Skip,
            _ => Class::Other,
        };
    }
    let cp = c as u32;
    match SPLIT_CLASS.binary_search_by(|&(lo, hi, _)| {
        if hi < cp {
            std::cmp::Ordering::Less
        } else if lo > cp {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => match SPLIT_CLASS[i].2 {
            1 => Class::Letter,
            2 => Class::Number,
            _ => Class::Skip,
        },
        Err(_) => Class::Other,
    }
}

/// Whether `c` matches the pattern character `p` under IGNORECASE.
fn caseless_eq(p: u8, c: char) -> bool {
    if c as u32 == p as u32 {
        return true;
    }
    match CASELESS_LETTERS.binary_search_by_key(&p, |&(k, _)| k) {
        Ok(i) => CASELESS_LETTERS[i].1.contains(&(c as u32)),
        Err(_) => false,
    }
}

/// Byte length of the match of the literal `lit` at the start of `s` (case-insensitively when `caseless`).
fn match_literal(s: &str, lit: &str, caseless: bool) -> Option<usize> {
    let mut chars = s.char_indices();
    for p in lit.bytes() {
        let (_, c) = chars.next()?;
        let equal = if caseless {
            caseless_eq(p, c)
        } else {
            c as u32 == p as u32
        };
        if !equal {
            return None;
        }
    }
    Some(chars.next().map_or(s.len(), |(i, _)| i))
}

const LITERALS: [&str; 9] = [
    "<|startoftext|>",
    "<|endoftext|>",
    "'s",
    "'t",
    "'re",
    "'ve",
    "'m",
    "'ll",
    "'d",
];

/// The words of `text` in order, as `re.findall` returns them.
pub(crate) fn split_words(text: &str) -> Words<'_> {
    Words {
        text,
        pos: 0,
        caseless: true,
    }
}

/// The same pattern matched case-sensitively, as Hugging Face's `tokenizers` Split pre-tokenizer does: the
/// literals take only themselves, and U+0345 is an ordinary mark (`[^\s\p{L}\p{N}]`).
pub(crate) fn split_words_exact(text: &str) -> Words<'_> {
    Words {
        text,
        pos: 0,
        caseless: false,
    }
}

/// Iterator over the words of a cleaned text.
pub(crate) struct Words<'a> {
    text: &'a str,
    pos: usize,
    caseless: bool,
}

impl Words<'_> {
    fn class(&self, c: char) -> Class {
        if !self.caseless && c == '\u{345}' {
            Class::Other
        } else {
            class_of(c)
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let rest = &self.text[self.pos..];
            let c = rest.chars().next()?;
            let start = self.pos;
            if c == '<' || c == '\'' {
                let caseless = self.caseless;
                if let Some(len) = LITERALS
                    .iter()
                    .find_map(|lit| match_literal(rest, lit, caseless))
                {
                    self.pos += len;
                    return Some(&self.text[start..self.pos]);
                }
            }
            let class = self.class(c);
            match class {
                Class::Skip => {
                    self.pos += c.len_utf8();
                    continue;
                }
                Class::Number => self.pos += c.len_utf8(),
                Class::Letter | Class::Other => {
                    let len = rest
                        .char_indices()
                        .find(|&(_, d)| self.class(d) != class)
                        .map_or(rest.len(), |(i, _)| i);
                    self.pos += len;
                }
            }
            return Some(&self.text[start..self.pos]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        split_words(s).collect()
    }

    // Expected values produced by regex 2026.11.15: `re.findall(SimpleTokenizer().pat, s)`.
    #[test]
    fn split_matches_regex_findall() {
        assert_eq!(
            words("a photo of a dog's 12 toys!!"),
            ["a", "photo", "of", "a", "dog", "'s", "1", "2", "toys", "!!"]
        );
        assert_eq!(
            words("<|startoftext|>hi<|endoftext|>"),
            ["<|startoftext|>", "hi", "<|endoftext|>"]
        );
        assert_eq!(words("<|ſtartoftext|> 'ſ"), ["<|ſtartoftext|>", "'ſ"]);
        assert_eq!(words("!<|endoftext|>"), ["!<|", "endoftext", "|>"]);
        assert_eq!(words("''s can't've"), ["''", "s", "can", "'t", "'ve"]);
        assert_eq!(words("a\u{345}b \u{301}x"), ["a", "b", "\u{301}", "x"]);
        assert_eq!(words("x²³ ٣ ⅻ"), ["x", "²", "³", "٣", "ⅻ"]);
        assert_eq!(words("日本語 ok"), ["日本語", "ok"]);
        assert_eq!(words(""), Vec::<&str>::new());
    }
}
