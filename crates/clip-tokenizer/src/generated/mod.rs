//! Data tables generated from the reference Python stack by `scripts/gen_tables.py`
//! (Python 3.11.7 with unicodedata 14.0.0, regex 2026.11.15, ftfy 6.3.1).
//!
//! They pin character properties to what the reference sees, which differs from Rust's own
//! (newer) Unicode tables for recently assigned characters.

#[rustfmt::skip]
pub(crate) mod ftfy_data;
#[rustfmt::skip]
pub(crate) mod html_entities;
#[rustfmt::skip]
pub(crate) mod python_unicode;

/// Whether `c` lies in one of the sorted, disjoint inclusive `ranges`.
pub(crate) fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Looks `c` up in a table sorted by code point.
pub(crate) fn lookup_char<'a>(table: &[(u32, &'a str)], c: char) -> Option<&'a str> {
    table
        .binary_search_by_key(&(c as u32), |&(k, _)| k)
        .ok()
        .map(|i| table[i].1)
}

/// Looks `name` up in a table sorted by the UTF-8 bytes of its keys.
pub(crate) fn lookup_str<'a>(table: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    table
        .binary_search_by(|&(k, _)| k.as_bytes().cmp(name.as_bytes()))
        .ok()
        .map(|i| table[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_disjoint(r: &[(u32, u32)]) -> bool {
        r.iter().all(|&(lo, hi)| lo <= hi) && r.windows(2).all(|w| w[0].1 < w[1].0)
    }

    #[test]
    fn range_tables_are_sorted_and_disjoint() {
        use ftfy_data::*;
        use python_unicode::*;
        for t in [
            CASED,
            CASE_IGNORABLE,
            PY_SPACE,
            PY_WORD,
            PY_DIGIT,
            PY_UNASSIGNED,
            REGEX_SPACE,
            MOJIBAKE_BAD,
            CLUE_UTF8_CONTINUATION,
        ] {
            assert!(sorted_disjoint(t));
        }
        let split: Vec<(u32, u32)> = SPLIT_CLASS.iter().map(|&(a, b, _)| (a, b)).collect();
        assert!(sorted_disjoint(&split));
    }

    #[test]
    fn maps_are_sorted() {
        assert!(python_unicode::LOWER.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(html_entities::HTML5
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
        assert!(ftfy_data::UPPER_ENTITIES
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
    }

    #[test]
    fn lookups() {
        assert!(in_ranges(python_unicode::PY_SPACE, '\u{1c}'));
        assert!(!in_ranges(python_unicode::REGEX_SPACE, '\u{1c}'));
        assert_eq!(lookup_char(python_unicode::LOWER, 'İ'), Some("i\u{307}"));
        assert_eq!(lookup_str(html_entities::HTML5, "amp;"), Some("&"));
        assert_eq!(lookup_str(html_entities::HTML5, "amp"), Some("&"));
        assert_eq!(lookup_str(html_entities::HTML5, "ampx"), None);
    }
}
