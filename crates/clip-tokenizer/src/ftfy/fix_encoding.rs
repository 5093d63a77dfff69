//! ftfy 6.3.1 `fix_encoding` (`ftfy/__init__.py`, `_fix_encoding_one_step_and_explain`) with its
//! byte-level helpers `restore_byte_a0`, `replace_lossy_sequences` and
//! `decode_inconsistent_utf8` (`ftfy/fixes.py`, regexes from `ftfy/chardata.py`): text that
//! looks like mojibake is re-encoded in the single-byte encoding it was misread with and decoded
//! as UTF-8.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::bytes::Regex as BytesRegex;
use regex::Regex;

use super::badness::is_bad;
use super::class::Class;
use super::codecs::{charmaps, decode_utf8_variants, decode_windows_1252};
use super::fixes::{fix_c1_controls, has_c1_controls};
use crate::generated::ftfy_data::{
    CLUE_UTF8_CONTINUATION, CLUE_UTF8_CONTINUATION_STRICT, CLUE_UTF8_FIRST_OF_2,
    CLUE_UTF8_FIRST_OF_3, CLUE_UTF8_FIRST_OF_4,
};
use crate::generated::in_ranges;

/// `ftfy.fix_encoding(text)`: one-step fixes until nothing changes.
pub(crate) fn fix_encoding(text: &str) -> Cow<'_, str> {
    let mut current = Cow::Borrowed(text);
    for _ in 0..super::MAX_PASSES {
        match fix_one_step(&current) {
            Some(fixed) if fixed != *current => current = Cow::Owned(fixed),
            _ => return current,
        }
    }
    current
}

/// `_fix_encoding_one_step_and_explain`; `None` when it leaves the text as it is.
fn fix_one_step(text: &str) -> Option<String> {
    if text.is_ascii() || !is_bad(text) {
        return None;
    }
    let mut latin1_possible = false;
    for map in charmaps() {
        if !map.can_encode(text) {
            continue;
        }
        latin1_possible |= map.name == "latin-1";
        let Some(mut bytes) = map.encode(text) else {
            continue;
        };
        if map.name != "macroman" && altered_utf8_re().is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if map.name.starts_with("sloppy") {
            bytes = lossy_utf8_re()
                .replace_all(&bytes, "\u{fffd}".as_bytes())
                .into_owned();
        }
        let decoded = if bytes.contains(&0xed) || bytes.contains(&0xc0) {
            decode_utf8_variants(&bytes)
        } else {
            String::from_utf8(bytes).ok()
        };
        if let Some(fixed) = decoded {
            return Some(fixed);
        }
    }
    if utf8_detector_matches(text) {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return Some(fixed);
        }
    }
    // ftfy checks `"windows-1252" in possible_1byte_encodings`, a name the list never holds
    // (it holds "sloppy-windows-1252"), so text that Latin-1 can encode is always re-read as
    // strict Windows-1252 here.
    if latin1_possible {
        let decoded = map_latin1_bytes(text).and_then(|b| decode_windows_1252(&b));
        if let Some(fixed) = decoded {
            if fixed != text {
                return Some(fixed);
            }
        }
    }
    if has_c1_controls(text) {
        return Some(fix_c1_controls(text).into_owned());
    }
    None
}

fn map_latin1_bytes(text: &str) -> Option<Vec<u8>> {
    text.chars().map(|c| u8::try_from(c as u32).ok()).collect()
}

/// `ALTERED_UTF8_RE`: UTF-8 sequences that would be valid if a space were byte A0.
fn altered_utf8_re() -> &'static BytesRegex {
    static RE: OnceLock<BytesRegex> = OnceLock::new();
    RE.get_or_init(|| {
        BytesRegex::new(
            r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9][ ]|[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]|[\xf0][ ][\x80-\xbf][\x80-\xbf]|[\xf0][\x80-\xbf][ ][\x80-\xbf]|[\xf0][\x80-\xbf][\x80-\xbf][ ]",
        )
        .expect("ALTERED_UTF8_RE compiles")
    })
}

/// `LOSSY_UTF8_RE`: UTF-8 sequences with bytes lost to U+FFFD (byte 1A) or `?`.
fn lossy_utf8_re() -> &'static BytesRegex {
    static RE: OnceLock<BytesRegex> = OnceLock::new();
    RE.get_or_init(|| {
        BytesRegex::new(
            r"(?-u)[\xc2-\xdf][\x1a]|[\xc2-\xc3][?]|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a",
        )
        .expect("LOSSY_UTF8_RE compiles")
    })
}

