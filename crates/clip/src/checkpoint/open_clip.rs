//! open_clip checkpoints (open_clip_torch 3.3 `factory.py` / `model.py`): an architecture config (a
//! `model_configs/<name>.json`, or the `model_cfg` of a Hub repository's `open_clip_config.json`) plus weights in
//! `open_clip_model.safetensors` or `open_clip_pytorch_model.bin` (a `torch.save` state dict). The weights use
//! OpenAI's layout ([`super::openai_layout`]); the config adds what shapes cannot tell: heads
//! (`width / head_width` for ViTs, `width * 32 / head_width` for ResNets, `text_cfg.heads`), the MLP ratio, and
//! the activation (`quick_gelu: true` -> QuickGELU, else erf GELU, open_clip's `nn.GELU`).
//!
//! Config options this crate does not implement (layer scale, attentional pooling, custom attention blocks, Hugging
//! Face or timm towers, SigLIP's logit bias, ...) are rejected by name rather than silently ignored.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::{Map, Value};

use crate::checkpoint::openai_layout::{self, ARGMAX_POOLING, LAYER_NORM_EPS};
use crate::checkpoint::torchscript::open_archive;
use crate::checkpoint::TensorStore;
use crate::error::{ClipError, Result};
use crate::model::config::{
    Activation, ModelArch, ResNetConfig, TextConfig, VisionConfig, VisionTowerConfig,
};
use crate::model::ClipModel;
use crate::model::Precision;
use crate::pretrained::open_clip::{open_clip_config, open_clip_model_names, PretrainedCfg};

/// Weight file names of an open_clip Hub repository, in order of preference.
pub const WEIGHT_FILES: [&str; 2] = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];
/// The config file of an open_clip Hub repository.
pub const CONFIG_FILE: &str = "open_clip_config.json";

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

/// A section of the config with typed getters that record which keys were read.
struct Section<'a> {
    name: &'a str,
    map: &'a Map<String, Value>,
    used: std::cell::RefCell<Vec<&'static str>>,
}

impl<'a> Section<'a> {
    fn new(name: &'a str, value: &'a Value) -> std::result::Result<Self, String> {
        let map = value
            .as_object()
            .ok_or_else(|| format!("{name} is not an object"))?;
        Ok(Self {
            name,
            map,
            used: Default::default(),
        })
    }

    fn get(&self, key: &'static str) -> Option<&'a Value> {
        self.used.borrow_mut().push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn usize(
        &self,
        key: &'static str,
        default: Option<usize>,
    ) -> std::result::Result<usize, String> {
        match self.get(key) {
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("{}.{key} is not a non-negative integer", self.name)),
            None => default.ok_or_else(|| format!("{}.{key} is missing", self.name)),
        }
    }

    fn f64(&self, key: &'static str, default: f64) -> std::result::Result<f64, String> {
        match self.get(key) {
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("{}.{key} is not a number", self.name)),
            None => Ok(default),
        }
    }

    /// Rejects every key not read, not ignorable, and not at its "off" value (null / false / `default_str`).
    fn finish(&self, allowed_strings: &[(&str, &str)]) -> std::result::Result<(), String> {
        let used = self.used.borrow();
        for (k, v) in self.map {
            if used.contains(&k.as_str()) || IGNORED.contains(&k.as_str()) {
                continue;
            }
            let off = match v {
                Value::Null | Value::Bool(false) => true,
                Value::String(s) => allowed_strings
                    .iter()
                    .any(|(key, val)| key == k && val == s),
                _ => false,
            };
            if !off {
                return Err(format!(
                    "unsupported open_clip option {}.{k} = {v}",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

fn image_size(v: &Section) -> std::result::Result<usize, String> {
    match v.get("image_size") {
        None => Ok(224),
        Some(Value::Array(a)) => match a.as_slice() {
            [h, w] if h == w => h
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| "vision_cfg.image_size is not an integer".to_string()),
            _ => Err("vision_cfg.image_size must be square".into()),
        },
        Some(x) => x
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| "vision_cfg.image_size is not an integer".to_string()),
    }
}

/// `int(width * mlp_ratio)`, as open_clip sizes its MLPs.
fn mlp_width(width: usize, ratio: f64) -> usize {
    (width as f64 * ratio) as usize
}

/// Parses an open_clip model config (the content of `model_configs/<name>.json`) into a [`ModelArch`].
pub fn parse_model_config(value: &Value) -> std::result::Result<ModelArch, String> {
    let top = Section::new("config", value)?;
    let embed_dim = top.usize("embed_dim", None)?;
    // open_clip's documented default is erf GELU (`quick_gelu: false`); null is falsy in its Python too.
    let quick_gelu = match top.get("quick_gelu") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "config.quick_gelu is {other}, expected true or false"
            ))
        }
    };
    let activation = if quick_gelu {
        Activation::QuickGelu
    } else {
        Activation::Gelu
    };
    let v = Section::new(
        "vision_cfg",
        top.get("vision_cfg").ok_or("vision_cfg is missing")?,
    )?;
    let t = Section::new(
        "text_cfg",
        top.get("text_cfg").ok_or("text_cfg is missing")?,
    )?;
    // Read but informative only: the checkpoint holds the trained scale.
    top.get("init_logit_scale");
    top.finish(&[])?;

