//! Helpers of the unit tests: deterministic values, differences, temporary directories.

/// Deterministic values in [-1, 1).
pub fn lcg(len: usize, mut state: u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0f32, |acc, (x, y)| acc.max((x - y).abs()))
}

/// max |got - want| / max |want| over two tensors of the same size.
pub fn relative_error(got: &candle_core::Tensor, want: &candle_core::Tensor) -> f64 {
    let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let max_ref = w.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
    f64::from(max_abs_diff(&g, &w)) / max_ref
}

/// The largest |x| of a tensor.
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The sum of |x| over a tensor.
pub fn abs_sum(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A fresh temporary directory for one test (unique to the process and `tag`).
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
