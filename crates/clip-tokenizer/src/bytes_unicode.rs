//! `bytes_to_unicode` of clip/simple_tokenizer.py (GPT-2's byte-level alphabet): each byte maps
//! to a printable character, the printable Latin-1 bytes to themselves and the rest to
//! U+0100 onwards in byte order. The vocabulary starts with these 256 characters in the order
//! of the function's list: printable bytes first, then the others.

/// `bytes_to_unicode()` as a table indexed by byte.
pub(crate) fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        table[b as usize] = if is_printable(b) {
            b as char
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    table
}

/// The bytes in the order of `bytes_to_unicode().values()`, which is the vocabulary's order.
pub(crate) fn vocab_byte_order() -> Vec<u8> {
    let printable = (0..=255u8).filter(|&b| is_printable(b));
    let others = (0..=255u8).filter(|&b| !is_printable(b));
    printable.chain(others).collect()
}

fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff)
}

/// The inverse table: the byte a character stands for, if any.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 && is_printable(cp as u8) {
        return Some(cp as u8);
    }
    let offset = cp.checked_sub(256)?;
    (0..=255u8)
        .filter(|&b| !is_printable(b))
        .nth(offset as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Python: `bytes_to_unicode()` from clip/simple_tokenizer.py.
    #[test]
    fn matches_python_table() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], '\u{120}'); // 'Ġ'
        assert_eq!(t[0], '\u{100}');
        assert_eq!(t[0xad], '\u{143}');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0xa0], '\u{142}');
        let order = vocab_byte_order();
        assert_eq!(order.len(), 256);
        assert_eq!(order[0], b'!');
        assert_eq!(order[188], 0);
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('\u{144}'), None);
    }
}
