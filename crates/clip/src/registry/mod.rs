//! Published models as data: OpenAI's nine released checkpoints (clip-anytorch's `_MODELS`) and open_clip's
//! architecture configs and pretrained metadata (its `model_configs/*.json` and `pretrained.py`). The JSON under
//! `crates/clip/configs/` is written by `scripts/gen_pretrained_configs.py` from the installed reference
//! packages and embedded at compile time.

pub mod open_clip;
pub mod openai;

pub use self::open_clip::{open_clip_model_names, pretrained_tags, PretrainedCfg};
pub use self::openai::{available_models, openai_model, OpenAiModel};
pub use crate::formats::open_clip::PreprocessCfg;
