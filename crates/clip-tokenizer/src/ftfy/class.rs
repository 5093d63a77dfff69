//! Builds `regex` character classes from the generated range tables, so the ports of ftfy's
//! regular expressions name the same character sets as the reference (every member written as
//! an `\x{..}` escape: no character can be misread as class syntax).

use std::fmt::Write;

/// A character class under construction.
#[derive(Default)]
pub(crate) struct Class {
    body: String,
}

impl Class {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds every range of a generated table.
    pub(crate) fn ranges(mut self, table: &[(u32, u32)]) -> Self {
        for &(lo, hi) in table {
            self.push_range(lo, hi);
        }
        self
    }

    /// Adds each character of `chars`.
    pub(crate) fn chars(mut self, chars: &str) -> Self {
        for c in chars.chars() {
            self.push_range(c as u32, c as u32);
        }
        self
    }

    /// Adds the inclusive range `lo..=hi`.
    pub(crate) fn span(mut self, lo: char, hi: char) -> Self {
        self.push_range(lo as u32, hi as u32);
        self
    }

    fn push_range(&mut self, lo: u32, hi: u32) {
        // Writing into a String cannot fail.
        let _ = if lo == hi {
            write!(self.body, "\\x{{{lo:x}}}")
        } else {
            write!(self.body, "\\x{{{lo:x}}}-\\x{{{hi:x}}}")
        };
    }

    /// The class as regex syntax.
    pub(crate) fn build(&self) -> String {
        format!("[{}]", self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_escaped_class() {
        let c = Class::new()
            .ranges(&[(0x80, 0x9f)])
            .chars("-]")
            .span('a', 'c');
        assert_eq!(c.build(), "[\\x{80}-\\x{9f}\\x{2d}\\x{5d}\\x{61}-\\x{63}]");
        let re = regex::Regex::new(&c.build()).unwrap();
        assert!(re.is_match("-") && re.is_match("]") && re.is_match("\u{85}") && !re.is_match("d"));
    }
}
