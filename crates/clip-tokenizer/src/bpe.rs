//! The byte-level BPE merge loop of `SimpleTokenizer.bpe` (clip/simple_tokenizer.py), on
//! symbol ids instead of strings: a word's UTF-8 bytes become byte symbols (the last one with
//! `</w>`), then the adjacent pair of lowest merge rank is merged everywhere, left to right,
//! until no adjacent pair has a rank.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::bytes_unicode::byte_to_char;

/// A fast hasher for the packed `(left, right)` symbol pairs (one multiply, no DoS concern:
/// keys come from the vocabulary file, not from the text).
#[derive(Default)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type PairMap = HashMap<u64, (u32, u32), BuildHasherDefault<PairHasher>>;

fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Merge ranks over vocabulary ids.
pub(crate) struct Bpe {
    byte_ids: [u32; 256],
    byte_end_ids: [u32; 256],
    /// (left, right) -> (rank, id of the merged symbol).
    merges: PairMap,
}

impl Bpe {
    /// Builds the merge table; the error names the first symbol missing from the vocabulary.
    pub(crate) fn new(
        encoder: &HashMap<String, u32>,
        merges: &[(String, String)],
    ) -> Result<Bpe, String> {
        let mut byte_ids = [0u32; 256];
        let mut byte_end_ids = [0u32; 256];
        for (b, c) in byte_to_char().iter().enumerate() {
            let plain = c.to_string();
            let end = format!("{c}</w>");
            byte_ids[b] = *encoder.get(&plain).ok_or_else(|| {
                format!(
                    "not a CLIP byte-level BPE vocabulary: no token {plain:?} for byte {b:#04x}"
                )
            })?;
            byte_end_ids[b] = *encoder.get(&end).ok_or_else(|| {
                format!("not a CLIP byte-level BPE vocabulary: no token {end:?} for byte {b:#04x}")
            })?;
        }
        let mut map = PairMap::with_capacity_and_hasher(merges.len(), Default::default());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let id = |s: &str| {
                encoder.get(s).copied().ok_or_else(|| {
                    format!(
                        "merge {} ({a} {b}): {s:?} is not in the vocabulary",
                        rank + 1
                    )
                })
            };
            let merged = id(&format!("{a}{b}"))?;
            // A later duplicate of a pair overrides its rank, as Python's dict(zip(...)) does.
            map.insert(pair_key(id(a)?, id(b)?), (rank as u32, merged));
        }
        Ok(Bpe {
            byte_ids,
            byte_end_ids,
            merges: map,
        })
    }

    /// Appends the ids of one word (a piece of the regex split) to `out`.
    pub(crate) fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        let Some((&last, init)) = word.split_last() else {
            return;
        };
        let mut syms: Vec<u32> = Vec::with_capacity(word.len());
        syms.extend(init.iter().map(|&b| self.byte_ids[b as usize]));
        syms.push(self.byte_end_ids[last as usize]);
        while syms.len() > 1 {
            let mut best: Option<(u32, u32, u32, u32)> = None;
            for w in syms.windows(2) {
                if let Some(&(rank, merged)) = self.merges.get(&pair_key(w[0], w[1])) {
                    if best.is_none_or(|(r, ..)| rank < r) {
                        best = Some((rank, w[0], w[1], merged));
                    }
                }
            }
            let Some((_, a, b, merged)) = best else { break };
            // Merge every occurrence, left to right, compacting in place.
            let len = syms.len();
            let (mut i, mut j) = (0, 0);
            while i < len {
                if i + 1 < len && syms[i] == a && syms[i + 1] == b {
                    syms[j] = merged;
                    i += 2;
                } else {
                    syms[j] = syms[i];
                    i += 1;
                }
                j += 1;
            }
            syms.truncate(j);
        }
        out.extend_from_slice(&syms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes_unicode::vocab_byte_order;

    /// A toy vocabulary in CLIP's layout with the given merges.
    fn toy(merges: &[(&str, &str)]) -> (HashMap<String, u32>, Vec<(String, String)>) {
        let table = byte_to_char();
        let mut vocab: Vec<String> = vocab_byte_order()
            .iter()
            .map(|&b| table[b as usize].to_string())
            .collect();
        let ends: Vec<String> = vocab.iter().map(|s| format!("{s}</w>")).collect();
        vocab.extend(ends);
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        let encoder = vocab
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i as u32))
            .collect();
        (encoder, merges)
    }

    /// Expected values from Python: `SimpleTokenizer.bpe` with `bpe_ranks` set to these merges.
    #[test]
    fn merges_all_occurrences_of_the_best_pair_per_round() {
        let (enc, merges) = toy(&[
            ("a", "a"),
            ("a", "a</w>"),
            ("aa", "a</w>"),
            ("aa", "aa</w>"),
            ("aa", "aa"),
        ]);
        let bpe = Bpe::new(&enc, &merges).unwrap();
        let cases: [(&[u8], &[&str]); 4] = [
            (b"aaa", &["aaa</w>"]),
            (b"aaaa", &["aaaa</w>"]),
            (b"aaaaa", &["aa", "aaa</w>"]),
            (b"a", &["a</w>"]),
        ];
        for (word, expected) in cases {
            let mut out = Vec::new();
            bpe.encode_word(word, &mut out);
            let expected: Vec<u32> = expected.iter().map(|s| enc[*s]).collect();
            assert_eq!(out, expected, "{:?}", String::from_utf8_lossy(word));
        }
    }

    #[test]
    fn single_byte_word_is_its_end_symbol() {
        let (enc, merges) = toy(&[]);
        let bpe = Bpe::new(&enc, &merges).unwrap();
        let mut out = Vec::new();
        bpe.encode_word(b"!", &mut out);
        assert_eq!(out, [256]);
    }

    #[test]
    fn missing_merge_result_is_an_error() {
        let (mut enc, merges) = toy(&[("a", "b")]);
        enc.remove("ab");
        let err = Bpe::new(&enc, &merges).err().unwrap();
        assert!(err.contains("\"ab\" is not in the vocabulary"), "{err}");
    }
}
