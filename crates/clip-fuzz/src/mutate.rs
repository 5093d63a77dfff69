//! A small deterministic mutator in the style of libFuzzer's: bit flips, byte and integer overwrites with
//! "interesting" values (0, -1, 0x7f.., powers of two), chunk erase/duplicate/insert, and splicing with a
//! second seed. Large inputs (checkpoints) are mutated mostly near their start, where headers live.

/// xorshift64*: fast, deterministic, no dependency.
pub struct Mutator(u64);

const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    1 << 40,
];

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// A position, biased to the first 4 KiB for large inputs.
    fn position(&mut self, len: usize) -> usize {
        if len > 4096 && self.below(4) != 0 {
            self.below(4096)
        } else {
            self.below(len)
        }
    }

    /// One to four mutations of `base` (with `other` for splicing).
    pub fn mutate(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = base.to_vec();
        for _ in 0..1 + self.below(4) {
            self.mutate_once(&mut data, other);
        }
        data
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>, other: &[u8]) {
        if data.is_empty() {
            data.push(self.next() as u8);
            return;
        }
        let len = data.len();
        match self.below(9) {
            0 => {
                let at = self.position(len);
                data[at] ^= 1 << self.below(8);
            }
            1 => {
                let at = self.position(len);
                data[at] = self.next() as u8;
            }
            2 => {
                // An interesting integer, little or big endian, 1 to 8 bytes wide.
                let value = INTERESTING[self.below(INTERESTING.len())];
                let width = [1, 2, 4, 8][self.below(4)];
                let at = self.position(len);
                let bytes = if self.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                for (i, b) in bytes.iter().take(width).enumerate() {
                    if let Some(slot) = data.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                // An ASCII digit run: numbers in text formats (JSON, headers) become huge or odd.
                let at = self.position(len);
                let digits = b"99999999999999999999";
                let n = 1 + self.below(digits.len());
                data.splice(at..at, digits[..n].iter().copied());
            }
            4 => {
                let at = self.position(len);
                let n = 1 + self.below((len - at).min(64));
                data.drain(at..at + n);
            }
            5 => {
                let at = self.position(len);
                let n = 1 + self.below((len - at).min(64));
                let chunk: Vec<u8> = data[at..at + n].to_vec();
                let to = self.position(len);
                data.splice(to..to, chunk);
            }
            6 => {
                let at = self.position(len);
                let n = 1 + self.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            7 if !other.is_empty() => {
                // Splice: a prefix of this input and a suffix of the other.
                let cut = self.position(len);
                let from = self.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let cut = self.position(len);
                data.truncate(cut.max(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_change_the_input() {
        let base = b"{\"crop_size\": 224, \"image_std\": [0.5, 0.5, 0.5]}".to_vec();
        let mut a = Mutator::new(42);
        let mut b = Mutator::new(42);
        let mut changed = 0;
        for _ in 0..200 {
            let x = a.mutate(&base, b"other");
            assert_eq!(x, b.mutate(&base, b"other"));
            changed += usize::from(x != base);
        }
        assert!(
            changed > 180,
            "only {changed} of 200 mutations changed the input"
        );
    }
}
