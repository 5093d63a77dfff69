//! `clip train`: contrastive training and fine-tuning with open_clip's flags and numbers (see `clip::train`).
//! A progress bar shows step, loss, learning rate and samples/s; checkpoints, evaluations and skipped images
//! are printed above it; the trained model ends in `--output` as a Hugging Face directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use clip::train::{
    DataFormat, FeatureCacheMode, Length, ModelInit, Resume, StepRecord, TrainObserver,
    TrainOptions, ZeroShotEval,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::args::GlobalArgs;
use crate::report::{Outcome, UsageError};

use super::{hub_options, print_line};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Starting weights: anything --model takes elsewhere (Hugging Face directory or id, OpenAI name or .pt,
    /// open_clip forms)
    #[arg(
        long,
        short,
        value_name = "M",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub model: Option<String>,
    /// A fresh random model of an open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...; an unknown name
    /// lists them all) or of an open_clip model config JSON file
    #[arg(long, value_name = "NAME|FILE")]
    pub config: Option<String>,
    /// Training pairs: a CSV/TSV file, or WebDataset tar shards (`shards/{00000..00009}.tar`)
    #[arg(long, value_name = "DATA")]
    pub train_data: String,
    /// Held-out pairs for retrieval metrics (same format)
    #[arg(long, value_name = "DATA")]
    pub val_data: Option<String>,
    /// Evaluate every N steps (and at the end)
    #[arg(long, value_name = "N")]
    pub val_every: Option<u64>,
    /// auto (.tar: webdataset, else csv), csv or webdataset
    #[arg(long, value_name = "TYPE", default_value = "auto")]
    pub dataset_type: String,
    /// CSV field separator (`tab`, `,`, or any single character)
    #[arg(long, value_name = "SEP", default_value = "tab")]
    pub csv_separator: String,
    /// CSV column with the image paths
    #[arg(long, value_name = "KEY", default_value = "filepath")]
    pub csv_img_key: String,
    /// CSV column with the captions
    #[arg(long, value_name = "KEY", default_value = "title")]
    pub csv_caption_key: String,
    /// A labelled image folder (or path,label CSV) for zero-shot accuracy at each evaluation
    #[arg(long, value_name = "DIR|FILE.csv")]
    pub zeroshot_data: Option<PathBuf>,
    /// Class names for --zeroshot-data (a built-in list, a file, or comma-separated) [default: folder names]
    #[arg(long, value_name = "SPEC", requires = "zeroshot_data")]
    pub zeroshot_classes: Option<String>,
    /// Prompt templates for --zeroshot-data (openai, simple, a file, or comma-separated) [default: openai]
    #[arg(long, value_name = "SPEC", requires = "zeroshot_data")]
    pub zeroshot_templates: Option<String>,
    /// Pairs per batch (the loss contrasts each pair with the others of its step)
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch_size: usize,
    /// Optimizer steps to take
    #[arg(long, value_name = "N", conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Passes over the data (pairs / (batch size x accumulation) steps each) [default: 1]
    #[arg(long, value_name = "N")]
    pub epochs: Option<u64>,
    /// Peak learning rate (use about 1e-5 to fine-tune a pretrained model)
    #[arg(long, value_name = "LR", default_value_t = 5e-4)]
    pub lr: f64,
    /// AdamW weight decay (not applied to biases, gains, embeddings of one dimension, logit_scale)
    #[arg(long, value_name = "WD", default_value_t = 0.2)]
    pub wd: f64,
    /// Linear warmup steps, then cosine decay [default: a tenth of the steps]
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    #[arg(long, value_name = "B1", default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, value_name = "B2", default_value_t = 0.98)]
    pub beta2: f64,
    #[arg(long, value_name = "EPS", default_value_t = 1e-6)]
    pub eps: f64,
    /// Clip the gradients' total 2-norm to this
    #[arg(long, value_name = "NORM")]
    pub grad_clip_norm: Option<f64>,
    /// Batches per optimizer step (the loss sees all of them: a larger effective batch)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub accum_freq: usize,
    /// Freeze the image tower and its projection (LiT); its features are computed once and cached
    #[arg(long)]
    pub lock_image: bool,
    /// Freeze the text tower and its projection
    #[arg(long)]
    pub lock_text: bool,
    /// SigLIP's sigmoid loss with a learned bias (t = ln 10, b = -10 unless the model has a bias)
    #[arg(long)]
    pub siglip: bool,
    /// Read the data in file order (one batch after another, wrapping at the end of an epoch)
    #[arg(long)]
    pub no_shuffle: bool,
    /// No augmentation: images preprocessed as for inference [default with --lock-image]
    #[arg(long, conflicts_with = "augment")]
    pub no_augment: bool,
    /// Augment (random resized crop 0.9-1.0) even with --lock-image (then no feature cache)
    #[arg(long)]
    pub augment: bool,
    /// Seed of the data order, crops and fresh weights
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Write a resumable checkpoint every N steps (and at the end) under OUTPUT/checkpoints
    #[arg(long, value_name = "N")]
    pub save_every: Option<u64>,
    /// Keep only the latest checkpoint
    #[arg(long)]
    pub delete_previous_checkpoint: bool,
    /// Continue the run in --output from its latest checkpoint (`--resume` or `--resume latest`, as open_clip;
    /// a fresh start when there is none) or from the checkpoint directory CHECKPOINT
    #[arg(long, value_name = "CHECKPOINT", num_args = 0..=1, default_missing_value = "latest")]
    pub resume: Option<PathBuf>,
    /// The trained model's directory (Hugging Face layout), with checkpoints/ and log.jsonl
    #[arg(long, short, value_name = "OUT")]
    pub output: PathBuf,
    /// One JSON line per step (step, loss, lr, logit_scale) and per evaluation [default: OUTPUT/log.jsonl]
    #[arg(long, value_name = "FILE")]
    pub log_json: Option<PathBuf>,
    /// Forward-pass arithmetic: f32, or bf16 (parameters and optimizer stay f32)
    #[arg(long, value_name = "f32|bf16", default_value = "f32")]
    pub dtype: clip::Precision,
    /// Where the locked image tower's features are cached [default: ~/.cache/clip/features]
    #[arg(long, value_name = "DIR", conflicts_with = "no_feature_cache")]
    pub feature_cache: Option<PathBuf>,
    /// Recompute the locked image tower's features every step
    #[arg(long)]
    pub no_feature_cache: bool,
    /// A tokenizer file or directory overriding the model's
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// Print the final report as one JSON object
    #[arg(long)]
    pub json: bool,
}

