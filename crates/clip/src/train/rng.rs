//! The training run's random numbers: a small counter-based generator, so every random choice (epoch order,
//! crop boxes, fresh weights) is a function of the seed and of where it is made, not of how many numbers were
//! drawn before. A resumed run therefore needs no generator state beyond the seed and its position in the data,
//! and decoding threads may draw in any order.

/// SplitMix64's output function over a 64-bit state (Steele, Lea, Flood 2014): good enough statistics for
/// shuffles, crops and initialisations, and trivially reproducible.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a generator is used, so that two uses never share a stream.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    /// The order of the samples in an epoch.
    EpochOrder,
    /// The crop of one sample in one epoch.
    Augment,
    /// Fresh parameters of a model built from a config.
    Init,
}

impl Rng {
    /// The generator for `stream` at the coordinates `at` (epoch, sample index, parameter number, ...).
    pub fn new(seed: u64, stream: Stream, at: &[u64]) -> Self {
        let mut state = mix(seed ^ GOLDEN.wrapping_mul(stream as u64 + 1));
        for &x in at {
            state = mix(state ^ mix(x.wrapping_add(GOLDEN)));
        }
        Self { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// A uniform integer in 0..n (n > 0), without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Standard normal (Box-Muller; one of the pair is used).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |stream, at: &[u64]| {
            let mut r = Rng::new(7, stream, at);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(
            draw(Stream::Augment, &[1, 2]),
            draw(Stream::Augment, &[1, 2])
        );
        assert_ne!(
            draw(Stream::Augment, &[1, 2]),
            draw(Stream::Augment, &[2, 1])
        );
        assert_ne!(draw(Stream::Augment, &[1]), draw(Stream::EpochOrder, &[1]));
    }

    #[test]
    fn distributions_have_their_moments() {
        let mut r = Rng::new(1, Stream::Init, &[]);
        let n = 200_000;
        let (mut s, mut s2, mut u) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let x = r.normal();
            s += x;
            s2 += x * x;
            u += r.uniform();
        }
        let n = f64::from(n);
        assert!((s / n).abs() < 0.01, "normal mean {}", s / n);
        assert!((s2 / n - 1.0).abs() < 0.02, "normal variance {}", s2 / n);
        assert!((u / n - 0.5).abs() < 0.01, "uniform mean {}", u / n);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[r.below(3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        let mut items: Vec<u32> = (0..50).collect();
        r.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }
}
