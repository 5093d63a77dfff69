//! The codecs ftfy's `fix_encoding` uses: the single-byte encodings of
//! `chardata.CHARMAP_ENCODINGS` (including ftfy's "sloppy" variants, whose byte 0x1A stands for
//! U+FFFD), strict Windows-1252 decoding, and ftfy's `utf-8-variants` decoder
//! (`bad_codecs/utf8_variants.py`: CESU-8 surrogate pairs and Java's `C0 80` null).

use std::sync::OnceLock;

use crate::generated::ftfy_data::{CHARMAPS, WINDOWS_1252_UNDEFINED};

/// One single-byte encoding.
pub(crate) struct Charmap {
    pub(crate) name: &'static str,
    decode: [char; 256],
    /// (char, byte) for every byte that does not decode to itself, sorted by char.
    encode_rest: Vec<(char, u8)>,
}

impl Charmap {
    fn new(name: &'static str, table: &[u32; 256]) -> Charmap {
        let mut decode = ['\0'; 256];
        let mut encode_rest = Vec::new();
        for (b, &cp) in table.iter().enumerate() {
            let c = char::from_u32(cp).unwrap_or('\u{fffd}');
            decode[b] = c;
            if cp != b as u32 {
                encode_rest.push((c, b as u8));
            }
        }
        encode_rest.sort_unstable();
        Charmap {
            name,
            decode,
            encode_rest,
        }
    }

    fn encode_char(&self, c: char) -> Option<u8> {
        let cp = c as u32;
        if cp < 0x100 && self.decode[cp as usize] == c {
            return Some(cp as u8);
        }
        self.encode_rest
            .binary_search_by_key(&c, |&(k, _)| k)
            .ok()
            .map(|i| self.encode_rest[i].1)
    }

    /// `chardata.possible_encoding(text, name)`: every char is one this encoding can produce.
    pub(crate) fn can_encode(&self, text: &str) -> bool {
        text.chars().all(|c| self.encode_char(c).is_some())
    }

    /// `text.encode(name)`; `None` where a char has no byte.
    pub(crate) fn encode(&self, text: &str) -> Option<Vec<u8>> {
        text.chars().map(|c| self.encode_char(c)).collect()
    }

    /// `bytes.decode(name)` (total: every byte decodes).
    pub(crate) fn decode_byte(&self, b: u8) -> char {
        self.decode[b as usize]
    }
}

/// The encodings of `chardata.CHARMAP_ENCODINGS`, in ftfy's order.
pub(crate) fn charmaps() -> &'static [Charmap] {
    static MAPS: OnceLock<Vec<Charmap>> = OnceLock::new();
    MAPS.get_or_init(|| {
        CHARMAPS
            .iter()
            .map(|(name, t)| Charmap::new(name, t))
            .collect()
    })
}

/// The `sloppy-windows-1252` encoding.
pub(crate) fn sloppy_windows_1252() -> &'static Charmap {
    static MAP: OnceLock<&'static Charmap> = OnceLock::new();
    MAP.get_or_init(|| {
        let maps = charmaps();
        // The generated table always holds it; fall back to the first map rather than panic.
        maps.iter()
            .find(|m| m.name == "sloppy-windows-1252")
            .unwrap_or(&maps[0])
    })
}

/// `bytes.decode("windows-1252")` (strict): `None` on its five undefined bytes.
pub(crate) fn decode_windows_1252(bytes: &[u8]) -> Option<String> {
    let sloppy = sloppy_windows_1252();
    bytes
        .iter()
        .map(|&b| {
            if WINDOWS_1252_UNDEFINED.contains(&b) {
                None
            } else if b == 0x1a {
                Some('\x1a')
            } else {
                Some(sloppy.decode_byte(b))
            }
        })
        .collect()
}

/// `bytes.decode("utf-8-variants")`; `None` where Python raises `UnicodeDecodeError`.
pub(crate) fn decode_utf8_variants(input: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(input.len());
    let mut pos = 0;
    while pos < input.len() {
        let rest = &input[pos..];
        match find_special(rest) {
            None => {
                out.push_str(std::str::from_utf8(rest).ok()?);
                pos = input.len();
            }
            Some(0) if rest[0] == 0xc0 => {
                // A Java null: `C0` followed by anything (the regex also accepts the newline
                // that ends the input) becomes U+0000 and both bytes are consumed.
                if rest.len() < 2 {
                    return None;
                }
                out.push('\0');
                pos += 2;
            }
            Some(0) => {
                // A CESU-8 surrogate pair, or an error.
                if rest.len() >= 6 && is_cesu8_pair(rest) {
                    let cp = ((rest[1] as u32 & 0x0f) << 16)
                        + ((rest[2] as u32 & 0x3f) << 10)
                        + ((rest[4] as u32 & 0x0f) << 6)
                        + (rest[5] as u32 & 0x3f)
                        + 0x10000;
                    out.push(char::from_u32(cp)?);
                    pos += 6;
                } else {
                    return None;
                }
            }
            Some(cutoff) => {
                out.push_str(std::str::from_utf8(&rest[..cutoff]).ok()?);
                pos += cutoff;
            }
        }
    }
    Some(out)
}

