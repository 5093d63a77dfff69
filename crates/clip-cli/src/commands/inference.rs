//! `clip inference`: clip-retrieval's `clip_inference` (a thin layer over `clip_bulk`): WebDataset shards, a
//! folder or a CSV file in; `img_emb/`, `text_emb/`, `metadata/` out, one partition per input shard.

use std::path::PathBuf;

use clap::Args;

use crate::args::{GlobalArgs, ModelArg};
use crate::progress;
use crate::report::Outcome;

use super::{load_model, print_line};

#[derive(Args, Debug)]
pub struct InferenceArgs {
    /// Tar shards (brace ranges "shards/{00000..00099}.tar", globs "shards/*.tar", several patterns), or one
    /// folder of images, or one .csv/.tsv file with image paths and captions
    #[arg(long, short, required = true, num_args = 1.., value_name = "INPUT")]
    pub input: Vec<String>,
    /// Where img_emb/, text_emb/, metadata/ and done/ go (created; finished partitions there are skipped)
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
    #[command(flatten)]
    pub model: ModelArg,
    /// Samples read, decoded and encoded per step
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch_size: u64,
    /// Take every N-th partition starting at I (0-based), so that N runs (a Slurm array, a Kubernetes indexed
    /// job, ...) share the work; their outputs together equal one run's
    #[arg(long, value_name = "I/N")]
    pub shard: Option<clip_bulk::ShardSlice>,
    /// Also embed each sample's caption (.txt) into text_emb/ (captions longer than the context are cut)
    #[arg(long)]
    pub text: bool,
    /// Store embeddings as float16, as clip-retrieval does (default: float32)
    #[arg(long)]
    pub float16: bool,
    /// Samples per partition for a folder or CSV input
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub samples_per_part: u64,
    /// CSV column of image paths (default: filepath, image_path, image, path, file or url)
    #[arg(long, value_name = "NAME")]
    pub csv_image_column: Option<String>,
    /// CSV column of captions (default: caption, text or title)
    #[arg(long, value_name = "NAME")]
    pub csv_caption_column: Option<String>,
    /// Print a JSON summary: {"samples", "failed", "images_per_s", "seconds", "written", "skipped", ...}
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, args: InferenceArgs) -> anyhow::Result<Outcome> {
    // The input is checked before the model loads: a typo fails in milliseconds.
    let plan = clip_bulk::plan(
        &args.input,
        &clip_bulk::PlanOptions {
            samples_per_part: args.samples_per_part as usize,
            csv_image_column: args.csv_image_column.clone(),
            csv_caption_column: args.csv_caption_column.clone(),
        },
    )?;
    let clip = load_model(global, &args.model, None)?;
    let options = clip_bulk::RunOptions {
        output_dir: args.output_dir.clone(),
        window: args.batch_size as usize,
        text: args.text,
        float16: args.float16,
        slice: args.shard,
        model_label: args.model.model.clone(),
        dtype_label: args.model.dtype.to_string(),
    };
    let quiet = global.quiet || args.json;
    let bar = progress::items(0, "embedding", quiet);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {pos}/{len} partitions, {prefix} samples [{elapsed_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let summary = clip_bulk::run(
        &clip,
        &plan,
        &options,
        |done: usize, total: usize, samples: usize| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_prefix(samples.to_string());
        },
    )?;
    bar.finish_and_clear();
    for failure in &summary.failures {
        let key = failure
            .key
            .as_deref()
            .map(|k| format!(" {k}"))
            .unwrap_or_default();
        eprintln!("warning: skipped {}{key}: {}", failure.input, failure.error);
    }
    if summary.failed > summary.failures.len() {
        eprintln!(
            "warning: {} more samples skipped",
            summary.failed - summary.failures.len()
        );
    }
    for shard in &summary.damaged_shards {
        eprintln!(
            "warning: damaged shard {}: {} (the samples before the damage are kept)",
            shard.input, shard.error
        );
    }
    for part in &summary.unwritten {
        eprintln!("error: not written: {}: {}", part.input, part.error);
    }
    if args.json {
        print_line(&serde_json::to_string(&summary)?)?;
    } else {
        print_line(&format!(
            "{}: {} partitions written, {} already done, {} samples embedded ({:.1}/s), {} skipped{}",
            summary.output_dir,
            summary.written,
            summary.skipped,
            summary.samples,
            summary.images_per_s,
            summary.failed,
            if summary.unwritten.is_empty() { String::new() } else { format!(", {} partitions not written", summary.unwritten.len()) }
        ))?;
    }
    // Skipped samples are reported but do not fail the run (a dataset always has some); an input that could
    // not be read at all does: its partition is missing until a re-run.
    Ok(Outcome::from_failures(
        summary.unwritten.len(),
        summary.partitions,
    ))
}
