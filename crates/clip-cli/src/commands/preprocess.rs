//! `clip preprocess`: the model's image pipeline written as float32 `[N, 3, S, S]`.

use anyhow::Context;
use clip::preprocess::PreprocessConfig;

use crate::args::{GlobalArgs, PreprocessArgs};
use crate::progress;
use crate::report::{input_failed, Outcome};

use super::hub_options;

pub fn run(global: &GlobalArgs, args: PreprocessArgs) -> anyhow::Result<Outcome> {
    let config = match (&args.model, args.size) {
        (Some(model), _) => {
            clip::source::ModelSource::parse(model)?.preprocess_config(&hub_options(global))?
        }
        (None, Some(size)) => PreprocessConfig {
            size,
            ..PreprocessConfig::default()
        },
        (None, None) => PreprocessConfig::default(),
    };
    if config.size == 0 {
        return Err(crate::report::UsageError("--size must be at least 1".into()).into());
    }
    let bar = progress::items(args.images.len(), "preprocessing", global.quiet);
    let results = clip::loader::parallel_map(&args.images, |path| {
        let result = clip::preprocess::preprocess_path(path, &config);
        bar.inc(1);
        result
    });
    bar.finish_and_clear();
    let mut flat = Vec::new();
    let mut good = 0;
    for result in &results {
        match result {
            Ok(pixels) => {
                flat.extend_from_slice(pixels);
                good += 1;
            }
            Err(e) => input_failed(e),
        }
    }
    let size = config.size as usize;
    if good == 0 {
        // Nothing to write: an existing output file is left as it was.
        return Ok(Outcome::from_failures(results.len(), results.len()));
    }
    clip::npy::write_f32(&args.output, &[good, 3, size, size], &flat)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(Outcome::from_failures(results.len() - good, results.len()))
}
