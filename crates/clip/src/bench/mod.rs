//! Throughput and latency measurement for `clip bench`: the image and text towers at several batch sizes on
//! synthetic inputs (the towers' cost does not depend on pixel values; captions are typical lengths), median of
//! several timed runs after a warm-up, plus model load time and the process's peak resident memory.

mod gemm;
mod train;

pub use gemm::{gemm_throughput, GemmRow, VIT_B32_SHAPES};
pub use train::{run_train, TrainBenchOptions, TrainBenchReport};

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::bundle::Clip;
use crate::error::{ClipError, Result};
use crate::limits;
use crate::model::VisionTowerConfig;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub batches: Vec<usize>,
    /// Timed runs per measurement (the median is reported).
    pub iters: usize,
    /// Untimed runs first, so that allocations and caches settle.
    pub warmup: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            batches: vec![1, 8, 32],
            iters: 5,
            warmup: 1,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// "image" or "text".
    pub tower: &'static str,
    pub batch: usize,
    /// Median seconds per batch.
    pub seconds: f64,
    pub items_per_second: f64,
}

/// Where a measurement was taken: figures from one CPU family say little about another.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// The CPU's model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// The extensions present that decide the kernels' speed (`avx512_bf16`, `amx_bf16`, ...).
    pub cpu_flags: Vec<String>,
    /// The kernel the matrix products of the measured precision ran on (`avx512f`, `avx512_bf16`,
    /// `avx512_vnni`, `avx2_fma` (f32, bf16), `avx2` (int8) or `portable`; `CLIP_KERNELS` can lower it).
    pub kernel: String,
}

/// The CPU's model name and the extensions that matter to the kernels, as `/proc/cpuinfo` names them.
pub fn cpu() -> (String, Vec<String>) {
    crate::kernels::cpu::describe()
}

impl Machine {
    pub fn for_precision(precision: crate::Precision) -> Self {
        let (cpu, cpu_flags) = cpu();
        Self {
            cpu,
            cpu_flags,
            kernel: crate::kernels::cpu::gemm_kernel(precision).to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    /// "f32", "bf16" or "int8".
    pub dtype: String,
    pub machine: Machine,
    pub load_seconds: f64,
    pub threads: usize,
    pub rows: Vec<BenchRow>,
    /// Peak resident set size of the whole process (Linux `VmHWM`), when the platform reports it.
    pub peak_rss_bytes: Option<u64>,
}

impl BenchOptions {
    /// At least one timed run and one batch, every batch between 1 and [`limits::MAX_BATCH`].
    pub fn validate(&self) -> Result<()> {
        if self.iters == 0 {
            return Err(ClipError::InvalidInput(
                "iterations must be at least 1 (a median of no runs measures nothing)".into(),
            ));
        }
        if self.batches.is_empty() || self.batches.contains(&0) {
            return Err(ClipError::InvalidInput(
                "batch sizes must be at least 1".into(),
            ));
        }
        for &batch in &self.batches {
            limits::check_count("batch size", batch, limits::MAX_BATCH)?;
        }
        Ok(())
    }
}

/// Loads the model, timing the load, then measures both towers.
pub fn run(spec: &str, load: &crate::LoadOptions, options: &BenchOptions) -> Result<BenchReport> {
    options.validate()?;
    let start = Instant::now();
    let clip = Clip::load(spec, load)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let largest = options.batches.iter().copied().max().unwrap_or(1);
    limits::check_memory(
        &format!("a batch of {largest} images"),
        largest as u64 * image_bytes_per_item(&clip),
    )?;
    let mut rows = Vec::new();
    for &batch in &options.batches {
        rows.push(measure(options, batch, "image", || {
            image_batch(&clip, batch)
        })?);
    }
    for &batch in &options.batches {
        rows.push(measure(options, batch, "text", || {
            text_batch(&clip, batch)
        })?);
    }
    Ok(BenchReport {
        model: spec.to_string(),
        dtype: load.precision.to_string(),
        machine: Machine::for_precision(load.precision),
        load_seconds,
        threads: crate::threads::count(),
        rows,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

fn measure(
    options: &BenchOptions,
    batch: usize,
    tower: &'static str,
    mut run_once: impl FnMut() -> Result<()>,
) -> Result<BenchRow> {
    for _ in 0..options.warmup {
        run_once()?;
    }
    let mut times = Vec::with_capacity(options.iters);
    for _ in 0..options.iters {
        let start = Instant::now();
        run_once()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let seconds = times[times.len() / 2];
    Ok(BenchRow {
        tower,
        batch,
        seconds,
        items_per_second: batch as f64 / seconds,
    })
}

/// A generous estimate of the memory one image takes through the image tower: its pixels plus the widest
/// activations alive at once (residual stream, normed copy, q/k/v, attention output, MLP hidden).
fn image_bytes_per_item(clip: &Clip) -> u64 {
    let size = clip.preprocess_config().size as u64;
    let activations = match &clip.model().config().vision {
        VisionTowerConfig::Vit(v) => {
            v.num_positions() as u64 * (6 * v.width as u64 + v.intermediate_size as u64)
        }
        // The widest maps: the first stage's output, a few copies at a quarter of the resolution.
        VisionTowerConfig::ResNet(r) => 12 * (size / 4) * (size / 4) * r.width as u64 * 4,
    };
    4 * (3 * size * size + activations)
}

fn image_batch(clip: &Clip, batch: usize) -> Result<()> {
    let size = clip.preprocess_config().size as usize;
    let values = synthetic_pixels(batch * 3 * size * size);
    let pixels = Tensor::from_vec(values, (batch, 3, size, size), &Device::Cpu)?;
    clip.model().encode_image(&pixels)?;
    Ok(())
}

fn text_batch(clip: &Clip, batch: usize) -> Result<()> {
    let captions: Vec<String> = (0..batch)
        .map(|i| {
            format!(
                "a photo of {} small dogs playing on a red couch in the living room",
                i + 2
            )
        })
        .collect();
    let ids = clip.tokenize(&captions, true)?;
    let len = ids[0].len();
    let flat: Vec<u32> = ids.into_iter().flatten().collect();
    let tensor = Tensor::from_vec(flat, (batch, len), &Device::Cpu)?;
    clip.model().encode_text(&tensor)?;
    Ok(())
}

/// Deterministic values in the range of normalised pixels (a simple LCG; the content does not matter).
fn synthetic_pixels(count: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Peak resident memory of this process in bytes (Linux), else None.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_pixels_are_in_range_and_deterministic() {
        let a = synthetic_pixels(1000);
        assert_eq!(a, synthetic_pixels(1000));
        assert!(a.iter().all(|v| (-2.0..2.0).contains(v)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.2, "mean {mean}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_is_reported_on_linux() {
        let bytes = peak_rss_bytes().unwrap();
        assert!(bytes > 1024 * 1024, "{bytes}");
    }
}
