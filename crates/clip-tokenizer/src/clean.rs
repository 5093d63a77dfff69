//! CLIP's text cleaning, as `SimpleTokenizer.encode` applies it (clip/simple_tokenizer.py):
//! `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is `ftfy.fix_text`, then
//! `html.unescape` twice, then `str.strip()`, and `whitespace_clean` replaces each run of `\s`
//! (the `regex` module's) with one space and strips again.

use crate::ftfy::fix_text;
use crate::generated::in_ranges;
use crate::generated::python_unicode::REGEX_SPACE;
use crate::html_unescape::html_unescape;
use crate::python_str::{py_lower, py_strip};

/// The full cleaning pipeline of `clip.tokenize`, before the regex split and BPE.
pub fn clean_text(text: &str) -> String {
    let fixed = fix_text(text);
    let once = html_unescape(&fixed);
    let twice = html_unescape(&once);
    let basic = py_strip(&twice);
    py_lower(&whitespace_clean(basic))
}

fn is_regex_space(c: char) -> bool {
    if c.is_ascii() {
        matches!(c, '\t'..='\r' | ' ')
    } else {
        in_ranges(REGEX_SPACE, c)
    }
}

/// `whitespace_clean`: `re.sub(r'\s+', ' ', text).strip()`.
fn whitespace_clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if is_regex_space(c) {
            if !in_space {
                out.push(' ');
                in_space = true;
            }
        } else {
            out.push(c);
            in_space = false;
        }
    }
    py_strip(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values produced by clip-anytorch 2.6.0:
    // `ascii(whitespace_clean(basic_clean(s)).lower())`.
    #[test]
    fn clean_matches_clip() {
        let cases = [
            ("A Photo Of A Dog.", "a photo of a dog."),
            ("  a\t\tb\n\nc  ", "a b c"),
            ("&amp;amp;lt;", "<"),
            ("x&#x1c;y", "xy"),
            ("a\u{1c}b", "ab"),
            ("&lt;p&gt; <b>", "<p> <b>"),
            ("\u{3000}ＬＯＵＤ\u{a0}\u{2003}x", "loud x"),
            ("İSTANBUL ΟΔΥΣΣΕΥΣ", "i\u{307}stanbul οδυσσευς"),
            ("cafÃ©", "caf\u{e9}"),
            ("\u{200b}", "\u{200b}"),
            ("&#133;a", "\u{2026}a"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_text(input), expected, "{input:?}");
        }
    }
}
