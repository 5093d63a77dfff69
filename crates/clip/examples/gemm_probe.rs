//! Probe: candle CPU matmul throughput per dtype at CLIP ViT-B/32 MLP shapes.
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (m, k, n) in [
        (50usize, 768usize, 3072usize),
        (1600, 768, 3072),
        (1600, 3072, 768),
    ] {
        {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let packed = clip::kernels::bf16_gemm::PackedBf16::pack(&w, n, k);
            let mut out = vec![0f32; m * n];
            clip::kernels::bf16_gemm::linear_bf16(&x, m, &packed, None, &mut out);
            let iters = if m < 100 { 50 } else { 5 };
            let t = Instant::now();
            for _ in 0..iters {
                clip::kernels::bf16_gemm::linear_bf16(&x, m, &packed, None, &mut out);
            }
            let s = t.elapsed().as_secs_f64() / iters as f64;
            println!(
                "{m}x{k}x{n} ours bf16: {:.2} ms, {:.0} GFLOP/s",
                s * 1e3,
                2.0 * (m * k * n) as f64 / s / 1e9
            );
        }
        for dt in [DType::F32] {
            let a = Tensor::randn(0f32, 1.0, (m, k), &dev)?.to_dtype(dt)?;
            let b = Tensor::randn(0f32, 1.0, (n, k), &dev)?.to_dtype(dt)?;
            let _ = a.matmul(&b.t()?)?;
            let iters = if m < 100 { 50 } else { 5 };
            let t = Instant::now();
            for _ in 0..iters {
                let _ = a.matmul(&b.t()?)?;
            }
            let s = t.elapsed().as_secs_f64() / iters as f64;
            println!(
                "{m}x{k}x{n} {dt:?}: {:.2} ms, {:.0} GFLOP/s",
                s * 1e3,
                2.0 * (m * k * n) as f64 / s / 1e9
            );
        }
    }
    Ok(())
}