/// `restore_byte_a0`: first `C3 20` not starting one of the Portuguese exceptions becomes
/// `C3 A0 20` (`A_GRAVE_WORD_RE`), then the spaces inside `ALTERED_UTF8_RE` matches become A0.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    const EXCEPTIONS: [&[u8]; 5] = [b" ", b"quele", b"quela", b"quilo", b"s "];
    let mut grave = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xc3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            if !EXCEPTIONS.iter().any(|e| after.starts_with(e)) {
                grave.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        grave.push(bytes[i]);
        i += 1;
    }
    altered_utf8_re()
        .replace_all(&grave, |caps: &regex::bytes::Captures<'_>| {
            caps[0]
                .iter()
                .map(|&b| if b == b' ' { 0xa0 } else { b })
                .collect::<Vec<u8>>()
        })
        .into_owned()
}

/// `UTF8_DETECTOR_RE` without its lookbehind (applied by hand): runs of characters that look
/// like UTF-8 lead and continuation bytes read in a single-byte encoding.
fn utf8_detector_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let cont = Class::new().ranges(CLUE_UTF8_CONTINUATION).build();
        let first2 = Class::new().ranges(CLUE_UTF8_FIRST_OF_2).build();
        let first3 = Class::new().ranges(CLUE_UTF8_FIRST_OF_3).build();
        let first4 = Class::new().ranges(CLUE_UTF8_FIRST_OF_4).build();
        let pattern = format!("(?:{first2}{cont}|{first3}{cont}{{2}}|{first4}{cont}{{3}})+");
        Regex::new(&pattern).expect("UTF8_DETECTOR_RE compiles")
    })
}

/// The matches of `UTF8_DETECTOR_RE` in order, as `re.sub` finds them: a match is refused when
/// the character before it is a strict continuation character (the lookbehind), and the search
/// then resumes one character further.
fn utf8_detector_matches_iter(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let re = utf8_detector_re();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos <= text.len() {
            let m = re.find_at(text, pos)?;
            let refused = text[..m.start()]
                .chars()
                .next_back()
                .is_some_and(|c| in_ranges(CLUE_UTF8_CONTINUATION_STRICT, c));
            if refused {
                let width = text[m.start()..].chars().next().map_or(1, char::len_utf8);
                pos = m.start() + width;
                continue;
            }
            pos = m.end();
            return Some((m.start(), m.end()));
        }
        None
    })
}

fn utf8_detector_matches(text: &str) -> bool {
    utf8_detector_matches_iter(text).next().is_some()
}

/// `decode_inconsistent_utf8`: fixes each detected run on its own, when it is shorter than the
/// whole text and looks bad.
fn decode_inconsistent_utf8(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in utf8_detector_matches_iter(text) {
        let sub = &text[start..end];
        out.push_str(&text[last..start]);
        if sub.len() < text.len() && is_bad(sub) {
            out.push_str(&fix_encoding(sub));
        } else {
            out.push_str(sub);
        }
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values produced by ftfy 6.3.1: `ascii(ftfy.fix_encoding(s))`.
    #[test]
    fn fix_encoding_matches_ftfy() {
        let cases = [
            ("sÃ³", "s\u{f3}"),
            ("voilÃ le travail", "voil\u{e0} le travail"),
            ("Ã³", "\u{f3}"),
            ("&ATILDE;&SUP3;", "&ATILDE;&SUP3;"),
            ("âœ” No problems", "\u{2714} No problems"),
            ("schÃ¶n", "sch\u{f6}n"),
            ("â€œ like this â€\u{fffd}", "\u{201c} like this \u{fffd}"),
            ("Ã© À\n", "\u{e9} \0"),
            ("caf√©", "caf\u{e9}"),
            (
                "Text: Ã©tÃ© and été",
                "Text: \u{e9}t\u{e9} and \u{e9}t\u{e9}",
            ),
            ("\u{80}abc", "\u{20ac}abc"),
            ("café", "caf\u{e9}"),
        ];
        for (input, expected) in cases {
            assert_eq!(fix_encoding(input), expected, "{input:?}");
        }
    }

    #[test]
    fn restore_byte_a0_matches_ftfy() {
        // `ftfy.fixes.restore_byte_a0(b)` in Python.
        assert_eq!(restore_byte_a0(b"voil\xc3 le"), b"voil\xc3\xa0 le");
        assert_eq!(
            restore_byte_a0(b"\xc3 quele \xc3 s x"),
            b"\xc3\xa0quele \xc3\xa0s x"
        );
        assert_eq!(restore_byte_a0(b"\xe2\x80 x"), b"\xe2\x80\xa0x");
    }
}