fn separator(text: &str) -> Result<u8, UsageError> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        s if s.len() == 1 => Ok(s.as_bytes()[0]),
        s => Err(UsageError(format!(
            "--csv-separator {s:?} must be one character (or `tab`)"
        ))),
    }
}

fn options(global: &GlobalArgs, args: &TrainArgs) -> anyhow::Result<TrainOptions> {
    let model = match (&args.model, &args.config) {
        (Some(m), _) => ModelInit::Load(m.clone()),
        (None, Some(c)) => ModelInit::Config(c.clone()),
        (None, None) => return Err(UsageError("give --model or --config".into()).into()),
    };
    let mut o = TrainOptions::new(model, args.train_data.clone(), args.output.clone());
    let csv = DataFormat::Csv {
        separator: separator(&args.csv_separator)?,
        image_key: args.csv_img_key.clone(),
        caption_key: args.csv_caption_key.clone(),
    };
    o.data_format = match args.dataset_type.as_str() {
        "auto" => match DataFormat::auto(&args.train_data) {
            DataFormat::Csv { .. } => csv,
            shards => shards,
        },
        "csv" => csv,
        "webdataset" => DataFormat::WebDataset,
        other => {
            return Err(UsageError(format!(
                "--dataset-type {other:?} must be auto, csv or webdataset"
            ))
            .into())
        }
    };
    o.hub = hub_options(global);
    o.vocab = args.vocab.clone();
    o.val_data = args.val_data.clone();
    o.val_every = args.val_every;
    o.zeroshot = args.zeroshot_data.as_ref().map(|data| ZeroShotEval {
        data: data.clone(),
        classes: args.zeroshot_classes.clone(),
        templates: args.zeroshot_templates.clone(),
    });
    o.batch_size = args.batch_size;
    o.length = match (args.steps, args.epochs) {
        (Some(s), _) => Length::Steps(s),
        (None, Some(e)) => Length::Epochs(e),
        (None, None) => Length::Epochs(1),
    };
    o.lr = args.lr;
    o.weight_decay = args.wd;
    o.warmup = args.warmup;
    o.beta1 = args.beta1;
    o.beta2 = args.beta2;
    o.eps = args.eps;
    o.grad_clip_norm = args.grad_clip_norm;
    o.accum_freq = args.accum_freq;
    o.lock_image = args.lock_image;
    o.lock_text = args.lock_text;
    o.siglip = args.siglip;
    o.shuffle = !args.no_shuffle;
    o.augment = if args.no_augment {
        Some(false)
    } else if args.augment {
        Some(true)
    } else {
        None
    };
    o.seed = args.seed;
    o.save_every = args.save_every;
    o.delete_previous_checkpoint = args.delete_previous_checkpoint;
    o.log_json = args.log_json.clone();
    o.resume = match &args.resume {
        None => Resume::No,
        Some(p) if p.as_os_str() == "latest" => Resume::Latest,
        Some(p) => Resume::From(p.clone()),
    };
    o.precision = args.dtype;
    o.feature_cache = if args.no_feature_cache {
        FeatureCacheMode::Off
    } else {
        match &args.feature_cache {
            Some(dir) => FeatureCacheMode::Dir(dir.clone()),
            None => FeatureCacheMode::Default,
        }
    };
    Ok(o)
}

