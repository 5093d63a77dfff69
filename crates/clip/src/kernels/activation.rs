//! Element-wise activations of the towers in one vectorised pass over a buffer, split across the cores for
//! large inputs (candle's QuickGELU is three ops, each reading and writing the whole activation), and the
//! vectorisable `exp` that softmax and QuickGELU share. The SIMD levels run the portable loops compiled for
//! AVX-512 or AVX2 (identical results); erf GELU stays portable at every level (its `erff` is an opaque call).

use super::dispatch::{self, Level};
use super::pool::run_chunks_mut;

/// Elements below which one thread does everything.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// `e^x` to about 1 ulp (Cephes' `expf` scheme: `x = n ln2 + r`, a degree-7 polynomial for `e^r`, `2^n` from
/// the exponent bits), in plain arithmetic so it vectorises; 0 below the f32 range (so `-inf` masks give 0).
/// `n` is rounded and turned into exponent bits with the `1.5 * 2^23` shifter rather than `round` and `as i32`:
/// the same values, but `as` saturates, and its vector form left part of every loop scalar.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding it rounds any |y| < 2^22 to an integer (ties to even) held in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.0, 88.5);
    let shifted = clamped * LOG2E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // The integer n sits in the low bits of `shifted`; n + 127 shifted into the exponent field is 2^n.
    let biased = shifted
        .to_bits()
        .wrapping_sub(SHIFTER.to_bits())
        .wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    if x < -87.0 {
        0.0
    } else {
        e_r * scale
    }
}

/// QuickGELU `x * sigmoid(1.702 x)` = `x / (1 + e^(-1.702 x))` in place, across the cores for large inputs.
pub fn quick_gelu(values: &mut [f32]) {
    map_in_place(values, quick_gelu_part);
}

/// QuickGELU of one part, compiled for the process's level.
fn quick_gelu_part(part: &mut [f32]) {
    quick_gelu_at(dispatch::level(), part)
}

fn quick_gelu_at(level: Level, part: &mut [f32]) {
    match level {
        // SAFETY: the level is never above the CPU's: it has AVX-512 F/BW/VL.
        Level::Avx512 => unsafe { simd::quick_gelu(part) },
        // SAFETY: as above, AVX2 and FMA.
        Level::Avx2 => unsafe { simd::quick_gelu_avx2(part) },
        Level::Portable => quick_gelu_generic(part),
    }
}

/// ReLU `max(x, 0)` in place, across the cores for large inputs (the ResNet's convolutions).
pub fn relu(values: &mut [f32]) {
    map_in_place(values, |part| part.iter_mut().for_each(|v| *v = v.max(0.0)));
}

/// `transform` over `values` in place, in parts across the cores for large inputs.
fn map_in_place(values: &mut [f32], transform: impl Fn(&mut [f32]) + Sync) {
    let chunk = parallel_chunk(values.len());
    if values.len() <= chunk {
        transform(values);
        return;
    }
    run_chunks_mut(values, chunk, |_, part| transform(part));
}

/// `transform` over a copy of `x`, each part copied and transformed by the thread that owns it.
fn map_copy(x: &[f32], transform: impl Fn(&mut [f32]) + Sync) -> Vec<f32> {
    let fill = |_, start: usize, dst: &mut [std::mem::MaybeUninit<f32>]| {
        transform(copied(dst, &x[start..start + dst.len()]));
    };
    // SAFETY: each chunk is written in full (copied, then transformed in place).
    unsafe { super::pool::new_in_chunks(x.len(), parallel_chunk(x.len()), fill) }
}

/// The part of an element-wise pass one thread takes.
fn parallel_chunk(len: usize) -> usize {
    len.div_ceil(crate::threads::count()).max(PARALLEL_MIN_WORK)
}

