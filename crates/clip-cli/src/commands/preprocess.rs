//! `clip preprocess`: the model's image pipeline written as float32 `[N, 3, S, S]`, streamed in chunks; an image
//! that fails keeps its place as a row of NaN.

use anyhow::Context;
use clip::npy::NpyWriter;
use clip::preprocess::PreprocessConfig;

use std::path::PathBuf;

use clap::Args;

use crate::args::GlobalArgs;
use crate::progress;
use crate::report::{input_failed, Outcome, UsageError};

use super::hub_options;

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

/// Images decoded (on all cores) and written per step: memory stays bounded whatever the number of images.
const CHUNK: usize = 32;

pub fn run(global: &GlobalArgs, args: PreprocessArgs) -> anyhow::Result<Outcome> {
    let config = match (&args.model, args.size) {
        (Some(model), _) => {
            clip::ModelSource::parse(model)?.preprocess_config(&hub_options(global))?
        }
        (None, Some(size)) => {
            let config = PreprocessConfig {
                size,
                ..PreprocessConfig::default()
            };
            config
                .validate()
                .map_err(|e| UsageError(format!("--size {size}: {e}")))?;
            config
        }
        (None, None) => PreprocessConfig::default(),
    };
    config.validate()?;
    let size = config.size as usize;
    let total = args.images.len();
    let mut out = NpyWriter::create(&args.output, &[total, 3, size, size])
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let bar = progress::items(total, "preprocessing", global.quiet);
    let mut failed = 0;
    for chunk in args.images.chunks(CHUNK) {
        let results = clip::threads::parallel_map(chunk, |path| {
            let result = clip::preprocess::preprocess_path(path, &config);
            bar.inc(1);
            result
        });
        for result in results {
            match result {
                Ok(pixels) => out.write(&pixels)?,
                Err(e) => {
                    failed += 1;
                    input_failed(&e);
                    out.write(&vec![f32::NAN; 3 * size * size])?;
                }
            }
        }
    }
    bar.finish_and_clear();
    // Nothing preprocessed: an existing output file is left as it was.
    if failed < total {
        out.finish()
            .with_context(|| format!("cannot write {}", args.output.display()))?;
    }
    Ok(Outcome::from_failures(failed, total))
}