/// The progress bar and the lines printed above it.
struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bar = ProgressBar::hidden();
        Self { bar, quiet }
    }

    fn restyle(&mut self, total: u64, template: &str) {
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_draw_target(if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        self.bar.finish_and_clear();
        self.bar = bar;
    }
}

impl TrainObserver for Progress {
    fn phase(&mut self, what: &str, total: u64) {
        self.restyle(total, "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}");
        self.bar.set_message(what.to_string());
    }

    fn phase_progress(&mut self, done: u64) {
        self.bar.set_position(done);
    }

    fn started(&mut self, first: u64, steps: u64) {
        self.restyle(steps, "step {pos}/{len} [{bar:30}] {msg} eta {eta}");
        self.bar.set_position(first);
    }

    fn step(&mut self, r: &StepRecord) {
        self.bar.set_position(r.step);
        self.bar.set_message(format!(
            "loss {:.4} lr {:.3e} scale {:.2} {:.1} samples/s",
            r.loss, r.lr, r.logit_scale, r.samples_per_second
        ));
    }

    fn message(&mut self, line: &str) {
        // Skipped images are warnings: always shown. Other lines are progress: hidden by --quiet.
        if line.starts_with("skipped") || line.starts_with("note") {
            self.bar.suspend(|| eprintln!("warning: {line}"));
        } else if !self.quiet {
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }
}

pub fn run(global: &GlobalArgs, args: TrainArgs) -> anyhow::Result<Outcome> {
    let options = options(global, &args)?;
    let mut progress = Progress::new(global.quiet);
    let result = clip::train::train(&options, &mut progress);
    progress.bar.finish_and_clear();
    let report = result.context("training failed")?;
    if args.json {
        print_line(
            &json!({
                "output": report.output,
                "steps": report.steps,
                "resumed_from": report.resumed_from,
                "last_loss": report.last_loss,
                "unreadable_images": report.unreadable,
                "truncated_captions": report.truncated_captions,
                "checkpoints": report.checkpoints,
                "validation": report.validation,
                "zeroshot_top1": report.zeroshot_top1,
                "log": report.log,
                "feature_cache": report.feature_cache,
            })
            .to_string(),
        )?;
    } else {
        let loss = report.last_loss.map_or("-".into(), |l| format!("{l:.4}"));
        print_line(&format!(
            "trained {} steps (last loss {loss}) into {}; log {}",
            report.steps,
            report.output.display(),
            report.log.display()
        ))?;
        if !report.unreadable.is_empty() || report.truncated_captions > 0 {
            print_line(&format!(
                "{} unreadable images skipped, {} captions cut to the context (listed in the log)",
                report.unreadable.len(),
                report.truncated_captions
            ))?;
        }
    }
    Ok(Outcome::Success)
}
