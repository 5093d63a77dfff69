//! `clip tokenize`: ids exactly as OpenAI's `clip.tokenize`, one row per text padded with 0, streamed.

use std::path::PathBuf;

use clap::Args;

use crate::args::GlobalArgs;
use crate::json_list::JsonList;
use crate::report::Outcome;

use super::{hint_truncate, hub_options, print_line, read_lines};

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

pub fn run(global: &GlobalArgs, args: TokenizeArgs) -> anyhow::Result<Outcome> {
    let mut texts = args.texts.clone();
    if let Some(file) = &args.text_file {
        texts.extend(read_lines(file, "text")?);
    }
    let tokenizer = match &args.model {
        Some(model) => clip::ModelSource::parse(model)?.tokenizer(&hub_options(global), None)?,
        None => match &args.vocab {
            Some(vocab) => clip::tokenizer::Tokenizer::from_path(vocab)?,
            None => clip::tokenizer::Tokenizer::openai(),
        },
    };
    let tokenize = |text: &str| {
        tokenizer
            .tokenize(text, args.context_length, args.truncate)
            .map_err(|e| hint_truncate(e.into()))
    };
    if !args.truncate {
        // As clip.tokenize, one over-long text fails the call: find it before printing anything.
        for text in &texts {
            tokenize(text)?;
        }
    }
    if args.json {
        let mut list = JsonList::start()?;
        for text in &texts {
            list.push(&tokenize(text)?)?;
        }
        list.finish()?;
    } else {
        for text in &texts {
            let ids: Vec<String> = tokenize(text)?.iter().map(u32::to_string).collect();
            print_line(&ids.join(" "))?;
        }
    }
    Ok(Outcome::Success)
}
