//! `unicodedata.normalize("NFC", s)` as Python 3.11 computes it, with Unicode 14.0 data.
//!
//! The `unicode-normalization` crate carries newer Unicode data. Normalization data of assigned
//! characters never changes (Unicode's stability policy), so the two differ only on characters
//! that Python 3.11 sees as unassigned: to Python those are inert starters (combining class 0,
//! no decomposition, no composition), which nothing can reorder or compose across. So the text is
//! normalized by the crate in runs between such characters, which are kept as they are.

use std::borrow::Cow;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use crate::generated::in_ranges;
use crate::generated::python_unicode::PY_UNASSIGNED;

fn is_py_unassigned(c: char) -> bool {
    !c.is_ascii() && in_ranges(PY_UNASSIGNED, c)
}

/// NFC with Python 3.11's character data.
pub(crate) fn nfc(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    let has_unassigned = s.chars().any(is_py_unassigned);
    if !has_unassigned && is_nfc_quick(s.chars()) == IsNormalized::Yes {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut run_start = 0;
    for (i, c) in s.char_indices() {
        if is_py_unassigned(c) {
            out.extend(s[run_start..i].nfc());
            out.push(c);
            run_start = i + c.len_utf8();
        }
    }
    out.extend(s[run_start..].nfc());
    if out == s {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::python_unicode::PY_UNASSIGNED;

    // Expected values produced by Python 3.11.7: `ascii(unicodedata.normalize("NFC", s))`.
    #[test]
    fn nfc_matches_python() {
        assert_eq!(nfc("e\u{301}"), "\u{e9}");
        assert_eq!(nfc("a\u{323}\u{302}"), "\u{1ead}");
        assert_eq!(nfc("a\u{302}\u{323}"), "\u{1ead}");
        assert_eq!(nfc("\u{1100}\u{1161}\u{11a8}"), "\u{ac01}");
        assert_eq!(nfc("\u{212b}\u{2126}"), "\u{c5}\u{3a9}");
        assert_eq!(nfc("\u{958}"), "\u{915}\u{93c}");
        // Kirat Rai (Unicode 16): unassigned for Python 3.11, so no composition.
        assert_eq!(nfc("\u{16d67}\u{16d67}"), "\u{16d67}\u{16d67}");
        // A combining mark from Unicode 15 (ccc 220 today) is a starter for Python 3.11.
        assert_eq!(nfc("a\u{10efd}\u{301}"), "a\u{10efd}\u{301}");
        assert_eq!(nfc("a\u{301}\u{10efd}"), "\u{e1}\u{10efd}");
    }

    /// The run splitting is exact only if no character unassigned for Python decomposes into
    /// characters Python knows (else the crate could compose those into it).
    #[test]
    fn no_new_composite_of_old_characters() {
        for &(lo, hi) in PY_UNASSIGNED {
            for cp in lo..=hi {
                let Some(c) = char::from_u32(cp) else {
                    continue;
                };
                let decomposed: Vec<char> = std::iter::once(c).nfd().collect();
                if decomposed != [c] {
                    assert!(
                        decomposed.iter().any(|&d| is_py_unassigned(d)),
                        "U+{cp:04X} decomposes into characters Python 3.11 knows"
                    );
                }
            }
        }
    }
}
