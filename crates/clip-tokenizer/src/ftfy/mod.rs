//! A port of `ftfy.fix_text` (ftfy 6.3.1) with its default configuration, the first step of
//! CLIP's `basic_clean`.
//!
//! `fix_text` cuts the text into lines (at most 1,000,000 characters each) and fixes each with
//! `fix_and_explain`: HTML unescaping (switched off for this line and every later one once a
//! line holds `<`), `fix_encoding` (mojibake), then C1 controls, Latin ligatures, character
//! width, curly quotes, line breaks, surrogates (none can occur in a Rust `str`), terminal
//! escapes, control characters and NFC — repeated until the line stops changing.

mod badness;
mod class;
mod codecs;
mod fix_encoding;
mod fixes;

use std::borrow::Cow;

use crate::nfc::nfc;

/// `ftfy.fix_encoding(text)`, for the step-parity tests.
#[cfg(test)]
pub(crate) fn fix_encoding_for_tests(text: &str) -> String {
    fix_encoding::fix_encoding(text).into_owned()
}

/// `ftfy.badness.is_bad(text)`, for the step-parity tests.
#[cfg(test)]
pub(crate) fn is_bad_for_tests(text: &str) -> bool {
    badness::is_bad(text)
}

const MAX_DECODE_LENGTH: usize = 1_000_000;
/// ftfy loops until the text stops changing; it always converges on real text, but a bound
/// keeps a pathological input from hanging the caller.
pub(crate) const MAX_PASSES: usize = 64;

/// `ftfy.fix_text(text)`.
pub(crate) fn fix_text(text: &str) -> Cow<'_, str> {
    // Fast path: one segment, nothing changed.
    if text.len() <= MAX_DECODE_LENGTH && text.find('\n').is_none_or(|i| i + 1 == text.len()) {
        return fix_segment(text, !text.contains('<'));
    }
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    let mut pos = 0;
    while pos < text.len() {
        let end = segment_end(text, pos);
        let segment = &text[pos..end];
        // ftfy replaces its config here, so the switch stays off for the following lines too.
        if unescape && segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
        pos = end;
    }
    Cow::Owned(out)
}

/// The end of the segment starting at `pos`: just after the next `\n`, at most
/// `MAX_DECODE_LENGTH` characters on.
fn segment_end(text: &str, pos: usize) -> usize {
    let rest = &text[pos..];
    let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
    let cap = rest
        .char_indices()
        .nth(MAX_DECODE_LENGTH)
        .map_or(rest.len(), |(i, _)| i);
    pos + line_end.min(cap)
}

/// `fix_and_explain(segment)`.
fn fix_segment(segment: &str, unescape_html: bool) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(segment);
    for _ in 0..MAX_PASSES {
        let fixed = fix_once(&text, unescape_html);
        match fixed {
            Cow::Borrowed(_) => return text,
            Cow::Owned(s) if s == *text => return text,
            Cow::Owned(s) => text = Cow::Owned(s),
        }
    }
    text
}

/// One pass of the fixers, borrowed when none changed anything.
fn fix_once(text: &str, unescape_html: bool) -> Cow<'_, str> {
    let mut t = Cow::Borrowed(text);
    if unescape_html {
        apply(&mut t, fixes::unescape_html);
    }
    apply(&mut t, fix_encoding::fix_encoding);
    apply(&mut t, fixes::fix_c1_controls);
    apply(&mut t, fixes::fix_latin_ligatures);
    apply(&mut t, fixes::fix_character_width);
    apply(&mut t, fixes::uncurl_quotes);
    apply(&mut t, fixes::fix_line_breaks);
    apply(&mut t, fixes::remove_terminal_escapes);
    apply(&mut t, fixes::remove_control_chars);
    apply(&mut t, nfc);
    t
}

fn apply<'a>(text: &mut Cow<'a, str>, fixer: impl for<'b> Fn(&'b str) -> Cow<'b, str>) {
    if let Cow::Owned(fixed) = fixer(text) {
        *text = Cow::Owned(fixed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values produced by ftfy 6.3.1: `ascii(ftfy.fix_text(s))`.
    #[test]
    fn fix_text_matches_ftfy() {
        let cases = [
            ("âœ” No problems", "\u{2714} No problems"),
            (
                "&macr;\\_(ã\u{83}\u{84})_/&macr;",
                "\u{af}\\_(\u{30c4})_/\u{af}",
            ),
            (
                "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!",
                "Broken text\u{2026} it's flubberific!",
            ),
            ("ＬＯＵＤ　ＮＯＩＳＥＳ", "LOUD NOISES"),
            (
                "a &amp; b\n<p> &amp;\nc &amp; d",
                "a & b\n<p> &amp;\nc &amp; d",
            ),
            ("<p> &amp;\nc &amp; d", "<p> &amp;\nc &amp; d"),
            ("e\u{301}\r\nx\x1b[1mbold\x1b[0m\0", "\u{e9}\nxbold"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(fix_text(input), expected, "{input:?}");
        }
    }

    /// Segments are cut every 1,000,000 characters, so mojibake across the cut stays.
    /// Expected values produced by ftfy 6.3.1 on the same strings.
    #[test]
    fn long_lines_are_fixed_in_million_character_segments() {
        let across = format!("{}Ã©x", "a".repeat(999_999));
        assert_eq!(fix_text(&across), across);
        let inside = format!("{}Ã©x", "a".repeat(999_998));
        assert_eq!(fix_text(&inside), format!("{}éx", "a".repeat(999_998)));
        let wide = format!("{}Ã©x\nb &amp; <", "é".repeat(999_999));
        let fixed = fix_text(&wide);
        assert_eq!(fixed.chars().count(), 1_000_012);
        assert!(fixed.ends_with("\u{a9}x\nb &amp; <"));
    }

    #[test]
    fn segments_split_after_newlines() {
        assert_eq!(segment_end("ab\ncd", 0), 3);
        assert_eq!(segment_end("ab\ncd", 3), 5);
        assert_eq!(segment_end("abc", 0), 3);
    }
}
