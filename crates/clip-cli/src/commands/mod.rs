//! The command-line grammar and one module per subcommand; this file dispatches and holds what they share. The
//! forms of `classify`, `embed`, `tokenize` and `preprocess` are a contract: scripts call them exactly so.

mod bench;
mod classifier;
mod classify;
mod condition;
mod dups;
mod embed;
mod eval;
mod index;
mod inference;
mod merge;
mod models;
mod preprocess;
mod probe;
mod rows;
mod search;
mod serve;
mod tokenize;
mod train;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use clap::{Parser, Subcommand};

use crate::args::{GlobalArgs, ModelArg};
use crate::progress::DownloadBar;
use crate::report::Outcome;
use bench::BenchArgs;
use classify::ClassifyArgs;
use condition::ConditionArgs;
use dups::DupsArgs;
use embed::EmbedArgs;
use eval::EvalArgs;
use index::IndexArgs;
use inference::InferenceArgs;
use merge::MergeArgs;
use models::ModelsArgs;
use preprocess::PreprocessArgs;
use probe::ProbeArgs;
use search::SearchArgs;
use serve::ServeArgs;
use tokenize::TokenizeArgs;
use train::TrainArgs;

#[derive(Parser, Debug)]
#[command(
    name = "clip",
    version,
    about = "OpenAI CLIP in Rust: zero-shot classification, embeddings, tokenization, SD conditioning, training",
    long_about = "OpenAI CLIP in Rust: zero-shot image classification, image and text embeddings, tokenization \
                  and preprocessing identical to the Python references, Stable Diffusion text conditioning, \
                  evaluation and linear probes.\n\n\
                  --model takes OpenAI's released names (ViT-B/32, RN50, ... see `clip models`), an OpenAI .pt \
                  file, a Hugging Face directory or Hub id (openai/clip-vit-base-patch32), an open_clip \
                  directory or hf-hub:ORG/NAME, or an open_clip ARCH:TAG / ARCH:WEIGHTS. Downloads are \
                  verified, cached (Hugging Face cache, ~/.cache/clip) and then used offline. Everything \
                  runs on the CPU.",
    after_help = "Examples:\n  clip classify photo.jpg --labels \"a dog\" \"a cat\"\n  \
                  clip embed --text \"a diagram\" --normalize --json\n  \
                  clip tokenize \"a photo of a cat\" --json"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Zero-shot classification: probabilities of each label for each image
    #[command(
        after_help = "Examples:\n  clip classify girl-with-puppy.png --labels \"a puppy\" \"a girl\" \"glasses\"\n  \
                      clip classify photo.jpg --classes imagenet --templates openai --top-k 5\n  \
                      clip classify --classes pets.txt --save-classifier pets.safetensors"
    )]
    Classify(ClassifyArgs),
    /// Image or text embeddings (encode_image / encode_text features)
    #[command(
        after_help = "Examples:\n  clip embed --image a.jpg b.png --output images.npy\n  \
                            clip embed --text-file captions.txt --normalize --json"
    )]
    Embed(EmbedArgs),
    /// Token ids exactly as OpenAI's clip.tokenize
    Tokenize(TokenizeArgs),
    /// Preprocessed image tensors (resize, centre crop, normalise) as float32 [N, 3, S, S]
    Preprocess(PreprocessArgs),
    /// OpenAI's released models: name, cached or not, size, input resolution
    Models(ModelsArgs),
    /// Image and text throughput, batch-1 latency, load time and peak memory
    #[command(
        after_help = "Example:\n  clip bench --model openai/clip-vit-base-patch32 --batch 1,8,32 --iters 5 --json"
    )]
    Bench(BenchArgs),
    /// Zero-shot accuracy on a labelled dataset: top-1, top-5, per-class accuracy, confusion matrix
    #[command(
        after_help = "Examples:\n  clip eval --dataset imagenet/val --classes imagenet --templates openai\n  \
                      clip eval --dataset photos.csv --classifier pets.safetensors --json --confusion confusion.csv"
    )]
    Eval(EvalArgs),
    /// Linear probe: logistic regression on image embeddings, C picked on a validation split
    #[command(
        after_help = "Example:\n  clip probe --train data/train --test data/test --output probe.safetensors\n  \
                      clip classify photo.jpg --classifier probe.safetensors"
    )]
    Probe(ProbeArgs),
    /// Stable Diffusion text conditioning (SD1 / SD2 / SDXL), identical to diffusers' encode_prompt
    #[command(
        after_help = "Examples:\n  clip condition --preset sd1 --model stable-diffusion-v1-5 --prompt \"a red fox\" \
                      --negative \"blurry\" --n-images 2 --output cond.safetensors\n  \
                      clip condition --preset sdxl --model sd_xl_base_1.0.safetensors --prompt \"a red fox\" \
                      --output cond.safetensors"
    )]
    Condition(ConditionArgs),
    /// Contrastive training and fine-tuning (open_clip's loss, optimizer, schedule and flags), resumable
    #[command(
        after_help = "Examples:\n  clip train --model openai/clip-vit-base-patch32 --train-data pairs.csv --csv-separator , \\\n    \
                      --batch-size 32 --epochs 3 --lr 1e-5 --warmup 50 --val-data val.csv --save-every 100 --output tuned\n  \
                      clip train --model ViT-B/32 --lock-image --train-data 'shards/{00000..00009}.tar' --epochs 10 \\\n    \
                      --lr 1e-4 --output lit\n  \
                      clip train --config ViT-B-32 --train-data pairs.tsv --epochs 30 --output scratch\n  \
                      clip train ... --resume          # continue after an interruption\n\n\
                      A flag given twice takes its last value.",
        args_override_self = true
    )]
    Train(Box<TrainArgs>),
    /// WiSE-FT: interpolate a fine-tuned model's weights with the model it started from
    #[command(
        after_help = "Example:\n  clip merge --alpha 0.5 openai/clip-vit-base-patch32 tuned --output wise"
    )]
    Merge(MergeArgs),
    /// Index folders of photos for search (incremental, resumable; SQLite)
    #[command(after_help = "Examples:\n  clip index ~/Pictures --db photos.db\n  \
                      clip index ~/Pictures ~/Phone --db photos.db --model ViT-B/16 --json\n\n\
                      Re-running reads only new and changed files; renamed or copied files reuse their \
                      embedding; files gone from the folders are removed. A killed run continues where it \
                      stopped. Unreadable files are listed and skipped (exit code 0).")]
    Index(IndexArgs),
    /// Search an index by text and/or image, ranked by cosine similarity
    #[command(
        after_help = "Examples:\n  clip search --db photos.db a dog on a beach\n  \
                      clip search --db photos.db \"2:golden retriever\" + ./pool.jpg - fruit --top-k 20\n  \
                      clip search --db photos.db --image ./this.jpg --min-score 0.8 --json\n  \
                      clip search --db photos.db sunset --under ~/Pictures/2023 --after 2023-06-01 --paths | xargs feh"
    )]
    Search(SearchArgs),
    /// Groups of near-duplicate photos in an index
    #[command(after_help = "Example:\n  clip dups --db photos.db --threshold 0.97 --json")]
    Dups(DupsArgs),
    /// An HTTP service: OpenAI-style /v1/embeddings, classification, ranking, photo search with a web page,
    /// immich's /predict, /metrics; requests from many clients batched together
    #[command(
        after_help = "Examples:\n  clip serve --model ViT-B/32 --db photos.db          # then open http://127.0.0.1:8080/\n  \
                      clip serve --dtype int8 --port 3003 --max-batch 64\n  \
                      curl -s localhost:8080/v1/embeddings -H 'content-type: application/json' \\\n    \
                      -d '{\"input\": [\"a dog\", \"a cat\"]}'"
    )]
    Serve(ServeArgs),
    /// Bulk embedding as clip-retrieval's `inference`: WebDataset shards (or a folder, a CSV) to img_emb/*.npy,
    /// text_emb/*.npy and metadata/*.parquet; restartable, splittable across machines with --shard
    #[command(
        after_help = "Examples:\n  clip inference --input 'shards/{00000..00099}.tar' --output-dir embeddings --text\n  \
                      clip inference --input 'shards/*.tar' --output-dir out --shard 3/8 --dtype int8   # 4th of 8 jobs\n  \
                      clip inference --input ~/Pictures --output-dir out --json\n\n\
                      Each input shard becomes one partition (img_emb_{i}.npy, ..., i its position in the list); \
                      a partition is committed by done/{i}.json, so a re-run skips finished ones and a killed run \
                      loses only the partition in flight. Rows are L2-normalised; samples whose image cannot be \
                      decoded are left out of every file and counted. The output feeds autofaiss and clip-retrieval's \
                      `clip back` unchanged."
    )]
    Inference(InferenceArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    apply_process_settings(&cli.global)?;
    match cli.command {
        Command::Classify(args) => classify::run(&cli.global, args),
        Command::Embed(args) => embed::run(&cli.global, args),
        Command::Tokenize(args) => tokenize::run(&cli.global, args),
        Command::Preprocess(args) => preprocess::run(&cli.global, args),
        Command::Bench(args) => bench::run(&cli.global, args),
        Command::Models(args) => models::run(&cli.global, args),
        Command::Eval(args) => eval::run(&cli.global, args),
        Command::Probe(args) => probe::run(&cli.global, args),
        Command::Condition(args) => condition::run(&cli.global, args),
        Command::Train(args) => train::run(&cli.global, *args),
        Command::Merge(args) => merge::run(&cli.global, args),
        Command::Index(args) => index::run(&cli.global, args),
        Command::Search(args) => search::run(&cli.global, args),
        Command::Dups(args) => dups::run(&cli.global, args),
        Command::Serve(args) => serve::run(&cli.global, args),
        Command::Inference(args) => inference::run(&cli.global, args),
    }
}

