//! Dot products and top-k: the arithmetic of exact search and of the HNSW graph. Embeddings are L2-normalised
//! when stored, so a dot product is the cosine. AVX-512 and AVX2/FMA versions (explicit intrinsics, four
//! accumulators) and a portable one; the widest the CPU has is chosen once, at run time.

/// Lanes summed independently in the portable version, so that the compiler keeps several accumulators.
const LANES: usize = 16;

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut chunks_a = a.chunks_exact(LANES);
    let mut chunks_b = b.chunks_exact(LANES);
    for (x, y) in (&mut chunks_a).zip(&mut chunks_b) {
        // Plain multiply-add: without FMA hardware, `mul_add` is a slow library call.
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        tail += x * y;
    }
    // Pairwise reduction of the lanes: the same order on every level.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0] + tail
}

// Explicit intrinsics: the compiler turns the portable loop's per-lane `mul_add` into 2-wide operations.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads 16 floats at an offset + 16 <= n of both slices.
    unsafe {
        while i + 64 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_loadu_ps(pa.add(i + 16 * k));
                let y = _mm512_loadu_ps(pb.add(i + 16 * k));
                *acc = _mm512_fmadd_ps(x, y, *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i)),
                _mm512_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 16;
        }
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut total = _mm512_reduce_add_ps(sum);
    for j in i..n {
        total = a[j].mul_add(b[j], total);
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads 8 floats at an offset + 8 <= n of both slices.
    unsafe {
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    let mut total = lanes.iter().sum::<f32>();
    for j in i..n {
        total = a[j].mul_add(b[j], total);
    }
    total
}

type DotFn = fn(&[f32], &[f32]) -> f32;

fn select() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return |a, b| unsafe { dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return |a, b| unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable
}

/// The dot product of the common prefix of `a` and `b`, with the widest SIMD this CPU has.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    static DOT: std::sync::OnceLock<DotFn> = std::sync::OnceLock::new();
    (DOT.get_or_init(select))(a, b)
}

/// Which SIMD level [`dot`] runs on: `avx512`, `avx2` or `portable`.
pub fn dot_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2";
        }
    }
    "portable"
}

/// Scales `v` to unit length; a zero (or non-finite) vector is left as it is and reported as `false`.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return false;
    }
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    true
}

/// Indices and scores of the `k` largest scores, best first; ties keep the lower index first.
pub fn top_k(scores: impl IntoIterator<Item = (usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    use std::cmp::Ordering;
    use std::collections::BinaryHeap;
    // Min-heap of the best k seen so far (reversed ordering); NaN scores never enter.
    #[derive(PartialEq)]
    struct Entry(f32, usize);
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Entry {
        fn cmp(&self, other: &Self) -> Ordering {
            // Worse = lower score, or equal score and higher index; the heap's top is the worst.
            other
                .0
                .total_cmp(&self.0)
                .then_with(|| self.1.cmp(&other.1))
        }
    }
    if k == 0 {
        return Vec::new();
    }
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for (index, score) in scores {
        if score.is_nan() {
            continue;
        }
        if heap.len() < k {
            heap.push(Entry(score, index));
        } else if let Some(worst) = heap.peek() {
            if Entry(score, index) < *worst {
                heap.pop();
                heap.push(Entry(score, index));
            }
        }
    }
    let mut best: Vec<(usize, f32)> = heap.into_iter().map(|e| (e.1, e.0)).collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn every_level_matches_a_double_precision_sum_on_ragged_lengths() {
        for n in [0, 1, 7, 15, 16, 17, 31, 512, 768, 1027] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 61.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 47.0)
                .collect();
            let want = reference_dot(&a, &b);
            let tolerance =
                1e-5 * (1.0 + reference_dot(&a, &a).sqrt() * reference_dot(&b, &b).sqrt());
            let mut levels: Vec<(&str, f32)> =
                vec![("portable", dot_portable(&a, &b)), ("chosen", dot(&a, &b))];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: features checked.
                    levels.push(("avx2", unsafe { dot_avx2(&a, &b) }));
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: features checked.
                    levels.push(("avx512", unsafe { dot_avx512(&a, &b) }));
                }
            }
            for (level, got) in levels {
                assert!(
                    (f64::from(got) - want).abs() <= tolerance,
                    "{level} n={n}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn top_k_orders_best_first_and_breaks_ties_by_index() {
        let scores = [0.1, 0.9, 0.5, 0.9, f32::NAN, -1.0, 0.5];
        let best = top_k(scores.iter().copied().enumerate(), 4);
        assert_eq!(best, vec![(1, 0.9), (3, 0.9), (2, 0.5), (6, 0.5)]);
        assert_eq!(top_k(scores.iter().copied().enumerate(), 0), vec![]);
        assert_eq!(top_k(scores.iter().copied().enumerate(), 100).len(), 6);
    }

    #[test]
    fn normalize_gives_unit_length_and_refuses_zero() {
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 3];
        assert!(!normalize(&mut zero));
        assert_eq!(zero, vec![0.0; 3]);
    }
}
