//! open_clip checkpoints (open_clip_torch 3.3 `factory.py` / `model.py`): an architecture config (a
//! `model_configs/<name>.json`, or the `model_cfg` of a Hub repository's `open_clip_config.json`) plus weights in
//! `open_clip_model.safetensors` or `open_clip_pytorch_model.bin` (a `torch.save` state dict). The weights use
//! OpenAI's names ([`super::keymap`]); the config adds what shapes cannot tell: heads (`width / head_width` for
//! ViTs, `width * 32 / head_width` for ResNets, `text_cfg.heads`), the MLP ratio, and the activation
//! (`quick_gelu: true` -> QuickGELU, else erf GELU, open_clip's `nn.GELU`).
//!
//! Config options this crate does not implement (layer scale, attentional pooling, custom attention blocks, Hugging
//! Face or timm towers, SigLIP's logit bias, ...) are rejected by name rather than silently ignored.

use std::path::Path;

use clip_preprocess::PreprocessConfig;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ClipError, Result};
use crate::formats::infer::LAYER_NORM_EPS;
use crate::formats::keymap::{openai_to_model, VisionKind};
use crate::formats::{Opened, StoredNames};
use crate::json::{Fields, Nulls};
use crate::kernels::Precision;
use crate::model::{
    Activation, ClipConfig, ResNetConfig, TextConfig, TextPooling, VisionConfig, VisionTowerConfig,
};
use crate::weights::{pytorch, safetensors, TensorStore, View};

/// Weight file names of an open_clip Hub repository, in order of preference.
pub(crate) const WEIGHT_FILES: [&str; 2] =
    ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];
/// The config file of an open_clip Hub repository.
pub(crate) const CONFIG_FILE: &str = "open_clip_config.json";

/// Options that only affect training or are implied by what this crate implements.
const IGNORED: &[&str] = &[
    "patch_dropout",
    "output_tokens",
    "attn_pooler_queries",
    "attn_pooler_heads",
    "timm_model_pretrained",
    "timm_pool",
    "timm_proj",
    "timm_proj_bias",
    "timm_drop",
    "timm_drop_path",
    "hf_tokenizer_name",
    "tokenizer_mode",
    "tokenizer_kwargs",
    "hf_model_pretrained",
    "hf_proj_type",
    "hf_pooler_type",
    "pad_id",
    "eos_id",
    // LayerNorm is per position, so normalising before or after taking the pooled token is the same.
    "final_ln_after_pool",
];

/// Rejects every key not read, not ignorable, and not at its "off" value (null / false / an allowed string).
fn reject_unsupported(
    f: &Fields,
    allowed_strings: &[(&str, &str)],
) -> std::result::Result<(), String> {
    for (k, v) in f.unread() {
        if IGNORED.contains(&k) {
            continue;
        }
        let off = match v {
            Value::Null | Value::Bool(false) => true,
            Value::String(s) => allowed_strings
                .iter()
                .any(|(key, val)| *key == k && val == s),
            _ => false,
        };
        if !off {
            return Err(format!(
                "unsupported open_clip option {}.{k} = {v}",
                f.name()
            ));
        }
    }
    Ok(())
}

/// `int(width * mlp_ratio)`, as open_clip sizes its MLPs.
fn mlp_width(width: usize, ratio: f64) -> usize {
    (width as f64 * ratio) as usize
}

