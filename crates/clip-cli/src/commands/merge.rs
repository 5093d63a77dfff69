//! `clip merge`: WiSE-FT weight interpolation of a fine-tuned model with the model it started from.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::args::GlobalArgs;
use crate::report::Outcome;

use super::{hub_options, print_line};

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The weight of FINETUNED: θ = (1 − A)·ZEROSHOT + A·FINETUNED (0.5 is WiSE-FT's usual choice)
    #[arg(long, value_name = "A")]
    pub alpha: f64,
    /// The model fine-tuning started from (any --model form)
    #[arg(value_name = "ZEROSHOT")]
    pub zeroshot: String,
    /// The fine-tuned model (same architecture)
    #[arg(value_name = "FINETUNED")]
    pub finetuned: String,
    /// The merged model's directory (Hugging Face layout)
    #[arg(long, short, value_name = "OUT")]
    pub output: PathBuf,
}

pub fn run(global: &GlobalArgs, args: MergeArgs) -> anyhow::Result<Outcome> {
    clip::train::merge(
        &args.zeroshot,
        &args.finetuned,
        args.alpha,
        &args.output,
        &hub_options(global),
    )
    .context("cannot merge")?;
    print_line(&format!(
        "wrote (1 - {a})·{} + {a}·{} to {}",
        args.zeroshot,
        args.finetuned,
        args.output.display(),
        a = args.alpha
    ))?;
    Ok(Outcome::Success)
}