/// Python's `$` in a bytes pattern: at the end, or before a newline that ends the input.
fn at_end(b: &[u8], p: usize) -> bool {
    p == b.len() || (p + 1 == b.len() && b[p] == b'\n')
}

fn in_range(b: &[u8], p: usize, lo: u8, hi: u8) -> bool {
    b.get(p).is_some_and(|&x| (lo..=hi).contains(&x))
}

/// The start of the first match of `SPECIAL_BYTES_RE` (a Java null, a CESU-8 pair or a lone
/// surrogate). Every CESU-8 match position is also a surrogate match position, so two tests do.
fn find_special(b: &[u8]) -> Option<usize> {
    (0..b.len()).find(|&i| match b[i] {
        0xc0 => b.get(i + 1) == Some(&0x80) || at_end(b, i + 1),
        0xed => {
            (in_range(b, i + 1, 0xa0, 0xbf) && (in_range(b, i + 2, 0x80, 0xbf) || at_end(b, i + 2)))
                || at_end(b, i + 1)
        }
        _ => false,
    })
}

/// `CESU8_RE.match` on input of at least 6 bytes.
fn is_cesu8_pair(b: &[u8]) -> bool {
    b[0] == 0xed
        && in_range(b, 1, 0xa0, 0xaf)
        && in_range(b, 2, 0x80, 0xbf)
        && b[3] == 0xed
        && in_range(b, 4, 0xb0, 0xbf)
        && (in_range(b, 5, 0x80, 0xbf) || at_end(b, 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charmap(name: &str) -> &'static Charmap {
        charmaps().iter().find(|m| m.name == name).unwrap()
    }

    // Expected values produced by Python 3.11.7 with ftfy 6.3.1's codecs registered.
    #[test]
    fn utf8_variants_matches_ftfy() {
        let d = decode_utf8_variants;
        assert_eq!(d(b"\xed\xa0\xbd\xed\xb8\x8d").as_deref(), Some("\u{1f60d}"));
        assert_eq!(
            d(b"here comes a null! \xc0\x80").as_deref(),
            Some("here comes a null! \0")
        );
        assert_eq!(d(b"\xc3\xa9 \xc0\n").as_deref(), Some("\u{e9} \0"));
        assert_eq!(d(b"\xed\x95\x9c\n").as_deref(), Some("\u{d55c}\n"));
        assert_eq!(d(b"\xc0"), None);
        assert_eq!(d(b"\xc0A"), None);
        assert_eq!(d(b"\xed\xa0\x80"), None);
        assert_eq!(d(b"\xed\xa0\x80\xed\xb0\n").as_deref(), Some("\u{1000a}"));
        assert_eq!(d(b"ab\xffc"), None);
    }

    #[test]
    fn charmaps_match_python() {
        let names: Vec<&str> = charmaps().iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "latin-1",
                "sloppy-windows-1252",
                "sloppy-windows-1251",
                "sloppy-windows-1250",
                "sloppy-windows-1253",
                "sloppy-windows-1254",
                "sloppy-windows-1257",
                "iso-8859-2",
                "macroman",
                "cp437"
            ]
        );
        // "café".encode("utf-8").decode(...) in Python.
        assert_eq!(
            charmap("sloppy-windows-1252").encode("cafÃ©").unwrap(),
            b"caf\xc3\xa9"
        );
        assert_eq!(
            charmap("sloppy-windows-1252").encode("\u{fffd}").unwrap(),
            b"\x1a"
        );
        assert!(charmap("sloppy-windows-1252").encode("\x1a").is_none());
        assert_eq!(charmap("latin-1").encode("\x1a").unwrap(), b"\x1a");
        assert_eq!(charmap("macroman").encode("caf√©").unwrap(), b"caf\xc3\xa9");
        assert_eq!(charmap("cp437").encode("caf├⌐").unwrap(), b"caf\xc3\xa9");
        assert_eq!(
            decode_windows_1252(b"\x80\x9f").as_deref(),
            Some("\u{20ac}\u{178}")
        );
        assert_eq!(decode_windows_1252(b"\x81"), None);
    }
}
