//! The model a run starts from: loaded from anything inference loads (its parameters read in the model's
//! layout, in f32) or drawn fresh for an architecture, with its preprocessing and tokenizer.

use std::path::{Path, PathBuf};

use clip_preprocess::PreprocessConfig;
use clip_tokenizer::Tokenizer;

use crate::bundle::source::{tokenizer_for, ModelSource};
use crate::error::Result;
use crate::formats::LOGIT_BIAS;
use crate::hub::HubOptions;
use crate::kernels::Precision;
use crate::model::layout::parameters;
use crate::model::params::Params;
use crate::model::ClipConfig;
use crate::registry::open_clip::resolve_config;
use crate::train::init::fresh_params;
use crate::train::options::ModelInit;

/// The starting model: architecture, parameters, preprocessing and tokenizer.
pub(crate) struct Start {
    pub config: ClipConfig,
    pub params: Params,
    pub preprocess: PreprocessConfig,
    pub tokenizer: Tokenizer,
    /// Where tokenizer files come from for the output.
    pub tokenizer_dir: Option<PathBuf>,
}

/// The model `model` names, its parameters in the model's layout (a fresh draw from `seed` for a config), with
/// its preprocessing and tokenizer (`vocab` overriding the model's).
pub(crate) fn load_start(
    model: &ModelInit,
    hub: &HubOptions,
    vocab: Option<&Path>,
    seed: u64,
) -> Result<Start> {
    match model {
        ModelInit::Load(spec) => {
            let opened = ModelSource::parse(spec)?.open(hub, Precision::F32)?;
            let store = &opened.opened.store;
            let config = opened.opened.config.clone();
            let mut params = Params::new();
            for (name, shape) in parameters(&config)? {
                let tensor = store
                    .take(&name, &shape)
                    .map_err(|e| crate::formats::stored_name(opened.opened.names, e))?;
                params.insert(name, tensor);
            }
            if store.contains(LOGIT_BIAS) {
                params.insert(LOGIT_BIAS, store.take(LOGIT_BIAS, &[])?);
            }
            let tokenizer = tokenizer_for(opened.tokenizer_dir.as_deref(), vocab)?;
            let tokenizer_dir = vocab.map(Path::to_path_buf).or(opened.tokenizer_dir);
            Ok(Start {
                config,
                params,
                preprocess: opened.preprocess,
                tokenizer,
                tokenizer_dir,
            })
        }
        ModelInit::Config(name) => {
            let (config, preprocess_cfg) = resolve_config(name)?;
            let size = config.vision.image_size() as u32;
            let preprocess = match preprocess_cfg {
                Some(p) => p.to_config(size)?,
                None => PreprocessConfig {
                    size,
                    ..PreprocessConfig::default()
                },
            };
            let params = fresh_params(&config, seed)?;
            Ok(Start {
                config,
                params,
                preprocess,
                tokenizer: tokenizer_for(None, vocab)?,
                tokenizer_dir: vocab.map(Path::to_path_buf),
            })
        }
    }
}
