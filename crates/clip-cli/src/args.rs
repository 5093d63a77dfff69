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
    /// Largest image file read, in bytes (K, M, G suffixes) [default: 256M, or $CLIP_MAX_IMAGE_BYTES]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub max_image_bytes: Option<u64>,
    /// Largest text file read (captions, labels, classes, templates, dataset CSV) [default: 64M, or
    /// $CLIP_MAX_TEXT_BYTES]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub max_text_bytes: Option<u64>,
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
    pub dtype: clip::model::Precision,
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Images to classify
    #[arg(value_name = "IMAGE", required_unless_present = "save_classifier")]
    pub images: Vec<PathBuf>,
    /// Label prompts, e.g. "a photo of a dog"
    #[arg(long, num_args = 1.., value_name = "LABEL")]
    pub labels: Vec<String>,
    /// File with one label per line (added after --labels)
    #[arg(long, value_name = "FILE")]
    pub labels_file: Option<PathBuf>,
    /// Class names put into every prompt template and ensembled: imagenet, cifar10, cifar100 or a file with
    /// one name per line
    #[arg(long, value_name = "NAME|FILE", conflicts_with_all = ["labels", "labels_file", "classifier"])]
    pub classes: Option<String>,
    /// Prompt templates for --classes (or for --labels taken as class names): openai (80), simple (7) or a file
    /// with one template per line, {} marking the class name [default with --classes: openai]
    #[arg(long, value_name = "openai|simple|FILE", conflicts_with = "classifier")]
    pub templates: Option<String>,
    /// Show only the K most probable classes per image
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub top_k: Option<u64>,
    /// Save the classifier (class embeddings, names, templates, model hash) as safetensors
    #[arg(long, value_name = "F", conflicts_with = "classifier")]
    pub save_classifier: Option<PathBuf>,
    /// Use a classifier saved by --save-classifier or `clip probe`
    #[arg(long, value_name = "F", conflicts_with_all = ["labels", "labels_file"])]
    pub classifier: Option<PathBuf>,
    /// Tokenizer file or directory overriding the model's
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// One JSON object per image per line: {"image", "labels", "probs"}, or {"image", "error"} for an image
    /// that could not be read
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// An ImageFolder directory (one sub-folder per class) or a CSV file of path,label rows
    #[arg(long, value_name = "DIR|FILE.csv")]
    pub dataset: PathBuf,
    /// Class names for the prompts: imagenet, cifar10, cifar100 or a file with one name per line, in the order
    /// of the dataset's sorted class folders or matching its labels [default: the dataset's class names]
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "classifier")]
    pub classes: Option<String>,
    /// Prompt templates: openai (80), simple (7) or a file with one template per line, {} marking the class
    /// name [default: openai]
    #[arg(long, value_name = "openai|simple|FILE", conflicts_with = "classifier")]
    pub templates: Option<String>,
    /// Use a classifier saved by `clip classify --save-classifier` or `clip probe`
    #[arg(long, value_name = "F")]
    pub classifier: Option<PathBuf>,
    /// Write the confusion matrix (rows: true class, columns: predicted) as CSV
    #[arg(long, value_name = "F.csv")]
    pub confusion: Option<PathBuf>,
    /// Tokenizer file or directory overriding the model's
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Training images: an ImageFolder directory or a CSV file of path,label rows
    #[arg(long, value_name = "DIR|FILE.csv")]
    pub train: PathBuf,
    /// Test images, labelled with the training set's class names
    #[arg(long, value_name = "DIR|FILE.csv")]
    pub test: Option<PathBuf>,
    /// Where to save the probe as a classifier for `clip classify --classifier`
    #[arg(long, value_name = "F", default_value = "classifier.safetensors")]
    pub output: PathBuf,
    /// L-BFGS iterations per fit
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_iter: usize,
    /// Print the report as one JSON object
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
    /// File with one text per line (- for standard input)
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
    /// Print the embeddings as a JSON list of lists (null for an image that failed)
    #[arg(long)]
    pub json: bool,
    /// Write the embeddings as a float32 [N, D] .npy file (a row of NaN for an image that failed)
    #[arg(long, value_name = "F.npy")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["texts", "text_file"]))]
