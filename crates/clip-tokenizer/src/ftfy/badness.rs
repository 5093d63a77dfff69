//! ftfy 6.3.1 `badness.is_bad`: the heuristic regex that spots unlikely juxtapositions of the
//! characters UTF-8 mojibake is made of. Each alternative below mirrors one line of ftfy's
//! `BADNESS_RE`, over the same character categories (generated from ftfy's
//! `MOJIBAKE_CATEGORIES`); `\s` and `\w` are Python `re`'s, from generated tables.

use std::sync::OnceLock;

use regex::Regex;

use super::class::Class;
use crate::generated::ftfy_data::*;
use crate::generated::python_unicode::{PY_SPACE, PY_WORD};

/// `ftfy.badness.is_bad(text)`.
pub(crate) fn is_bad(text: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(build).is_match(text)
}

fn cls(tables: &[&[(u32, u32)]], extra: &str) -> String {
    tables
        .iter()
        .fold(Class::new(), |c, t| c.ranges(t))
        .chars(extra)
        .build()
}

fn build() -> Regex {
    let c1: &[(u32, u32)] = MOJIBAKE_C1;
    let bad: &[(u32, u32)] = MOJIBAKE_BAD;
    let law: &[(u32, u32)] = MOJIBAKE_LAW;
    let cur: &[(u32, u32)] = MOJIBAKE_CURRENCY;
    let start: &[(u32, u32)] = MOJIBAKE_START_PUNCTUATION;
    let end: &[(u32, u32)] = MOJIBAKE_END_PUNCTUATION;
    let num: &[(u32, u32)] = MOJIBAKE_NUMERIC;
    let kaomoji: &[(u32, u32)] = MOJIBAKE_KAOMOJI;
    let up_acc: &[(u32, u32)] = MOJIBAKE_UPPER_ACCENTED;
    let lo_acc: &[(u32, u32)] = MOJIBAKE_LOWER_ACCENTED;
    let up_com: &[(u32, u32)] = MOJIBAKE_UPPER_COMMON;
    let lo_com: &[(u32, u32)] = MOJIBAKE_LOWER_COMMON;
    let boxes: &[(u32, u32)] = MOJIBAKE_BOX;
    let common: &[(u32, u32)] = MOJIBAKE_COMMON;
    let space = cls(&[PY_SPACE], "");
    let word = cls(&[PY_WORD], "");
    let latin = Class::new().span('a', 'z').span('A', 'Z').build();
    let lower = Class::new().span('a', 'z').build();
    let arabic_next = cls(
        &[common, cur, bad, num, start],
        "\u{178}\u{160}\u{ae}\u{b0}\u{b5}\u{bb}",
    );

    let alternatives = [
        cls(&[c1], ""),
        cls(&[bad, lo_acc, up_acc, boxes, start, end, cur, num, law], "") + &cls(&[bad], ""),
        latin.clone() + &cls(&[lo_com, up_com], "") + &cls(&[bad], ""),
        cls(&[bad], "") + &cls(&[lo_acc, up_acc, boxes, start, end, cur, num, law], ""),
        cls(&[lo_acc, lo_com, boxes, end, cur, num], "") + &cls(&[up_acc], ""),
        cls(&[boxes, end, cur, num], "") + &cls(&[lo_acc], ""),
        cls(&[lo_acc, boxes, end], "") + &cls(&[cur], ""),
        space.clone() + &cls(&[up_acc], "") + &cls(&[cur], ""),
        cls(&[up_acc, boxes], "") + &cls(&[num, law], ""),
        cls(&[lo_acc, up_acc, boxes, cur, end], "") + &cls(&[start], "") + &cls(&[num], ""),
        cls(&[lo_acc, up_acc, cur, num, boxes, law], "") + &cls(&[end], "") + &cls(&[start], ""),
        cls(&[cur, num, boxes], "") + &cls(&[start], ""),
        lower.clone() + &cls(&[up_acc], "") + &cls(&[start, cur], ""),
        cls(&[boxes], "") + &cls(&[kaomoji], ""),
        cls(&[lo_acc, up_acc, cur, num, start, end, law], "") + &cls(&[boxes], ""),
        cls(&[boxes], "") + &cls(&[end], ""),
        cls(&[lo_acc, up_acc], "") + &cls(&[start, end], "") + &word,
        // The ligature œ when not followed by an unaccented Latin letter.
        cls(&[], "\u{152}\u{153}") + "[^A-Za-z]",
        // Degree signs after capital letters.
        cls(&[up_acc], "") + "\u{b0}",
        // Common Windows-1252 2-character mojibake.
        cls(&[], "\u{c2}\u{c3}\u{ce}\u{d0}")
            + &cls(
                &[start, end],
                "\u{20ac}\u{153}\u{160}\u{161}\u{a2}\u{a3}\u{178}\u{17e}\u{a0}\u{ad}\u{ae}\u{a9}\u{b0}\u{b7}\u{bb}\u{2013}\u{2014}\u{b4}",
            ),
        "\u{d7}".to_string() + &cls(&[], "\u{b2}\u{b3}"),
        // Windows-1252 mojibake of Arabic words: four characters.
        cls(&[], "\u{d8}\u{d9}") + &arabic_next + &cls(&[], "\u{d8}\u{d9}") + &arabic_next,
        // Windows-1252 starts of 3-character sequences for South Asian alphabets.
        "\u{e0}".to_string() + &cls(&[], "\u{b2}\u{b5}\u{b9}\u{bc}\u{bd}\u{be}"),
        // MacRoman mojibake.
        "\u{221a}".to_string()
            + &cls(&[], "\u{b1}\u{2202}\u{2020}\u{2260}\u{ae}\u{2122}\u{b4}\u{2264}\u{2265}\u{a5}\u{b5}\u{f8}"),
        "\u{2248}".to_string() + &cls(&[], "\u{b0}\u{a2}"),
        "\u{201a}\u{c4}".to_string()
            + &cls(&[], "\u{ec}\u{ee}\u{ef}\u{f2}\u{f4}\u{fa}\u{f9}\u{fb}\u{2020}\u{b0}\u{a2}\u{3c0}"),
        "\u{201a}".to_string() + &cls(&[], "\u{e2}\u{f3}") + &cls(&[], "\u{e0}\u{e4}\u{b0}\u{ea}"),
        // Windows-1251 mojibake of U+2000-range characters.
        "\u{432}\u{402}".to_string(),
        // Windows-1251 mojibake of Latin-1 and Cyrillic: three characters.
        cls(&[], "\u{412}\u{413}\u{420}\u{421}")
            + &cls(&[c1, bad, start, end, cur], "\u{b0}\u{b5}")
            + &cls(&[], "\u{412}\u{413}\u{420}\u{421}"),
        "\u{413}\u{45e}\u{412}\u{402}\u{412}.".to_string() + &Class::new().span('A', 'Z').span('a', 'z').chars(" ").build(),
        // Windows-1252 encodings of 'à', 'á' and U+A0 itself.
        "\u{c3}".to_string() + &cls(&[], "\u{a0}\u{a1}"),
        lower.clone() + &space + "?" + &cls(&[], "\u{c3}\u{c2}") + &cls(&[], " "),
        "^".to_string() + &cls(&[], "\u{c3}\u{c2}") + &cls(&[], " "),
        // Â encoding exactly the character that follows.
        Class::new().span('a', 'z').chars(".,?!").ranges(end).build()
            + "\u{c2}"
            + &cls(&[start, end], " "),
        // Windows-1253 mojibake of U+2000-range characters.
        "\u{3b2}\u{20ac}".to_string() + &cls(&[], "\u{2122}\u{a0}\u{386}\u{ad}\u{ae}\u{b0}"),
        // Windows-1253 mojibake of Latin-1 and Greek: three characters.
        cls(&[], "\u{392}\u{393}\u{39e}\u{39f}")
            + &cls(&[c1, bad, start, end, cur], "\u{b0}")
            + &cls(&[], "\u{392}\u{393}\u{39e}\u{39f}"),
        // Windows-1257 mojibake of U+2000-range characters.
        "\u{101}\u{20ac}".to_string(),
    ];
    let pattern = alternatives.join("|");
    // The pattern is built from fixed tables; failing to compile is a bug caught by the tests.
    Regex::new(&pattern).expect("ftfy badness regex compiles")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values produced by ftfy 6.3.1: `ftfy.badness.is_bad(s)`.
    #[test]
    fn is_bad_matches_ftfy() {
        let cases = [
            ("cafÃ©", true),
            ("café", false),
            ("âœ” No problems", true),
            ("voilÃ le travail", true),
            ("Ã la mode", true),
            ("à la mode", false),
            ("\u{80}", true),
            ("ÂÂ", false),
            ("×²", true),
            ("ΟΔΥΣΣΕΥΣ", false),
            ("Ã©", true),
            ("aÃ ", true),
            ("a Ã ", true),
            ("Ã ", true),
            ("x Ã ", true),
            ("œ1", true),
            ("œa", false),
            ("ГўВЂВњa", true),
            ("Ø§Ù„", true),
            ("Ø§Ù„Ø", true),
            ("", false),
        ];
        for (text, expected) in cases {
            assert_eq!(is_bad(text), expected, "{text:?}");
        }
    }
}
