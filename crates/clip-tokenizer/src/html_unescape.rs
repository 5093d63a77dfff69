//! Python's `html.unescape` (CPython 3.11 `html/__init__.py`): named references from the HTML5
//! table, with or without `;` (longest known prefix wins), decimal and hex numeric references
//! with HTML5's replacements for invalid code points.

use std::borrow::Cow;

use crate::generated::html_entities::{HTML5, INVALID_CHARREFS, INVALID_CODEPOINTS};
use crate::generated::lookup_str;

/// `html.unescape(s)`.
pub(crate) fn html_unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut pos = 0;
    while let Some(off) = s[pos..].find('&') {
        let amp = pos + off;
        match charref_at(s, amp + 1) {
            Some((end, replacement)) => {
                out.push_str(&s[last..amp]);
                push_replacement(&mut out, &s[amp + 1..end], replacement);
                last = end;
                pos = end;
            }
            None => pos = amp + 1,
        }
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

enum Ref {
    Numeric(u64),
    Named,
}

/// Matches `_charref` (`&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`) right after
/// an `&` at byte `start`: the end of the match and its kind.
fn charref_at(s: &str, start: usize) -> Option<(usize, Ref)> {
    let bytes = s.as_bytes();
    if bytes.get(start) == Some(&b'#') {
        let (digits_start, radix) = match bytes.get(start + 1) {
            Some(b'x' | b'X') => (start + 2, 16),
            _ => (start + 1, 10),
        };
        let digits = bytes[digits_start..]
            .iter()
            .take_while(|b| {
                if radix == 16 {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let mut end = digits_start + digits;
        // Python's int() is unbounded; saturating is enough, anything past U+10FFFF is U+FFFD.
        let value = s[digits_start..end].chars().fold(0u64, |acc, c| {
            acc.saturating_mul(radix as u64)
                .saturating_add(c.to_digit(radix).unwrap_or(0) as u64)
        });
        if bytes.get(end) == Some(&b';') {
            end += 1;
        }
        return Some((end, Ref::Numeric(value)));
    }
    let mut end = start;
    let mut count = 0;
    for c in s[start..].chars() {
        if count == 32 || matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';') {
            break;
        }
        end += c.len_utf8();
        count += 1;
    }
    if count == 0 {
        return None;
    }
    if bytes.get(end) == Some(&b';') {
        end += 1;
    }
    Some((end, Ref::Named))
}

/// `_replace_charref` for the reference text `name` (everything after the `&`).
fn push_replacement(out: &mut String, name: &str, kind: Ref) {
    match kind {
        Ref::Numeric(num) => push_numeric(out, num),
        Ref::Named => {
            if let Some(text) = lookup_str(HTML5, name) {
                out.push_str(text);
                return;
            }
            // The longest prefix (of at least 2 characters, shorter than the name) that is an entity.
            let ends: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
            for &end in ends.iter().rev() {
                if let Some(text) = lookup_str(HTML5, &name[..end]) {
                    out.push_str(text);
                    out.push_str(&name[end..]);
                    return;
                }
            }
            out.push('&');
            out.push_str(name);
        }
    }
}

fn push_numeric(out: &mut String, num: u64) {
    if let Ok(i) = INVALID_CHARREFS.binary_search_by_key(&num, |&(k, _)| k as u64) {
        out.push_str(INVALID_CHARREFS[i].1);
    } else if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
        out.push('\u{fffd}');
    } else if INVALID_CODEPOINTS.contains(&(num as u32)) {
        // Dropped, as Python does.
    } else if let Some(c) = char::from_u32(num as u32) {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values produced by Python 3.11.7: `ascii(html.unescape(s))`.
    #[test]
    fn unescape_matches_python() {
        let cases = [
            ("&amp;", "&"),
            ("&amp", "&"),
            ("&ampx", "&x"),
            ("&notit;", "\u{ac}it;"),
            ("&notin;", "\u{2209}"),
            ("&eacute", "\u{e9}"),
            ("&EACUTE;", "&EACUTE;"),
            ("&#65;&#x41;&#X41;&#065;&#65", "AAAAA"),
            ("&#0;", "\u{fffd}"),
            ("&#x80;&#x81;", "\u{20ac}\u{81}"),
            (
                "&#xD800;&#x110000;&#99999999999999999999;",
                "\u{fffd}\u{fffd}\u{fffd}",
            ),
            ("a&#28;b&#x7f;c&#xfffe;d", "abcd"),
            ("&#13;", "\r"),
            ("&#x;&#;&#xZZ;", "&#x;&#;&#xZZ;"),
            ("&#12ab;", "\u{c}ab;"),
            ("&amp;amp;", "&amp;"),
            ("&;", "&;"),
            ("& amp;", "& amp;"),
            ("&bne;", "=\u{20e5}"),
            (
                "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;",
                "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;",
            ),
            ("&lt&gt", "<>"),
            ("&ltfoo;", "<foo;"),
            ("&éamp;", "&éamp;"),
        ];
        for (input, expected) in cases {
            assert_eq!(html_unescape(input), expected, "{input:?}");
        }
    }
}