/// erf GELU `0.5 x (1 + erf(x / sqrt 2))` of one value, with the same `erff` (musl's, through candle) and the
/// same operation order as candle's `gelu_erf`, so that results are bit-identical to it.
#[inline(always)]
fn gelu_erf_value(v: f32) -> f32 {
    (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * v
}

/// erf GELU in place, across the cores for large inputs (candle's is one thread).
pub fn gelu_erf(values: &mut [f32]) {
    map_in_place(values, gelu_erf_part);
}

fn gelu_erf_part(part: &mut [f32]) {
    part.iter_mut().for_each(|v| *v = gelu_erf_value(*v));
}

/// The activations whose derivative [`activation_backward`] computes in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smooth {
    /// `x sigmoid(1.702 x)`
    QuickGelu,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`
    GeluTanh,
    /// `x Phi(x)` with the normal CDF `Phi(x) = 0.5 (1 + erf(x / sqrt 2))`
    GeluErf,
}

#[inline(always)]
fn smooth_grad(kind: Smooth, pre: &[f32], dy: &[f32], out: &mut [f32]) {
    match kind {
        // d/dx x s(ax) = s + a x s (1 - s)
        Smooth::QuickGelu => {
            for ((o, &x), &d) in out.iter_mut().zip(pre).zip(dy) {
                let s = 1.0 / (1.0 + exp(-1.702 * x));
                *o = d * (s + 1.702 * x * s * (1.0 - s));
            }
        }
        Smooth::GeluTanh => {
            let c = (2.0f32 / std::f32::consts::PI).sqrt();
            for ((o, &x), &d) in out.iter_mut().zip(pre).zip(dy) {
                let u = c * (x + 0.044715 * x * x * x);
                // tanh u = 1 - 2 / (e^(2u) + 1)
                let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
                let du = c * (1.0 + 3.0 * 0.044715 * x * x);
                *o = d * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
            }
        }
        // d/dx x Phi(x) = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi)
        Smooth::GeluErf => {
            let inv_sqrt_2pi = 1.0 / (2.0 * std::f32::consts::PI).sqrt();
            for ((o, &x), &d) in out.iter_mut().zip(pre).zip(dy) {
                let cdf = 0.5
                    * (1.0 + candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = exp(-0.5 * x * x) * inv_sqrt_2pi;
                *o = d * (cdf + x * pdf);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn smooth_grad_avx512(kind: Smooth, pre: &[f32], dy: &[f32], out: &mut [f32]) {
    smooth_grad(kind, pre, dy, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn smooth_grad_avx2(kind: Smooth, pre: &[f32], dy: &[f32], out: &mut [f32]) {
    smooth_grad(kind, pre, dy, out)
}

/// `dy * act'(pre)` element-wise: the gradient through the activation, across the cores for large inputs.
pub fn activation_backward(kind: Smooth, pre: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(pre.len(), dy.len(), "activation gradient size");
    let level = dispatch::level();
    let chunk = parallel_chunk(pre.len());
    let run = |pre: &[f32], dy: &[f32], out: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        match level {
            // SAFETY: the level is never above the CPU's: it has AVX-512 F/VL, AVX2 and FMA.
            Level::Avx512 => return unsafe { smooth_grad_avx512(kind, pre, dy, out) },
            // SAFETY: as above, AVX2 and FMA.
            Level::Avx2 => return unsafe { smooth_grad_avx2(kind, pre, dy, out) },
            Level::Portable => {}
        }
        smooth_grad(kind, pre, dy, out);
    };
    let fill = |_, start: usize, dst: &mut [std::mem::MaybeUninit<f32>]| {
        let out = zeroed(dst);
        run(
            &pre[start..start + out.len()],
            &dy[start..start + out.len()],
            out,
        );
    };
    // SAFETY: each chunk is written in full (zeroed, then overwritten element by element).
    unsafe { super::pool::new_in_chunks(pre.len(), chunk, fill) }
}

/// erf GELU of `x` into a new vector (the input kept: training needs both).
pub fn gelu_erf_copy(x: &[f32]) -> Vec<f32> {
    map_copy(x, gelu_erf_part)
}

/// QuickGELU of `x` into a new vector (the input kept: training needs both).
pub fn quick_gelu_copy(x: &[f32]) -> Vec<f32> {
    map_copy(x, quick_gelu_part)
}

/// The chunk as initialised zeros (a cache-hot write, unlike a separate memset of the whole buffer).
fn zeroed(dst: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    for v in dst.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was just written.
    unsafe { &mut *(std::ptr::from_mut(dst) as *mut [f32]) }
}

/// The chunk initialised with `src`.
fn copied<'a>(dst: &'a mut [std::mem::MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(s);
    }
    // SAFETY: every element was just written (`src` has the chunk's length).
    unsafe { &mut *(std::ptr::from_mut(dst) as *mut [f32]) }
}

