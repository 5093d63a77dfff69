//! The byte-level BPE merge loop of `SimpleTokenizer.bpe` (clip/simple_tokenizer.py), on
//! symbol ids instead of strings: a word's UTF-8 bytes become byte symbols (the last one with
//! `</w>`), then the adjacent pair of lowest merge rank is merged everywhere, left to right,
//! until no adjacent pair has a rank.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
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
    ///
    /// Python's loop rescans the whole word for the lowest-ranked pair once per merge, which is quadratic
    /// in the word's length (a 1 MB word of random letters never finishes). This does the same rounds in
    /// O(n log n): every adjacent pair with a rank sits in a min-heap keyed by (rank, position); a round
    /// takes all entries of the lowest rank, merges them left to right (skipping entries a previous merge
    /// of the round has consumed or that no longer hold the pair), and pushes the pairs each merge forms.
    /// Pairs formed during a round wait for a later round, as in Python, where a round scans the word as
    /// it was when the round began.
    pub(crate) fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        let Some((&last, init)) = word.split_last() else {
            return;
        };
        let mut syms: Vec<u32> = Vec::with_capacity(word.len());
        syms.extend(init.iter().map(|&b| self.byte_ids[b as usize]));
        syms.push(self.byte_end_ids[last as usize]);
        if syms.len() <= SHORT_WORD {
            self.merge_short(&mut syms);
        } else {
            self.merge_long(&mut syms);
        }
        out.extend_from_slice(&syms);
    }

    /// The reference loop, cheapest for the short words that make up nearly all text.
    fn merge_short(&self, syms: &mut Vec<u32>) {
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
    }

    /// The same rounds over a linked list of symbols, with the positions of each ranked pair kept in a
    /// bucket per rank and the ranks present in a small min-heap: O(n log n) at worst, near-linear in
    /// practice (the heap holds distinct ranks, not positions).
    fn merge_long(&self, syms: &mut Vec<u32>) {
        let n = syms.len();
        // Positions are u32: callers bound a text's length far below 4 GiB.
        let mut next: Vec<u32> = (1..=n as u32).collect();
        next[n - 1] = NONE;
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        prev[0] = NONE;
        let mut queue = RankQueue::default();
        for (i, w) in syms.windows(2).enumerate() {
            if let Some(&(rank, _)) = self.merges.get(&pair_key(w[0], w[1])) {
                queue.push(rank, i as u32);
            }
        }
        while let Some((rank, mut round)) = queue.pop() {
            // Merge left to right, as Python's scan does; the same position may have been queued twice.
            round.sort_unstable();
            round.dedup();
            for pos in round {
                let p = pos as usize;
                let q = next[p];
                // Skip positions a merge of this round consumed, and entries whose pair has since changed.
                if syms[p] == DEAD || q == NONE {
                    continue;
                }
                let q = q as usize;
                match self.merges.get(&pair_key(syms[p], syms[q])) {
                    Some(&(r, merged)) if r == rank => {
                        syms[p] = merged;
                        syms[q] = DEAD;
                        next[p] = next[q];
                        if next[q] != NONE {
                            prev[next[q] as usize] = pos;
                        }
                        // The pairs this merge forms wait for a later round.
                        if prev[p] != NONE {
                            let left = prev[p];
                            let key = pair_key(syms[left as usize], merged);
                            if let Some(&(r, _)) = self.merges.get(&key) {
                                queue.push(r, left);
                            }
                        }
                        if next[p] != NONE {
                            let key = pair_key(merged, syms[next[p] as usize]);
                            if let Some(&(r, _)) = self.merges.get(&key) {
                                queue.push(r, pos);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        syms.retain(|&s| s != DEAD);
    }
}

/// Pending merges: positions grouped by rank, ranks popped lowest first.
#[derive(Default)]
struct RankQueue {
    buckets: HashMap<u32, Vec<u32>, BuildHasherDefault<PairHasher>>,
    ranks: BinaryHeap<Reverse<u32>>,
}

impl RankQueue {
    fn push(&mut self, rank: u32, pos: u32) {
        let bucket = self.buckets.entry(rank).or_default();
        if bucket.is_empty() {
            self.ranks.push(Reverse(rank));
        }
        bucket.push(pos);
    }

    /// The lowest rank and all positions queued for it.
    fn pop(&mut self) -> Option<(u32, Vec<u32>)> {
        let Reverse(rank) = self.ranks.pop()?;
        let positions = self.buckets.remove(&rank).unwrap_or_default();
        Some((rank, positions))
    }
}

/// Words up to this many symbols take the reference loop; longer ones the heap.
const SHORT_WORD: usize = 32;
/// "No neighbour" in the linked list of symbols.
const NONE: u32 = u32::MAX;
/// A symbol merged into its left neighbour (vocabulary ids are below `u32::MAX`).
const DEAD: u32 = u32::MAX;

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

    /// Both merge paths on one word: the reference loop and the heap.
    fn both_paths(bpe: &Bpe, word: &[u8]) -> (Vec<u32>, Vec<u32>) {
        let (last, init) = word.split_last().unwrap();
        let mut syms: Vec<u32> = init.iter().map(|&b| bpe.byte_ids[b as usize]).collect();
        syms.push(bpe.byte_end_ids[*last as usize]);
        let mut short = syms.clone();
        bpe.merge_short(&mut short);
        bpe.merge_long(&mut syms);
        (short, syms)
    }

    /// A small deterministic generator (xorshift), so the test needs no crate and always runs the same words.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn heap_merging_equals_the_reference_loop_on_openai_vocabulary() {
        let files = crate::vocab_files::parse_bpe_gz(
            include_bytes!("../data/bpe_simple_vocab_16e6.txt.gz"),
            std::path::Path::new("bpe_simple_vocab_16e6.txt.gz"),
        )
        .unwrap();
        let bpe = Bpe::new(&files.encoder, &files.merges).unwrap();
        let alphabets: [&[u8]; 4] = [
            b"ab",
            b"aeiou",
            b"etaoinshrdlu",
            b"abcdefghijklmnopqrstuvwxyz!?.,'0123456789",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut checked = 0;
        for alphabet in alphabets {
            for len in 1..=300usize {
                let word: Vec<u8> = (0..len)
                    .map(|_| alphabet[(xorshift(&mut state) % alphabet.len() as u64) as usize])
                    .collect();
                let (short, long) = both_paths(&bpe, &word);
                assert_eq!(short, long, "{:?}", String::from_utf8_lossy(&word));
                checked += 1;
            }
        }
        // Repetitive words: many equal pairs per round, overlapping occurrences.
        for unit in [&b"a"[..], b"ab", b"aab", b"the", b"lol"] {
            for reps in 1..=120 {
                let word = unit.repeat(reps);
                let (short, long) = both_paths(&bpe, &word);
                assert_eq!(short, long, "{:?}", String::from_utf8_lossy(&word));
                checked += 1;
            }
        }
        assert_eq!(checked, 4 * 300 + 5 * 120);
    }

    #[test]
    fn heap_merging_equals_the_reference_loop_on_toy_vocabularies() {
        // Vocabularies where merges overlap and a later merge can rebuild an earlier pair's parts.
        let (enc, merges) = toy(&[
            ("a", "a"),
            ("a", "a</w>"),
            ("aa", "a</w>"),
            ("aa", "aa</w>"),
            ("aa", "aa"),
            ("b", "a"),
            ("a", "b"),
            ("ab", "a"),
            ("ba", "b</w>"),
        ]);
        let bpe = Bpe::new(&enc, &merges).unwrap();
        let mut state = 7u64;
        for len in 1..=400usize {
            let word: Vec<u8> = (0..len)
                .map(|_| {
                    if xorshift(&mut state).is_multiple_of(3) {
                        b'b'
                    } else {
                        b'a'
                    }
                })
                .collect();
            let (short, long) = both_paths(&bpe, &word);
            assert_eq!(short, long, "{:?}", String::from_utf8_lossy(&word));
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