/// Parses an open_clip model config (the content of `model_configs/<name>.json`).
pub(crate) fn parse_model_config(value: &Value) -> std::result::Result<ClipConfig, String> {
    let top = Fields::new("config", value, Nulls::Absent)?;
    let embed_dim = top.usize("embed_dim", None)?;
    // open_clip's documented default is erf GELU (`quick_gelu: false`); null is falsy in its Python too.
    let activation = match top.get("quick_gelu")? {
        None | Some(Value::Bool(false)) => Activation::Gelu,
        Some(Value::Bool(true)) => Activation::QuickGelu,
        Some(other) => return Err(top.bad("quick_gelu", "true or false", other)),
    };
    let v = Fields::new(
        "vision_cfg",
        top.get("vision_cfg")?.ok_or("vision_cfg is missing")?,
        Nulls::Absent,
    )?;
    let t = Fields::new(
        "text_cfg",
        top.get("text_cfg")?.ok_or("text_cfg is missing")?,
        Nulls::Absent,
    )?;
    // Read but informative only: the checkpoint holds the trained scale.
    let logit_scale_init = top.f64("init_logit_scale", (1.0f64 / 0.07).ln())? as f32;
    reject_unsupported(&top, &[])?;

    let head_width = v.usize("head_width", Some(64))?;
    if head_width == 0 {
        return Err("vision_cfg.head_width must be positive".into());
    }
    let width = v.usize("width", Some(768))?;
    let size = v.square("image_size", 224)?;
    let vision = match v.get("layers")? {
        Some(Value::Array(stages)) => {
            let counts: Vec<usize> = stages
                .iter()
                .map(|s| s.as_u64().map(|n| n as usize))
                .collect::<Option<_>>()
                .ok_or("vision_cfg.layers must be integers")?;
            let layers: [usize; 4] = counts
                .try_into()
                .map_err(|_| "vision_cfg.layers must list four ResNet stages".to_string())?;
            v.get("patch_size")?;
            v.f64("mlp_ratio", 4.0)?;
            VisionTowerConfig::ResNet(ResNetConfig {
                image_size: size,
                layers,
                width,
                heads: width * 32 / head_width,
                output_dim: embed_dim,
            })
        }
        _ => {
            let layers = v.usize("layers", Some(12))?;
            let patch_size = v.usize("patch_size", Some(16))?;
            let ratio = v.f64("mlp_ratio", 4.0)?;
            if width % head_width != 0 {
                return Err(format!(
                    "vision_cfg.width {width} is not a multiple of head_width {head_width}"
                ));
            }
            VisionTowerConfig::Vit(VisionConfig {
                image_size: size,
                patch_size,
                width,
                layers,
                heads: width / head_width,
                intermediate_size: mlp_width(width, ratio),
                activation,
                layer_norm_eps: LAYER_NORM_EPS,
            })
        }
    };
    reject_unsupported(
        &v,
        &[
            ("pos_embed_type", "learnable"),
            ("pool_type", "tok"),
            ("block_type", "default"),
        ],
    )?;

    let tw = t.usize("width", Some(512))?;
    let heads = t.usize("heads", Some(8))?;
    if heads == 0 || tw % heads != 0 {
        return Err(format!(
            "text_cfg.width {tw} is not a multiple of heads {heads}"
        ));
    }
    let text = TextConfig {
        vocab_size: t.usize("vocab_size", Some(49408))?,
        context_length: t.usize("context_length", Some(77))?,
        width: tw,
        layers: t.usize("layers", Some(12))?,
        heads,
        intermediate_size: mlp_width(tw, t.f64("mlp_ratio", 4.0)?),
        activation,
        layer_norm_eps: LAYER_NORM_EPS,
        pooling: TextPooling::Argmax,
    };
    reject_unsupported(
        &t,
        &[
            ("pool_type", "argmax"),
            ("proj_type", "linear"),
            ("block_type", "default"),
        ],
    )?;
    let config = ClipConfig {
        vision,
        text,
        projection_dim: embed_dim,
        logit_scale_init,
    };
    config.validate()?;
    Ok(config)
}

/// open_clip's preprocessing settings (`preprocess_cfg` of `open_clip_config.json`, or a pretrained tag's).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PreprocessCfg {
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Resize filter (`"bicubic"` for every supported family).
    pub interpolation: String,
    /// `"shortest"` (resize the shorter side, then centre crop) or `"squash"` (resize to a square).
    pub resize_mode: String,
}

impl Default for PreprocessCfg {
    /// open_clip's defaults: OpenAI's mean and std, bicubic, shortest side.
    fn default() -> Self {
        Self {
            mean: [0.48145466, 0.4578275, 0.40821073],
            std: [0.26862954, 0.26130258, 0.27577711],
            interpolation: "bicubic".into(),
            resize_mode: "shortest".into(),
        }
    }
}

