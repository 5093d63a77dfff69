//! The command-line grammar. The forms of `classify`, `embed`, `tokenize` and `preprocess` are a contract:
//! scripts call them exactly so.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::bench::BenchArgs;
use crate::commands::classify::ClassifyArgs;
use crate::commands::condition::ConditionArgs;
use crate::commands::embed::EmbedArgs;
use crate::commands::eval::EvalArgs;
use crate::commands::models::ModelsArgs;
use crate::commands::preprocess::PreprocessArgs;
use crate::commands::probe::ProbeArgs;
use crate::commands::tokenize::TokenizeArgs;

const DEFAULT_MODEL: &str = clip::DEFAULT_MODEL;

#[derive(Parser, Debug)]
#[command(
    name = "clip",
    version,
    about = "OpenAI CLIP in Rust: zero-shot image classification, embeddings, tokenization",
    long_about = "OpenAI CLIP in Rust: zero-shot image classification, image and text embeddings, tokenization \
                  and preprocessing identical to the Python reference.\n\n\
                  Models are local Hugging Face directories (config.json + model.safetensors) or Hub ids, \
                  downloaded once into the Hugging Face cache and then used offline.",
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

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Cache directory for downloaded models [default: Hub models in $HF_HUB_CACHE or ~/.cache/huggingface/hub,
    /// OpenAI's .pt files in $CLIP_CACHE_DIR or ~/.cache/clip]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Never use the network; models must already be cached (also: HF_HUB_OFFLINE=1)
    #[arg(long, global = true)]
    pub offline: bool,
    /// No progress bars
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Threads to compute and decode with [default: every core, or $CLIP_THREADS]
    #[arg(long, global = true, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Largest image file read, in bytes (K, M, G suffixes) [default: 256M, or $CLIP_MAX_IMAGE_BYTES]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub max_image_bytes: Option<u64>,
    /// Largest text file read (captions, labels, classes, templates, dataset CSV) [default: 64M, or
    /// $CLIP_MAX_TEXT_BYTES]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub max_text_bytes: Option<u64>,
}

fn parse_threads(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a thread count (1 or more)")),
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    match clip::io::parse_size(text)? {
        0 => Err("a size limit must be at least 1 byte".into()),
        n => Ok(n),
    }
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
}

#[derive(Args, Debug)]
pub struct ModelArg {
    /// Model: an OpenAI name (ViT-B/32, RN50, ... see `clip models`), an OpenAI .pt file, a Hugging Face
    /// directory or Hub id, an open_clip directory, hf-hub:ORG/NAME, or open_clip ARCH:TAG / ARCH:WEIGHTS
    #[arg(long, short, value_name = "M", default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Arithmetic: f32 (exact, as the reference), bf16 (faster on CPUs with AVX512-BF16; embeddings within
    /// cosine 0.9995 of f32) or int8 (fastest on CPUs with AVX512-VNNI; weights quantised per channel,
    /// activations per row; embeddings within cosine 0.995 of f32)
    #[arg(long, value_name = "f32|bf16|int8", default_value = "f32")]
    pub dtype: clip::Precision,
}
