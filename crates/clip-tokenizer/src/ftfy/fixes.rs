//! The character-level fixers of ftfy 6.3.1 (`ftfy/fixes.py`) that `fix_text` runs after
//! `fix_encoding`, plus its `unescape_html`. Each returns the input borrowed when it changes
//! nothing, which keeps clean ASCII text cheap.

use std::borrow::Cow;

use super::codecs::sloppy_windows_1252;
use crate::generated::ftfy_data::{LIGATURES, UPPER_ENTITIES, WIDTH_MAP};
use crate::generated::html_entities::HTML5;
use crate::generated::python_unicode::PY_DIGIT;
use crate::generated::{in_ranges, lookup_char, lookup_str};
use crate::html_unescape::html_unescape;

/// Rewrites the chars for which `touches` holds with `write`; borrowed when none does.
fn map_chars<'a>(
    text: &'a str,
    touches: impl Fn(char) -> bool,
    write: impl Fn(char, &mut String),
) -> Cow<'a, str> {
    let Some(first) = text.find(&touches) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if touches(c) {
            write(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `unescape_html`: entities matching `&#?[0-9A-Za-z]{1,24};` that ftfy knows (HTML5 names with
/// `;`, all-caps variants of some) or numeric references that `html.unescape` decodes whole.
pub(crate) fn unescape_html(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut last = 0;
    let mut pos = 0;
    let mut changed = false;
    while let Some(off) = text[pos..].find('&') {
        let amp = pos + off;
        let mut name_start = amp + 1;
        if bytes.get(name_start) == Some(&b'#') {
            name_start += 1;
        }
        let n = bytes[name_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let semi = name_start + n;
        if !(1..=24).contains(&n) || bytes.get(semi) != Some(&b';') {
            pos = amp + 1;
            continue;
        }
        let end = semi + 1;
        let entity = &text[amp..end];
        let name = &entity[1..];
        let replacement: Cow<'_, str> = if let Some(t) = lookup_str(HTML5, name) {
            Cow::Borrowed(t)
        } else if let Some(t) = lookup_str(UPPER_ENTITIES, name) {
            Cow::Borrowed(t)
        } else if entity.starts_with("&#") {
            let unescaped = html_unescape(entity);
            // A partial decode (the `;` left over) is not wanted: keep the entity.
            if unescaped.contains(';') {
                Cow::Borrowed(entity)
            } else {
                Cow::Owned(unescaped.into_owned())
            }
        } else {
            Cow::Borrowed(entity)
        };
        if replacement != entity {
            out.push_str(&text[last..amp]);
            out.push_str(&replacement);
            last = end;
            changed = true;
        }
        pos = end;
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// `remove_terminal_escapes`: drops `ESC [ (\d|;)* [a-zA-Z]` (`\d` being any decimal digit).
pub(crate) fn remove_terminal_escapes(text: &str) -> Cow<'_, str> {
    if !text.contains('\x1b') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut pos = 0;
    while let Some(off) = text[pos..].find('\x1b') {
        let esc = pos + off;
        let mut end = None;
        if text[esc + 1..].starts_with('[') {
            let mut p = esc + 2;
            for c in text[p..].chars() {
                if c == ';' || c.is_ascii_digit() || (!c.is_ascii() && in_ranges(PY_DIGIT, c)) {
                    p += c.len_utf8();
                } else {
                    if c.is_ascii_alphabetic() {
                        end = Some(p + 1);
                    }
                    break;
                }
            }
        }
        match end {
            Some(e) => {
                out.push_str(&text[last..esc]);
                last = e;
                pos = e;
            }
            None => pos = esc + 1,
        }
    }
    if last == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// `uncurl_quotes`: U+02BC and U+2018..U+201B to `'`, U+201C..U+201F to `"`.
pub(crate) fn uncurl_quotes(text: &str) -> Cow<'_, str> {
    map_chars(
        text,
        |c| matches!(c, '\u{2bc}' | '\u{2018}'..='\u{201f}'),
        |c, out| out.push(if c >= '\u{201c}' { '"' } else { '\'' }),
    )
}

/// `fix_latin_ligatures`: ﬁ -> fi and the other Latin ligatures and digraphs ftfy lists.
pub(crate) fn fix_latin_ligatures(text: &str) -> Cow<'_, str> {
    map_chars(
        text,
        |c| !c.is_ascii() && lookup_char(LIGATURES, c).is_some(),
        |c, out| out.push_str(lookup_char(LIGATURES, c).unwrap_or_default()),
    )
}

/// `fix_character_width`: full-width and half-width forms (and U+3000) to their usual forms.
pub(crate) fn fix_character_width(text: &str) -> Cow<'_, str> {
    map_chars(
        text,
        |c| {
            (c == '\u{3000}' || ('\u{ff01}'..='\u{ffef}').contains(&c))
                && lookup_char(WIDTH_MAP, c).is_some()
        },
        |c, out| out.push_str(lookup_char(WIDTH_MAP, c).unwrap_or_default()),
    )
}

/// `fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 to `\n`.
pub(crate) fn fix_line_breaks(text: &str) -> Cow<'_, str> {
    let touches = |c: char| matches!(c, '\r' | '\u{2028}' | '\u{2029}' | '\u{85}');
    if !text.contains(touches) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue; // the `\n` that follows stays
        }
        out.push(if touches(c) { '\n' } else { c });
    }
    Cow::Owned(out)
}

