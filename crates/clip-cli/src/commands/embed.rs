//! `clip embed`: raw `encode_image` / `encode_text` features as JSON or a float32 `[N, D]` .npy file, one row
//! per input in input order (a failed image keeps its row: NaN in the .npy, null in the JSON).

use std::path::PathBuf;

use clap::Args;

use crate::args::{GlobalArgs, ModelArg};
use crate::progress;
use crate::report::{input_failed, Outcome};

use super::rows::RowSink;
use super::{hint_truncate, load_model, read_lines};

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

/// Texts encoded per model call and per streamed write.
const TEXT_CHUNK: usize = 1024;

pub fn run(global: &GlobalArgs, args: EmbedArgs) -> anyhow::Result<Outcome> {
    let clip = load_model(global, &args.model, args.vocab.as_deref())?;
    if !args.image.is_empty() {
        embed_images(global, &args, &clip)
    } else {
        embed_texts(&args, &clip)
    }
}

fn embed_images(
    global: &GlobalArgs,
    args: &EmbedArgs,
    clip: &clip::Clip,
) -> anyhow::Result<Outcome> {
    let bar = progress::items(args.image.len(), "embedding", global.quiet);
    let results = clip.encode_image_files(&args.image, |done| bar.set_position(done as u64));
    bar.finish_and_clear();
    let dim = results
        .iter()
        .find_map(|r| r.as_ref().ok().map(Vec::len))
        .unwrap_or(clip.model().config().projection_dim);
    let mut sink = RowSink::create(args.output.as_deref(), args.json, results.len(), dim)?;
    let mut failed = 0;
    for result in results {
        match result {
            Ok(mut row) => {
                if args.normalize {
                    clip::normalize_rows(std::slice::from_mut(&mut row));
                }
                sink.push(Some(&row))?;
            }
            Err(e) => {
                failed += 1;
                input_failed(&e);
                sink.push(None)?;
            }
        }
    }
    // With nothing embedded, an existing output file is left as it was.
    sink.finish(failed < args.image.len())?;
    Ok(Outcome::from_failures(failed, args.image.len()))
}

fn embed_texts(args: &EmbedArgs, clip: &clip::Clip) -> anyhow::Result<Outcome> {
    let mut texts = args.text.clone();
    if let Some(file) = &args.text_file {
        texts.extend(read_lines(file, "text")?);
    }
    if !args.truncate {
        // As clip.tokenize, one over-long text fails the whole call: find it before any row is written.
        for chunk in texts.chunks(TEXT_CHUNK) {
            clip.tokenize(chunk, false).map_err(hint_truncate)?;
        }
    }
    let dim = clip.model().config().projection_dim;
    let mut sink = RowSink::create(args.output.as_deref(), args.json, texts.len(), dim)?;
    for chunk in texts.chunks(TEXT_CHUNK) {
        let mut rows = clip
            .encode_texts(chunk, args.truncate)
            .map_err(hint_truncate)?;
        if args.normalize {
            clip::normalize_rows(&mut rows);
        }
        for row in &rows {
            sink.push(Some(row))?;
        }
    }
    sink.finish(true)?;
    Ok(Outcome::Success)
}
