//! `clip bench`: the library's measurements of throughput, latency, load time and peak memory, printed.

use anyhow::Context;

use clap::Args;

use crate::args::{GlobalArgs, ModelArg};
use crate::report::{Outcome, UsageError};

use super::{hub_options, print_line};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Batch sizes to measure (1 to 1024)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,32",
        value_name = "N,N,..."
    )]
    pub batch: Vec<usize>,
    /// Timed runs per measurement (the median is reported)
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub iters: u32,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Time the GEMM kernels alone (f32, bf16, int8) at ViT-B/32's layer shapes instead of a model
    #[arg(long, conflicts_with = "batch")]
    pub kernels: bool,
    /// Time training steps (forward, ClipLoss, backward, AdamW) at the first --batch size instead of inference
    #[arg(long, conflicts_with = "kernels")]
    pub train: bool,
    /// With --train: freeze the image tower (LiT)
    #[arg(long, requires = "train")]
    pub lock_image: bool,
    /// With --train: freeze the text tower
    #[arg(long, requires = "train")]
    pub lock_text: bool,
}

pub fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<Outcome> {
    if args.kernels {
        return kernels(&args);
    }
    if args.train {
        return train(global, &args);
    }
    let options = clip::bench::BenchOptions {
        batches: args.batch.clone(),
        iters: args.iters as usize,
        ..clip::bench::BenchOptions::default()
    };
    // Checked before the model loads; the memory a batch needs is checked once the model is known.
    options
        .validate()
        .map_err(|e| UsageError(format!("{e} (e.g. --batch 1,8,32 --iters 5)")))?;
    let load = load_options(global, &args);
    let model = &args.model.model;
    let report = clip::bench::run(model, &load, &options)
        .with_context(|| format!("cannot benchmark {model}"))?;
    if args.json {
        print_line(&serde_json::to_string(&report)?)?;
        return Ok(Outcome::Success);
    }
    print_line(&format!(
        "model {} {}  (load {:.3} s, {} threads)",
        report.model, report.dtype, report.load_seconds, report.threads
    ))?;
    print_machine(&report.machine)?;
    print_line(&format!(
        "{:<6} {:>6} {:>12} {:>12}",
        "tower", "batch", "ms/batch", "items/s"
    ))?;
    for row in &report.rows {
        print_line(&format!(
            "{:<6} {:>6} {:>12.2} {:>12.2}",
            row.tower,
            row.batch,
            row.seconds * 1e3,
            row.items_per_second
        ))?;
    }
    print_peak_rss(report.peak_rss_bytes)?;
    Ok(Outcome::Success)
}

/// `--kernels`: GFLOP/s of each packed GEMM kernel per shape.
fn kernels(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let rows = clip::bench::gemm_throughput(&clip::bench::VIT_B32_SHAPES, args.iters as usize);
    if args.json {
        print_line(&serde_json::to_string(&rows)?)?;
        return Ok(Outcome::Success);
    }
    let (cpu, flags) = clip::bench::cpu();
    print_line(&format!("cpu {cpu} [{}]", flags.join(" ")))?;
    print_line(&format!(
        "{:<6} {:<12} {:>18} {:>10} {:>10}",
        "dtype", "kernel", "m x k x n", "ms", "GFLOP/s"
    ))?;
    for r in rows {
        print_line(&format!(
            "{:<6} {:<12} {:>18} {:>10.3} {:>10.0}",
            r.dtype,
            r.kernel,
            format!("{}x{}x{}", r.m, r.k, r.n),
            r.seconds * 1e3,
            r.gflops
        ))?;
    }
    Ok(Outcome::Success)
}

/// `--train`: samples per second of full optimizer steps.
fn train(global: &GlobalArgs, args: &BenchArgs) -> anyhow::Result<Outcome> {
    let batch = args.batch.first().copied().unwrap_or(32);
    let options = clip::bench::TrainBenchOptions {
        batch,
        steps: args.iters as usize,
        warmup: 1,
        lock_image: args.lock_image,
        lock_text: args.lock_text,
    };
    let load = load_options(global, args);
    let model = &args.model.model;
    let report = clip::bench::run_train(model, &load, &options)
        .with_context(|| format!("cannot benchmark training of {model}"))?;
    if args.json {
        print_line(&serde_json::to_string(&report)?)?;
        return Ok(Outcome::Success);
    }
    print_line(&format!(
        "train {} {}  batch {}  ({} threads)",
        report.model, report.dtype, report.batch, report.threads
    ))?;
    print_machine(&report.machine)?;
    print_line(&format!(
        "{:.3} s/step  {:.2} samples/s  (median of {} steps)",
        report.step_seconds, report.samples_per_second, options.steps
    ))?;
    print_peak_rss(report.peak_rss_bytes)?;
    Ok(Outcome::Success)
}

fn load_options(global: &GlobalArgs, args: &BenchArgs) -> clip::LoadOptions {
    clip::LoadOptions {
        hub: hub_options(global),
        vocab: None,
        precision: args.model.dtype,
        threads: global.threads,
    }
}

fn print_peak_rss(bytes: Option<u64>) -> anyhow::Result<()> {
    if let Some(bytes) = bytes {
        print_line(&format!(
            "peak RSS {:.0} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        ))?;
    }
    Ok(())
}

fn print_machine(machine: &clip::bench::Machine) -> anyhow::Result<()> {
    print_line(&format!(
        "cpu {} [{}]  kernel {}",
        machine.cpu,
        machine.cpu_flags.join(" "),
        machine.kernel
    ))
}
