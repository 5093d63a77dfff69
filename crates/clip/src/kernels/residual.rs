//! The skip connections, `out += residual` (the transformer's) and `out = relu(out + residual)` (the ResNet's), added in place across the kernel pool (candle's
//! add would allocate a third buffer and spin its own thread pool beside ours).

use super::pool::run_chunks_mut;

/// Below this many values one thread does the add.
const PARALLEL_MIN_VALUES: usize = 1 << 15;

/// `out[i] += residual[i]`.
pub fn add_assign(out: &mut [f32], residual: &[f32]) {
    zip_assign(out, residual, |o, r| o + r);
}

/// `out[i] = max(out[i] + residual[i], 0)`: the end of a ResNet bottleneck block.
pub fn add_relu_assign(out: &mut [f32], residual: &[f32]) {
    zip_assign(out, residual, |o, r| (o + r).max(0.0));
}

/// `out[i] = op(out[i], residual[i])`, split across the cores for large buffers.
fn zip_assign(out: &mut [f32], residual: &[f32], op: impl Fn(f32, f32) -> f32 + Sync) {
    assert_eq!(out.len(), residual.len(), "residual size");
    let threads = crate::threads::count();
    let chunk = out.len().div_ceil(threads).max(PARALLEL_MIN_VALUES);
    run_chunks_mut(out, chunk, |i, part| {
        let (start, len) = (i * chunk, part.len());
        for (o, &r) in part.iter_mut().zip(&residual[start..start + len]) {
            *o = op(*o, r);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::lcg;

    #[test]
    fn adds_every_value_in_small_and_split_buffers() {
        for len in [0, 1, 17, PARALLEL_MIN_VALUES * 3 + 5] {
            let (a, b) = (lcg(len, 1), lcg(len, 2));
            let mut out = a.clone();
            add_assign(&mut out, &b);
            let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            assert_eq!(out, expected, "len {len}");
            let mut out = a.clone();
            add_relu_assign(&mut out, &b);
            let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x + y).max(0.0)).collect();
            assert_eq!(out, expected, "len {len}");
        }
    }
}
