//! `clip bench`: the library's measurements of throughput, latency, load time and peak memory, printed.

use anyhow::Context;

use crate::args::{BenchArgs, GlobalArgs};
use crate::report::{Outcome, UsageError};

use super::{hub_options, print_line};

pub fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<Outcome> {
    let options = clip::bench::BenchOptions {
        batches: args.batch.clone(),
        iters: args.iters as usize,
        ..clip::bench::BenchOptions::default()
    };
    // Checked before the model loads; the memory a batch needs is checked once the model is known.
    options
        .validate()
        .map_err(|e| UsageError(format!("{e} (e.g. --batch 1,8,32 --iters 5)")))?;
    let load = clip::LoadOptions {
        hub: hub_options(global),
        vocab: None,
        precision: args.model.dtype,
    };
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
    if let Some(bytes) = report.peak_rss_bytes {
        print_line(&format!(
            "peak RSS {:.0} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        ))?;
    }
    Ok(Outcome::Success)
}