/// `--threads` for every computation, `--max-image-bytes` / `--max-text-bytes` for every read.
fn apply_process_settings(global: &GlobalArgs) -> anyhow::Result<()> {
    use clip::io::{set_limit, Input};
    if let Some(n) = global.threads {
        clip::threads::set(n).map_err(crate::report::UsageError)?;
    }
    for (kind, bytes) in [
        (Input::Image, global.max_image_bytes),
        (Input::Text, global.max_text_bytes),
    ] {
        if let Some(bytes) = bytes {
            set_limit(kind, bytes).map_err(crate::report::UsageError)?;
        }
    }
    Ok(())
}

fn hub_options(global: &GlobalArgs) -> clip::hub::HubOptions {
    clip::hub::HubOptions {
        cache_dir: global.cache_dir.clone(),
        offline: global.offline,
        progress: Some(Arc::new(DownloadBar::new(global.quiet))),
    }
}

fn load_model(
    global: &GlobalArgs,
    model: &ModelArg,
    vocab: Option<&Path>,
) -> anyhow::Result<clip::Clip> {
    load_model_towers(global, model, vocab, false)
}

/// [`load_model`], without the image tower when `text_only`.
fn load_model_towers(
    global: &GlobalArgs,
    model: &ModelArg,
    vocab: Option<&Path>,
    text_only: bool,
) -> anyhow::Result<clip::Clip> {
    let options = clip::LoadOptions {
        hub: hub_options(global),
        vocab: vocab.map(Path::to_path_buf),
        precision: model.dtype,
        threads: global.threads,
        text_only,
    };
    let name = &model.model;
    clip::Clip::load(name, &options).with_context(|| format!("cannot load model {name}"))
}

/// Non-empty lines of a text file, or of standard input for `-` (trailing whitespace and `\r` removed). Only
/// regular files within the text size limit are read.
fn read_lines(path: &Path, what: &str) -> anyhow::Result<Vec<String>> {
    let text = if path == Path::new("-") {
        let bytes = clip::io::read_stdin(clip::io::Input::Text)?;
        String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {what}s from standard input: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })?
    } else {
        clip::io::read_input_text(path, clip::io::Input::Text)?
    };
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        anyhow::bail!("{what} file {} has no {what}s", path.display());
    }
    Ok(lines)
}

/// Adds the command-line remedy to a too-long-text error.
fn hint_truncate(error: clip::ClipError) -> anyhow::Error {
    let too_long = matches!(
        &error,
        clip::ClipError::Tokenizer(clip::tokenizer::TokenizerError::TooLong { .. })
    );
    if too_long {
        anyhow::anyhow!("{error} (use --truncate to cut it)")
    } else {
        error.into()
    }
}

/// Writes to stdout; a closed pipe (e.g. `| head`) ends quietly instead of panicking.
fn print_line(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("cannot write to stdout"),
    }
}