impl PreprocessCfg {
    /// The pipeline for `size` pixels (mean and std as float32, as torch turns the Python floats into its
    /// normalisation tensor). Settings OpenAI's pipeline would get wrong are refused.
    pub fn to_config(&self, size: u32) -> Result<PreprocessConfig> {
        if self.resize_mode != "shortest" || self.interpolation != "bicubic" {
            return Err(ClipError::InvalidInput(format!(
                "these weights were trained with resize_mode {:?} and interpolation {:?}; only \"shortest\" with \
                 \"bicubic\" (OpenAI's pipeline) is implemented",
                self.resize_mode, self.interpolation
            )));
        }
        let config = PreprocessConfig {
            size,
            mean: self.mean.map(|v| v as f32),
            std: self.std.map(|v| v as f32),
        };
        config.validate()?;
        Ok(config)
    }
}

/// `open_clip_config.json`'s `preprocess_cfg`, with open_clip's defaults for missing fields.
pub(crate) fn parse_preprocess_cfg(p: &Value) -> std::result::Result<PreprocessCfg, String> {
    let defaults = PreprocessCfg::default();
    let triple = |key: &str, default: [f64; 3]| -> std::result::Result<[f64; 3], String> {
        match p.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Array(a)) if a.len() == 3 => {
                let mut out = [0.0; 3];
                for (o, x) in out.iter_mut().zip(a) {
                    *o = x
                        .as_f64()
                        .ok_or_else(|| format!("preprocess_cfg.{key} is not numeric"))?;
                }
                Ok(out)
            }
            Some(_) => Err(format!("preprocess_cfg.{key} must list 3 numbers")),
        }
    };
    let text = |key: &str, default: &str| {
        p.get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    Ok(PreprocessCfg {
        mean: triple("mean", defaults.mean)?,
        std: triple("std", defaults.std)?,
        interpolation: text("interpolation", &defaults.interpolation),
        resize_mode: text("resize_mode", &defaults.resize_mode),
    })
}

/// The model config and preprocessing of an `open_clip_config.json` (`model_cfg`, `preprocess_cfg`), or of a bare
/// model config.
pub(crate) fn parse_config_file(
    value: &Value,
) -> std::result::Result<(ClipConfig, Option<PreprocessCfg>), String> {
    match value.get("model_cfg") {
        Some(m) => {
            let pre = match value.get("preprocess_cfg") {
                Some(p) => Some(parse_preprocess_cfg(p)?),
                None => None,
            };
            Ok((parse_model_config(m)?, pre))
        }
        None => Ok((parse_model_config(value)?, None)),
    }
}

/// Opens open_clip weights: `.safetensors`, else a PyTorch zip (`open_clip_pytorch_model.bin`, epoch checkpoints
/// `{"state_dict": ...}`), in `precision`. A `module.` prefix (distributed training) is stripped, as open_clip's
/// `load_checkpoint` does, and OpenAI's names are mapped onto the model's for `config`'s image tower.
pub(crate) fn open_weights(
    path: &Path,
    config: &ClipConfig,
    precision: Precision,
) -> Result<TensorStore> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let store = if is_safetensors {
        safetensors::open(&[path.to_path_buf()], precision)?
    } else {
        pytorch::open(path, precision)?.1
    };
    let strip = store.names().next().is_some() && store.names().all(|n| n.starts_with("module."));
    let kind = vision_kind(config);
    store.remap(|name, shape| {
        let name = if strip {
            &name["module.".len()..]
        } else {
            name
        };
        openai_to_model(name, shape, "", Some(kind))
            .or_else(|| strip.then(|| vec![(name.to_string(), View::Whole)]))
    })
}

/// `open_clip.create_model(config)` + `load_checkpoint(weights)`, opened in `precision`.
pub(crate) fn open(config: ClipConfig, weights: &Path, precision: Precision) -> Result<Opened> {
    let names = StoredNames::OpenAi(vision_kind(&config));
    let store = open_weights(weights, &config, precision)?;
    Ok(Opened {
        store,
        config,
        names,
    })
}

fn vision_kind(config: &ClipConfig) -> VisionKind {
    match config.vision {
        VisionTowerConfig::Vit(_) => VisionKind::Vit,
        VisionTowerConfig::ResNet(_) => VisionKind::ResNet,
    }
}
