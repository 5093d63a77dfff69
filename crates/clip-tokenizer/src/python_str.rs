//! Python `str` semantics that CLIP's cleaning relies on: `str.lower()` (full case mapping plus
//! the Final_Sigma rule, as CPython 3.11 implements it) and `str.strip()` (Python's notion of
//! whitespace, which includes U+001C..U+001F). Rust's `to_lowercase`/`trim` use other Unicode
//! versions and definitions, so both use tables generated from Python.

use crate::generated::python_unicode::{CASED, CASE_IGNORABLE, LOWER, PY_SPACE};
use crate::generated::{in_ranges, lookup_char};

const CAPITAL_SIGMA: char = '\u{3a3}';

/// `str.isspace()`.
pub(crate) fn is_py_space(c: char) -> bool {
    if c.is_ascii() {
        matches!(c, '\t'..='\r' | '\x1c'..='\x1f' | ' ')
    } else {
        in_ranges(PY_SPACE, c)
    }
}

/// `str.strip()` with no arguments.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `str.lower()`.
pub(crate) fn py_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if c == CAPITAL_SIGMA {
            out.push(if is_final_sigma(s, i) { 'ς' } else { 'σ' });
        } else if let Some(lower) = lookup_char(LOWER, c) {
            out.push_str(lower);
        } else {
            out.push(c);
        }
    }
    out
}

/// CPython's `handle_capital_sigma`: Σ at byte `i` lowercases to final ς when a cased letter
/// precedes it and none follows (case-ignorable characters skipped on both sides).
fn is_final_sigma(s: &str, i: usize) -> bool {
    let before = s[..i]
        .chars()
        .rev()
        .find(|&c| !in_ranges(CASE_IGNORABLE, c));
    if !before.is_some_and(|c| in_ranges(CASED, c)) {
        return false;
    }
    let after = s[i + CAPITAL_SIGMA.len_utf8()..]
        .chars()
        .find(|&c| !in_ranges(CASE_IGNORABLE, c));
    !after.is_some_and(|c| in_ranges(CASED, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values produced by Python 3.11.7: `repr(s.lower())`, `repr(s.strip())`.
    #[test]
    fn lower_matches_python() {
        assert_eq!(py_lower("İstanbul"), "i\u{307}stanbul");
        assert_eq!(py_lower("ΟΔΥΣΣΕΥΣ"), "οδυσσευς");
        assert_eq!(py_lower("ΑΣ.Σ"), "ασ.ς");
        assert_eq!(py_lower("Σ"), "σ");
        assert_eq!(py_lower("aΣʰ"), "aς\u{2b0}");
        assert_eq!(py_lower("a\u{345}Σ"), "a\u{345}ς");
        assert_eq!(py_lower("ΑΣ\u{301}Β"), "ασ\u{301}β");
        assert_eq!(py_lower("ǅ ẞ Ω K Å"), "ǆ ß ω k å");
        assert_eq!(py_lower("ß ſ ﬅ"), "ß ſ ﬅ");
        // Assigned after Unicode 14: Python 3.11 leaves it alone.
        assert_eq!(py_lower("\u{1c89}"), "\u{1c89}");
        assert_eq!(py_lower("ABC"), "abc");
    }

    #[test]
    fn strip_matches_python() {
        assert_eq!(py_strip("\u{1c}\u{1f} a b\u{a0}\u{3000}"), "a b");
        assert_eq!(py_strip("\u{200b}a\u{200b}"), "\u{200b}a\u{200b}");
        assert_eq!(py_strip("\u{85}x\u{2028}"), "x");
        assert_eq!(py_strip("\u{180e}x"), "\u{180e}x");
    }
}