#[inline(always)]
fn quick_gelu_generic(values: &mut [f32]) {
    for v in values {
        *v /= 1.0 + exp(-1.702 * *v);
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::quick_gelu_generic;

    /// [`quick_gelu_generic`] compiled with AVX-512.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn quick_gelu(values: &mut [f32]) {
        quick_gelu_generic(values)
    }

    /// [`quick_gelu_generic`] compiled with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quick_gelu_avx2(values: &mut [f32]) {
        quick_gelu_generic(values)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::quick_gelu_generic;

    /// # Safety
    /// Always safe off x86_64 (no CPU features needed).
    pub(super) unsafe fn quick_gelu(values: &mut [f32]) {
        quick_gelu_generic(values)
    }

    /// # Safety
    /// Always safe off x86_64 (no CPU features needed).
    pub(super) unsafe fn quick_gelu_avx2(values: &mut [f32]) {
        quick_gelu_generic(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::lcg;

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_zero_below_range() {
        let mut worst = 0f32;
        for i in 0..200_000 {
            let x = -87.0 + 175.0 * (i as f32 / 200_000.0);
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
    }

    #[test]
    fn relu_covers_split_buffers() {
        for len in [0, 7, PARALLEL_MIN_WORK * 2 + 3] {
            let a = lcg(len, 1);
            let mut values = a.clone();
            relu(&mut values);
            assert_eq!(values, a.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn quick_gelu_matches_the_formula() {
        let mut values: Vec<f32> = lcg(100_003, 5).iter().map(|v| v * 12.0).collect();
        let want: Vec<f32> = values
            .iter()
            .map(|&v| (v as f64 / (1.0 + (-1.702 * v as f64).exp())) as f32)
            .collect();
        quick_gelu(&mut values);
        for (g, w) in values.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn quick_gelu_and_its_gradient_are_bit_identical_on_every_level() {
        let x: Vec<f32> = lcg(10_007, 6).iter().map(|v| v * 12.0).collect();
        let dy = lcg(x.len(), 7);
        let mut want = x.clone();
        quick_gelu_at(Level::Portable, &mut want);
        let mut want_grad = vec![0f32; x.len()];
        smooth_grad(Smooth::GeluTanh, &x, &dy, &mut want_grad);
        for level in Level::runnable() {
            let mut got = x.clone();
            quick_gelu_at(level, &mut got);
            assert_eq!(got, want, "{level:?}");
            #[cfg(target_arch = "x86_64")]
            {
                let mut grad = vec![0f32; x.len()];
                // SAFETY: the level is at most the CPU's.
                unsafe {
                    match level {
                        Level::Avx512 => smooth_grad_avx512(Smooth::GeluTanh, &x, &dy, &mut grad),
                        Level::Avx2 => smooth_grad_avx2(Smooth::GeluTanh, &x, &dy, &mut grad),
                        Level::Portable => smooth_grad(Smooth::GeluTanh, &x, &dy, &mut grad),
                    }
                }
                assert_eq!(grad, want_grad, "{level:?}");
            }
        }
    }

    #[test]
    fn gelu_erf_is_bit_identical_to_candles_in_every_form() {
        // Large enough to be split across threads.
        let x: Vec<f32> = lcg(200_003, 9).iter().map(|v| v * 8.0).collect();
        let t = candle_core::Tensor::new(x.as_slice(), &candle_core::Device::Cpu).unwrap();
        let want = t.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        let copy = gelu_erf_copy(&x);
        let mut in_place = x.clone();
        gelu_erf(&mut in_place);
        for i in 0..x.len() {
            assert_eq!(copy[i].to_bits(), want[i].to_bits(), "at {}", x[i]);
            assert_eq!(in_place[i].to_bits(), want[i].to_bits(), "at {}", x[i]);
        }
    }

    #[test]
    fn gelu_erf_gradient_matches_the_formula_in_f64() {
        let x: Vec<f32> = lcg(100_003, 11).iter().map(|v| v * 6.0).collect();
        let dy: Vec<f32> = lcg(100_003, 12);
        let t = candle_core::Tensor::new(x.as_slice(), &candle_core::Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap();
        // Phi(x) + x phi(x) in f64 through candle's erf.
        let cdf = t
            .affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)
            .unwrap()
            .erf()
            .unwrap()
            .affine(0.5, 0.5)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let got = activation_backward(Smooth::GeluErf, &x, &dy);
        for i in 0..x.len() {
            let xf = f64::from(x[i]);
            let pdf = (-0.5 * xf * xf).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = f64::from(dy[i]) * (cdf[i] + xf * pdf);
            assert!(
                // Absolute floor: Phi = 0.5 (1 + erf) in f32 (as PyTorch computes it) cancels for x << 0.
                (f64::from(got[i]) - want).abs() <= 2e-7 + 2e-6 * want.abs(),
                "at {}: {} vs {want}",
                x[i],
                got[i]
            );
        }
    }
}