pub struct TokenizeArgs {
    /// Use the tokenizer of this model (any --model form)
    #[arg(long, short, value_name = "M", conflicts_with = "vocab")]
    pub model: Option<String>,
    /// Tokenizer file: bpe_simple_vocab_16e6.txt.gz, vocab.json (merges.txt beside it) or tokenizer.json
    /// [default: OpenAI's vocabulary, built in]
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// Tokens per row, including start and end tokens (2 to 8192)
    #[arg(long, value_name = "N", default_value_t = clip::tokenizer::DEFAULT_CONTEXT_LENGTH)]
    pub context_length: usize,
    /// Cut texts longer than the context length (the last token becomes end-of-text)
    #[arg(long)]
    pub truncate: bool,
    /// Texts to tokenize
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,
    /// File with one text per line (- for standard input)
    #[arg(long, value_name = "F")]
    pub text_file: Option<PathBuf>,
    /// Print [[ids...], ...] (otherwise one line of ids per text)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// Take size, mean and std from this model (any --model form)
    #[arg(long, short, value_name = "M", conflicts_with = "size")]
    pub model: Option<String>,
    /// Output size with OpenAI's mean and std, 1 to 4096 [default: 224]
    #[arg(long, value_name = "N")]
    pub size: Option<u32>,
    /// Images to preprocess
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// Float32 [N, 3, S, S] .npy file to write (a row of NaN for an image that failed)
    #[arg(long, value_name = "F.npy", required = true)]
    pub output: PathBuf,
}

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
}

#[derive(Args, Debug)]
pub struct ConditionArgs {
    /// Model family: sd1, sd2 or sdxl
    #[arg(long, value_name = "P")]
    pub preset: clip::conditioning::Preset,
    /// A diffusers directory (text_encoder/, tokenizer/, ...) or a .safetensors single-file checkpoint
    #[arg(long, short, value_name = "PATH")]
    pub model: PathBuf,
    /// For single files: a diffusers directory whose text_encoder*/config.json and tokenizer*/ describe the
    /// encoders [default: architecture from tensor shapes, OpenAI's vocabulary]
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// The prompt
    #[arg(long, value_name = "TEXT")]
    pub prompt: String,
    /// Negative prompt [default: none: "" for SD1/SD2, zeros for SDXL]
    #[arg(long, value_name = "TEXT")]
    pub negative: Option<String>,
    /// Guidance scale; above 1 the batch holds negative rows too
    #[arg(long, value_name = "W", default_value_t = 7.5)]
    pub cfg: f64,
    /// Images per prompt (rows per half), 1 to 256
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub n_images: usize,
    /// Layers to skip from the end (diffusers' clip_skip; positive prompt only, as diffusers)
    #[arg(long, value_name = "K")]
    pub clip_skip: Option<usize>,
    /// Padding: max (diffusers: to 77 with the tokenizer's pad token) or longest (MLX: id 0 to the longest prompt)
    #[arg(long, value_enum, default_value_t = PadArg::Max)]
    pub pad: PadArg,
    /// Batch order with guidance: positive-first [pos x N, neg x N] or negative-first (diffusers' UNet batch)
    #[arg(long, value_enum, default_value_t = OrderArg::PositiveFirst)]
    pub order: OrderArg,
    /// Zeros for a missing negative prompt (SDXL's force_zeros_for_empty_prompt) [default: model_index.json]
    #[arg(long, value_name = "BOOL")]
    pub force_zeros: Option<bool>,
    /// Safetensors file to write (conditioning, pooled, tokens)
    #[arg(long, value_name = "F.safetensors")]
    pub output: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PadArg {
    Max,
    Longest,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OrderArg {
    PositiveFirst,
    NegativeFirst,
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print one JSON object per model per line
    #[arg(long)]
    pub json: bool,
}
