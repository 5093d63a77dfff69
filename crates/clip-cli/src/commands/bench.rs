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
    /// Benchmark search instead of a model: vectors to index, a float32 [N, D] .npy file (HNSW build time,
    /// exact and HNSW query latency, recall@k)
    #[arg(long, value_name = "V.npy", requires = "queries", conflicts_with_all = ["kernels", "train", "batch"])]
    pub search_vectors: Option<std::path::PathBuf>,
    /// With --search-vectors: the queries, a float32 [Q, D] .npy file
    #[arg(long, value_name = "Q.npy", requires = "search_vectors")]
    pub queries: Option<std::path::PathBuf>,
    /// With --search-vectors: results per query
    #[arg(long, default_value_t = 10, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub top_k: u64,
    /// With --search-vectors: HNSW neighbours per node
    #[arg(long, default_value_t = 16, value_name = "M", value_parser = clap::value_parser!(u64).range(2..=256))]
    pub m: u64,
    /// With --search-vectors: HNSW beam width while building
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub ef_construction: u64,
    /// With --search-vectors: HNSW beam width while searching
    #[arg(long, default_value_t = clip_search::DEFAULT_EF_SEARCH as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub ef_search: u64,
    /// With --search-vectors: further HNSW beam widths to measure on the same graph
    #[arg(long, value_delimiter = ',', value_name = "N,N,...", requires = "search_vectors",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub ef_sweep: Vec<u64>,
    /// With --search-vectors: write the HNSW results (row indices, float32 [Q, K]) to this .npy file
    #[arg(long, value_name = "R.npy", requires = "search_vectors")]
    pub search_results: Option<std::path::PathBuf>,
}

pub fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<Outcome> {
    if let (Some(vectors), Some(queries)) = (&args.search_vectors, &args.queries) {
        return search(&args, vectors, queries);
    }
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

/// `--search-vectors`: the search benchmark on given vectors.
fn search(
    args: &BenchArgs,
    vectors: &std::path::Path,
    queries: &std::path::Path,
) -> anyhow::Result<Outcome> {
    let (shape, values) = clip::npy::read_f32(vectors)?;
    let (query_shape, query_values) = clip::npy::read_f32(queries)?;
    let (&[n, dim], &[q, query_dim]) = (shape.as_slice(), query_shape.as_slice()) else {
        return Err(UsageError(format!(
            "--search-vectors and --queries must be 2-D [N, D] arrays (got {shape:?} and {query_shape:?})"
        ))
        .into());
    };
    if dim != query_dim || n == 0 || q == 0 || dim == 0 {
        return Err(UsageError(format!(
            "the vectors are [{n}, {dim}] and the queries [{q}, {query_dim}]: both non-empty, with equal widths"
        ))
        .into());
    }
    let options = clip_search::bench::SearchBenchOptions {
        top_k: (args.top_k as usize).min(n),
        params: clip_search::hnsw::HnswParams {
            m: args.m as usize,
            ef_construction: args.ef_construction as usize,
        },
        ef_search: args.ef_search as usize,
        sweep: args.ef_sweep.iter().map(|&e| e as usize).collect(),
    };
    let (report, rows) = clip_search::bench::bench_search(values, query_values, dim, &options)?;
    if let Some(path) = &args.search_results {
        let k = options.top_k;
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|r| (0..k).map(move |i| r.get(i).map_or(-1.0, |&row| row as f32)))
            .collect();
        clip::npy::write_f32(path, &[rows.len(), k], &flat)?;
    }
    let (cpu, flags) = clip::bench::cpu();
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["machine"] = serde_json::json!({"cpu": cpu, "cpu_flags": flags});
        print_line(&serde_json::to_string(&value)?)?;
        return Ok(Outcome::Success);
    }
    print_line(&format!(
        "search {} x {} vectors, {} queries, top {}  (HNSW m {} ef_construction {} ef_search {}; exact on {} threads, dot {})",
        report.vectors, report.dim, report.queries, report.top_k, report.m, report.ef_construction,
        report.ef_search, report.threads, report.dot
    ))?;
    print_line(&format!("cpu {cpu} [{}]", flags.join(" ")))?;
    print_line(&format!("HNSW build {:.2} s", report.build_seconds))?;
    print_line(&format!(
        "exact  p50 {:.3} ms  p99 {:.3} ms\nHNSW   p50 {:.3} ms  p99 {:.3} ms  recall@{} {:.4}",
        report.exact.p50_ms,
        report.exact.p99_ms,
        report.ann.p50_ms,
        report.ann.p99_ms,
        report.top_k,
        report.ann.recall_at_k
    ))?;
    for point in &report.ann_sweep {
        print_line(&format!(
            "HNSW ef_search {:<4} p50 {:.3} ms  p99 {:.3} ms  recall@{} {:.4}",
            point.ef_search,
            point.latency.p50_ms,
            point.latency.p99_ms,
            report.top_k,
            point.latency.recall_at_k
        ))?;
    }
    Ok(Outcome::Success)
}

fn load_options(global: &GlobalArgs, args: &BenchArgs) -> clip::LoadOptions {
    clip::LoadOptions {
        hub: hub_options(global),
        vocab: None,
        precision: args.model.dtype,
        threads: global.threads,
        text_only: false,
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