    let head_width = v.usize("head_width", Some(64))?;
    if head_width == 0 {
        return Err("vision_cfg.head_width must be positive".into());
    }
    let width = v.usize("width", Some(768))?;
    let size = image_size(&v)?;
    let vision = match v.get("layers") {
        Some(Value::Array(stages)) => {
            let counts: Vec<usize> = stages
                .iter()
                .map(|s| s.as_u64().map(|n| n as usize))
                .collect::<Option<_>>()
                .ok_or("vision_cfg.layers must be integers")?;
            let layers: [usize; 4] = counts
                .try_into()
                .map_err(|_| "vision_cfg.layers must list four ResNet stages".to_string())?;
            v.get("patch_size");
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
    v.finish(&[
        ("pos_embed_type", "learnable"),
        ("pool_type", "tok"),
        ("block_type", "default"),
    ])?;

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
        eos_token_id: ARGMAX_POOLING,
    };
    t.finish(&[
        ("pool_type", "argmax"),
        ("proj_type", "linear"),
        ("block_type", "default"),
    ])?;
    Ok(ModelArch {
        vision,
        text,
        embed_dim,
    })
}

/// The model config named or given by `spec`: a supported architecture name (`"ViT-H-14"`), a path to a model
/// config JSON or to a Hub repository's `open_clip_config.json` (its `model_cfg`), or inline JSON. Also returns
/// the `preprocess_cfg` of an `open_clip_config.json`, when there is one.
pub fn resolve_config(spec: &str) -> Result<(ModelArch, Option<PretrainedCfg>)> {
    let config_err = |path: PathBuf, reason: String| ClipError::Config { path, reason };
    let (origin, value) = if let Some(v) = open_clip_config(spec) {
        (PathBuf::from(spec), v.clone())
    } else if spec.trim_start().starts_with('{') {
        let v = serde_json::from_str(spec)
            .map_err(|e| config_err(PathBuf::from("<inline JSON>"), e.to_string()))?;
        (PathBuf::from("<inline JSON>"), v)
    } else if Path::new(spec).is_file() {
        let path = PathBuf::from(spec);
        let text = clip_io::read_input_text(&path, clip_io::Input::Config)?;
        let v = serde_json::from_str(&text).map_err(|e| config_err(path.clone(), e.to_string()))?;
        (path, v)
    } else {
        return Err(ClipError::InvalidInput(format!(
            "unknown open_clip config {spec:?}: not a file, and not one of {}",
            open_clip_model_names().join(", ")
        )));
    };
    let (model_cfg, preprocess) = match value.get("model_cfg") {
        Some(m) => {
            let pre = match value.get("preprocess_cfg") {
                Some(p) => {
                    Some(parse_preprocess_cfg(p).map_err(|r| config_err(origin.clone(), r))?)
                }
                None => None,
            };
            (m.clone(), pre)
        }
        None => (value, None),
    };
    let arch = parse_model_config(&model_cfg).map_err(|r| config_err(origin, r))?;
    Ok((arch, preprocess))
}

/// `open_clip_config.json`'s `preprocess_cfg` (`mean`, `std`, `interpolation`, `resize_mode`), with open_clip's
/// defaults for missing fields.
fn parse_preprocess_cfg(p: &Value) -> std::result::Result<PretrainedCfg, String> {
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
    Ok(PretrainedCfg {
        hf_hub: None,
        url: None,
        mean: triple("mean", [0.48145466, 0.4578275, 0.40821073])?,
        std: triple("std", [0.26862954, 0.26130258, 0.27577711])?,
        interpolation: text("interpolation", "bicubic"),
        resize_mode: text("resize_mode", "shortest"),
        quick_gelu: false,
    })
}

/// Opens open_clip weights: `.safetensors`, else a PyTorch zip (`open_clip_pytorch_model.bin`, epoch checkpoints
/// `{"state_dict": ...}`) read with the restricted unpickler. A `module.` prefix (distributed training) is
/// stripped, as open_clip's `load_checkpoint` does.
pub fn open_weights(path: &Path, device: &Device) -> Result<TensorStore> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let store = if is_safetensors {
        TensorStore::open_safetensors(&[path.to_path_buf()], device)?
    } else {
        open_archive(path, device)?.1
    };
    if store.names().next().is_some() && store.names().all(|n| n.starts_with("module.")) {
        return store.rename(|n| n.strip_prefix("module.").map(str::to_string));
    }
    Ok(store)
}

