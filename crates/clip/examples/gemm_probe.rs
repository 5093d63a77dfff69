//! Probe: GEMM throughput of the packed kernels (f32, bf16, int8) and candle's matmul at CLIP ViT-B/32 shapes
//! (batch 1 and batch 32 of 50 tokens).
use candle_core::{Device, Tensor};
use clip::kernels::{bf16_gemm, f32_gemm, int8_gemm};
use std::time::Instant;

fn time(m: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let _ = m;
    t.elapsed().as_secs_f64() / iters as f64
}

fn main() -> candle_core::Result<()> {
    for (m, k, n) in [
        (50usize, 768usize, 2304usize),
        (50, 768, 3072),
        (50, 3072, 768),
        (1600, 768, 3072),
        (1600, 3072, 768),
    ] {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut out = vec![0f32; m * n];
        let iters = if m < 100 { 200 } else { 5 };
        let flop = 2.0 * (m * k * n) as f64;
        let report = |name: &str, s: f64| {
            println!(
                "{m}x{k}x{n} {name}: {:.3} ms, {:.0} GFLOP/s",
                s * 1e3,
                flop / s / 1e9
            )
        };
        let p = f32_gemm::PackedF32::pack(&w, n, k);
        report(
            "f32 packed",
            time(m, iters, || f32_gemm::linear_f32(&x, m, &p, None, &mut out)),
        );
        let p = bf16_gemm::PackedBf16::pack(&w, n, k);
        report(
            "bf16",
            time(m, iters, || {
                bf16_gemm::linear_bf16(&x, m, &p, None, &mut out)
            }),
        );
        let p = int8_gemm::PackedInt8::pack(&w, n, k);
        report(
            "int8",
            time(m, iters, || {
                int8_gemm::linear_int8(&x, m, &p, None, &mut out)
            }),
        );
        let dev = Device::Cpu;
        let a = Tensor::from_vec(x.clone(), (m, k), &dev)?;
        let b = Tensor::from_vec(w.clone(), (n, k), &dev)?;
        report(
            "candle f32",
            time(m, iters, || drop(a.matmul(&b.t().unwrap()).unwrap())),
        );
    }
    Ok(())
}
