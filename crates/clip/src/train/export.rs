//! Writing a trained model as a Hugging Face `CLIPModel` directory: `config.json`, `model.safetensors` (f32, the
//! model's own names), `preprocessor_config.json`, and tokenizer files (`vocab.json` + `merges.txt`). Both
//! `clip --model DIR` and transformers' `CLIPModel.from_pretrained(DIR)` load it. Each file is written
//! atomically.

use std::path::Path;

use clip_preprocess::PreprocessConfig;

use crate::error::{ClipError, Result};
use crate::formats::{hf, LOGIT_BIAS};
use crate::model::layout::parameters;
use crate::model::params::Params;
use crate::model::ClipConfig;
use crate::weights::safetensors::write_f32;

/// Tokenizer files copied from a model directory when it has them.
const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| ClipError::InvalidInput(format!("{}: {e}", path.display())))?;
    text.push('\n');
    Ok(clip_io::write_output(path, text.as_bytes())?)
}

/// `config.json`, `model.safetensors` and `preprocessor_config.json` of `params` in `dir`.
pub(crate) fn write_model(
    dir: &Path,
    config: &ClipConfig,
    params: &Params,
    preprocess: &PreprocessConfig,
) -> Result<()> {
    let config_value = hf::config_json(config).map_err(ClipError::InvalidInput)?;
    let mut names: Vec<(String, Vec<usize>)> = parameters(config)?;
    if params.contains(LOGIT_BIAS) {
        names.push((LOGIT_BIAS.to_string(), Vec::new()));
    }
    let mut values = Vec::with_capacity(names.len());
    for (name, shape) in &names {
        let tensor = params.get(name)?;
        if tensor.dims() != shape.as_slice() {
            return Err(ClipError::InvalidInput(format!(
                "parameter {name} has shape {:?}, the architecture needs {shape:?}",
                tensor.dims()
            )));
        }
        values.push(tensor.flatten_all()?.to_vec1::<f32>()?);
    }
    let entries: Vec<(&str, &[usize], &[f32])> = names
        .iter()
        .zip(&values)
        .map(|((n, s), v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    write_f32(&dir.join(hf::SAFETENSORS_FILE), &entries)?;
    write_json(&dir.join(hf::CONFIG_FILE), &config_value)?;
    write_json(
        &dir.join(hf::PREPROCESSOR_FILE),
        &hf::preprocessor_json(preprocess),
    )
}

/// Tokenizer files in `dir`: those of the model's own directory (or of `vocab`, a tokenizer directory) when it
/// has them, else OpenAI's vocabulary as `vocab.json` + `merges.txt`.
pub(crate) fn write_tokenizer(dir: &Path, source: Option<&Path>) -> Result<()> {
    if let Some(source) = source.filter(|s| s.is_dir()) {
        let present: Vec<&str> = TOKENIZER_FILES
            .iter()
            .copied()
            .filter(|f| source.join(f).is_file())
            .collect();
        let usable = present.contains(&"tokenizer.json")
            || (present.contains(&"vocab.json") && present.contains(&"merges.txt"));
        if usable {
            for file in present {
                let bytes = clip_io::read_input(&source.join(file), clip_io::Input::Vocabulary)?;
                clip_io::write_output(&dir.join(file), &bytes)?;
            }
            return Ok(());
        }
    }
    let (vocab, merges) = clip_tokenizer::Tokenizer::openai_vocab_merges();
    clip_io::write_output(&dir.join("vocab.json"), vocab.as_bytes())?;
    clip_io::write_output(&dir.join("merges.txt"), merges.as_bytes())?;
    Ok(())
}