/// A loaded open_clip model.
#[derive(Debug)]
pub struct OpenClipCheckpoint {
    pub model: ClipModel,
    pub arch: ModelArch,
    /// The `preprocess_cfg` of an `open_clip_config.json`, when the config came from one.
    pub preprocess: Option<PretrainedCfg>,
}

/// `open_clip.create_model(config)` + `load_checkpoint(weights)`: `config` as [`resolve_config`] takes it;
/// linear layers packed for `precision`.
pub fn load_open_clip(
    config: &str,
    weights: &Path,
    device: &Device,
    precision: Precision,
) -> Result<OpenClipCheckpoint> {
    let (arch, preprocess) = resolve_config(config)?;
    let store = open_weights(weights, device)?;
    store.set_precision(precision);
    let model = openai_layout::load_clip(&store, &arch)?;
    Ok(OpenClipCheckpoint {
        model,
        arch,
        preprocess,
    })
}

/// Loads a directory laid out like an open_clip Hub repository: `open_clip_config.json` plus
/// `open_clip_model.safetensors` or `open_clip_pytorch_model.bin`.
pub fn load_open_clip_dir(
    dir: &Path,
    device: &Device,
    precision: Precision,
) -> Result<OpenClipCheckpoint> {
    let config = dir.join(CONFIG_FILE);
    let weights = WEIGHT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| ClipError::Checkpoint {
            path: dir.to_path_buf(),
            reason: format!("no {} or {}", WEIGHT_FILES[0], WEIGHT_FILES[1]),
        })?;
    load_open_clip(&config.to_string_lossy(), &weights, device, precision)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(name: &str) -> ModelArch {
        parse_model_config(open_clip_config(name).unwrap()).unwrap()
    }

    #[test]
    fn parses_every_embedded_config() {
        for name in open_clip_model_names() {
            let a = parse_model_config(open_clip_config(name).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let quick = name.ends_with("-quickgelu");
            assert_eq!(a.text.activation == Activation::QuickGelu, quick, "{name}");
        }
    }

    #[test]
    fn bigg_and_h_shapes() {
        let g = arch("ViT-bigG-14");
        match &g.vision {
            VisionTowerConfig::Vit(v) => {
                assert_eq!(
                    (v.width, v.heads, v.layers, v.patch_size),
                    (1664, 16, 48, 14)
                );
                assert_eq!(v.intermediate_size, 8192);
                assert_eq!(v.activation, Activation::Gelu);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (g.text.width, g.text.heads, g.text.layers, g.embed_dim),
            (1280, 20, 32, 1280)
        );
        let h = arch("ViT-H-14");
        assert_eq!(h.text.intermediate_size, 4096);
        match arch("RN50-quickgelu").vision {
            VisionTowerConfig::ResNet(r) => {
                assert_eq!(
                    (r.layers, r.width, r.heads, r.output_dim),
                    ([3, 4, 6, 3], 64, 32, 1024)
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsupported_options_are_named() {
        let mut v = open_clip_config("ViT-B-32").unwrap().clone();
        v["vision_cfg"]["ls_init_value"] = serde_json::json!(1e-5);
        let err = parse_model_config(&v).unwrap_err();
        assert!(err.contains("vision_cfg.ls_init_value"), "{err}");
        let mut v = open_clip_config("ViT-B-32").unwrap().clone();
        v["text_cfg"]["hf_model_name"] = serde_json::json!("roberta-base");
        assert!(parse_model_config(&v)
            .unwrap_err()
            .contains("hf_model_name"));
        let err = resolve_config("ViT-Q-99").unwrap_err().to_string();
        assert!(err.contains("ViT-Q-99") && !err.contains('\n'), "{err}");
    }
}
