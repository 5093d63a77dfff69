//! The command-line grammar. The forms of `classify`, `embed`, `tokenize` and `preprocess` are a contract:
//! scripts call them exactly so.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const DEFAULT_MODEL: &str = clip::loader::DEFAULT_MODEL;

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
    /// Cache directory for downloaded models [default: $HF_HUB_CACHE or ~/.cache/huggingface/hub]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Never use the network; models must already be cached (also: HF_HUB_OFFLINE=1)
    #[arg(long, global = true)]
    pub offline: bool,
    /// No progress bars
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Zero-shot classification: probabilities of each label for each image
    #[command(
        after_help = "Example:\n  clip classify girl-with-puppy.png --labels \"a puppy\" \"a girl\" \"glasses\""
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
    /// Image and text throughput, batch-1 latency, load time and peak memory
    #[command(
        after_help = "Example:\n  clip bench --model openai/clip-vit-base-patch32 --batch 1,8,32 --iters 5 --json"
    )]
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct ModelArg {
    /// Model: a Hugging Face model directory or Hub id
    #[arg(long, short, value_name = "M", default_value = DEFAULT_MODEL)]
    pub model: String,
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Images to classify
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// Label prompts, e.g. "a photo of a dog"
    #[arg(long, num_args = 1.., value_name = "LABEL")]
    pub labels: Vec<String>,
    /// File with one label per line (added after --labels)
    #[arg(long, value_name = "FILE")]
    pub labels_file: Option<PathBuf>,
    /// Tokenizer file or directory overriding the model's
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// One JSON object per image per line: {"image", "labels", "probs"}
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["image", "text", "text_file"]))]
#[command(group = clap::ArgGroup::new("sink").required(true).args(["json", "output"]))]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Image files to embed
    #[arg(long, num_args = 1.., value_name = "IMG")]
    pub image: Vec<PathBuf>,
    /// Texts to embed
    #[arg(long, num_args = 1.., value_name = "T")]
    pub text: Vec<String>,
    /// File with one text per line
    #[arg(long, value_name = "F")]
    pub text_file: Option<PathBuf>,
    /// L2-normalise each embedding
    #[arg(long)]
    pub normalize: bool,
    /// Cut texts longer than the context length instead of failing
    #[arg(long)]
    pub truncate: bool,
    /// Tokenizer file or directory overriding the model's
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// Print the embeddings as a JSON list of lists
    #[arg(long)]
    pub json: bool,
    /// Write the embeddings as a float32 [N, D] .npy file
    #[arg(long, value_name = "F.npy")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["texts", "text_file"]))]
pub struct TokenizeArgs {
    /// Use the tokenizer of this model (directory or Hub id)
    #[arg(long, short, value_name = "M", conflicts_with = "vocab")]
    pub model: Option<String>,
    /// Tokenizer file: bpe_simple_vocab_16e6.txt.gz, vocab.json (merges.txt beside it) or tokenizer.json
    /// [default: OpenAI's vocabulary, built in]
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// Tokens per row, including start and end tokens
    #[arg(long, value_name = "N", default_value_t = clip::tokenizer::DEFAULT_CONTEXT_LENGTH)]
    pub context_length: usize,
    /// Cut texts longer than the context length (the last token becomes end-of-text)
    #[arg(long)]
    pub truncate: bool,
    /// Texts to tokenize
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,
    /// File with one text per line
    #[arg(long, value_name = "F")]
    pub text_file: Option<PathBuf>,
    /// Print [[ids...], ...] (otherwise one line of ids per text)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// Take size, mean and std from this model (directory or Hub id)
    #[arg(long, short, value_name = "M", conflicts_with = "size")]
    pub model: Option<String>,
    /// Output size with OpenAI's mean and std [default: 224]
    #[arg(long, value_name = "N")]
    pub size: Option<u32>,
    /// Images to preprocess
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// Float32 [N, 3, S, S] .npy file to write
    #[arg(long, value_name = "F.npy", required = true)]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Batch sizes to measure
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,32",
        value_name = "N,N,..."
    )]
    pub batch: Vec<usize>,
    /// Timed runs per measurement (the median is reported)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub iters: usize,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}