/// `remove_control_chars`: C0 controls but tab, LF, FF and CR; DEL; U+206A..U+206F; the BOM;
/// U+FFF9..U+FFFC.
pub(crate) fn remove_control_chars(text: &str) -> Cow<'_, str> {
    map_chars(
        text,
        |c| {
            matches!(c,
                '\0'..='\x08' | '\x0b' | '\x0e'..='\x1f' | '\x7f'
                | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
        },
        |_, _| {},
    )
}

/// `fix_c1_controls`: each of U+0080..U+009F read as its Windows-1252 byte (sloppily).
pub(crate) fn fix_c1_controls(text: &str) -> Cow<'_, str> {
    let sloppy = sloppy_windows_1252();
    map_chars(
        text,
        |c| ('\u{80}'..='\u{9f}').contains(&c),
        |c, out| out.push(sloppy.decode_byte(c as u32 as u8)),
    )
}

/// Whether `fix_c1_controls` would change something (`C1_CONTROL_RE.search`).
pub(crate) fn has_c1_controls(text: &str) -> bool {
    text.contains(|c| ('\u{80}'..='\u{9f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values produced by ftfy 6.3.1: `ascii(ftfy.fixes.<fixer>(s))`.
    #[test]
    fn unescape_html_matches_ftfy() {
        let cases = [
            ("&lt;tag&gt;", "<tag>"),
            (
                "&Jscr;ohn &HilbertSpace;ancock",
                "\u{1d4a5}ohn \u{210b}ancock",
            ),
            ("P&EACUTE;REZ", "P\u{c9}REZ"),
            ("BUNDESSTRA&SZLIG;E", "BUNDESSTRASSE"),
            (
                "&ntilde; &Ntilde; &NTILDE; &nTILDE;",
                "\u{f1} \u{d1} \u{d1} &nTILDE;",
            ),
            ("this&not that", "this&not that"),
            (
                "&#x2019;&#65;&#59;&#x3b;&#0;",
                "\u{2019}A&#59;&#x3b;\u{fffd}",
            ),
            ("&#xD800;&#28;", "\u{fffd}"),
            ("&amp;amp;", "&amp;"),
            ("&aaaaaaaaaaaaaaaaaaaaaaaaa;", "&aaaaaaaaaaaaaaaaaaaaaaaaa;"),
        ];
        for (input, expected) in cases {
            assert_eq!(unescape_html(input), expected, "{input:?}");
        }
    }

    #[test]
    fn terminal_escapes_match_ftfy() {
        assert_eq!(
            remove_terminal_escapes("\x1b[36;44mI'm blue\x1b[0m \x1b[\u{663}m \x1b[ \x1bm"),
            "I'm blue  \x1b[ \x1bm"
        );
    }

    #[test]
    fn simple_fixers_match_ftfy() {
        assert_eq!(
            uncurl_quotes("\u{201c}here\u{2019}s a test\u{201d}\u{2bc}"),
            "\"here's a test\"'"
        );
        assert_eq!(
            fix_latin_ligatures("\u{fb02}u\u{fb03}e\u{fb06} \u{1c4}"),
            "fluffiest D\u{17d}"
        );
        assert_eq!(fix_character_width("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(fix_character_width("Ｕﾀｰﾝ"), "Uターン");
        assert_eq!(
            fix_line_breaks("a\r\nb\rc\u{2028}d\u{2029}e\u{85}f\r\r\n"),
            "a\nb\nc\nd\ne\nf\n\n"
        );
        assert_eq!(
            remove_control_chars("a\0b\tc\x1bd\u{feff}e\u{200d}f\u{fffc}"),
            "ab\tcde\u{200d}f"
        );
        assert_eq!(
            fix_c1_controls("\u{80}\u{81}\u{9f}x"),
            "\u{20ac}\u{81}\u{178}x"
        );
    }
}
