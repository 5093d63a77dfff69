//! The arguments every command shares: the global flags and the model choice. Each command's own arguments
//! live in its file under `commands/`; the grammar as a whole is `commands::Cli`.

use std::path::PathBuf;

use clap::Args;

const DEFAULT_MODEL: &str = clip::DEFAULT_MODEL;

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

#[derive(Args, Debug)]
pub struct ModelArg {
    /// Model: an OpenAI name (ViT-B/32, RN50, ... see `clip models`), an OpenAI .pt file, a Hugging Face
    /// directory or Hub id, an open_clip directory, hf-hub:ORG/NAME, or open_clip ARCH:TAG / ARCH:WEIGHTS
    #[arg(long, short, value_name = "M", default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Arithmetic: f32 (exact, as the reference), bf16 (embeddings within cosine 0.9995 of f32), int8 (weights
    /// quantised per channel, activations per row; embeddings within cosine 0.995 of f32; the fastest on every
    /// CPU measured), or auto (the fastest within its bar on this CPU's kernels: int8 today)
    #[arg(long, value_name = "f32|bf16|int8|auto", default_value = "f32", value_parser = clip::Precision::parse_or_auto)]
    pub dtype: clip::Precision,
}
