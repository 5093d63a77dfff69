//! Hugging Face `CLIPModel` directories: `config.json` read the way transformers 5.23's `CLIPConfig` reads it
//! (defaults for missing fields, legacy `*_config_dict` overrides), weights from `model.safetensors` (also
//! sharded) or `pytorch_model.bin` in the model's own layout, and `preprocessor_config.json` as
//! `CLIPImageProcessor` reads its sizes, mean and std.

use std::path::{Path, PathBuf};

use clip_preprocess::{PreprocessConfig, OPENAI_MEAN, OPENAI_STD};
use serde_json::{Map, Value};

use crate::error::{ClipError, Result};
use crate::formats::{Opened, StoredNames};
use crate::json::{as_usize, read_json, Fields, Nulls};
use crate::kernels::Precision;
use crate::model::{
    Activation, ClipConfig, TextConfig, TextPooling, VisionConfig, VisionTowerConfig,
};
use crate::weights::{pytorch, safetensors, TensorStore};

pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const SAFETENSORS_FILE: &str = "model.safetensors";
pub(crate) const SAFETENSORS_INDEX_FILE: &str = "model.safetensors.index.json";
pub(crate) const PYTORCH_FILE: &str = "pytorch_model.bin";
pub(crate) const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// Buffers that published checkpoints carry but the model recomputes (`torch.arange`); skipped by name.
pub(crate) const HARMLESS_BUFFERS: [&str; 2] = [
    "text_model.embeddings.position_ids",
    "vision_model.embeddings.position_ids",
];

/// The `eos_token_id` of configs written before transformers PR #24773, which selects its legacy pooling rule
/// (the first maximum id).
const LEGACY_EOS_TOKEN_ID: usize = 2;

/// Reads a `CLIPConfig` JSON (`config.json` of a `CLIPModel`). Fields it does not give take transformers' defaults.
pub(crate) fn read_config(config_json: &Path) -> Result<ClipConfig> {
    let value = read_json(config_json)?;
    parse_config(&value).map_err(|reason| ClipError::Config {
        path: config_json.to_path_buf(),
        reason,
    })
}

/// [`read_config`] on parsed JSON; `Err` is a message naming the field.
pub(crate) fn parse_config(value: &Value) -> std::result::Result<ClipConfig, String> {
    let top = Fields::new("config", value, Nulls::Error)?;
    if let Some(model_type) = top.get("model_type")?.and_then(Value::as_str) {
        if model_type != "clip" {
            return Err(format!(
                "model_type is {model_type:?}, expected \"clip\" (a CLIPModel config)"
            ));
        }
    }
    let text = sub_config(value, "text_config")?;
    let vision = sub_config(value, "vision_config")?;
    let v = Fields::new("vision_config", &vision, Nulls::Error)?;
    let num_channels = v.usize("num_channels", Some(3))?;
    if num_channels != 3 {
        return Err(format!(
            "vision_config.num_channels is {num_channels}; only RGB (3) is supported"
        ));
    }
    let config = ClipConfig {
        vision: VisionTowerConfig::Vit(VisionConfig {
            image_size: v.square("image_size", 224)?,
            patch_size: v.square("patch_size", 32)?,
            width: v.usize("hidden_size", Some(768))?,
            layers: v.usize("num_hidden_layers", Some(12))?,
            heads: v.usize("num_attention_heads", Some(12))?,
            intermediate_size: v.usize("intermediate_size", Some(3072))?,
            activation: activation(&v)?,
            layer_norm_eps: v.f64("layer_norm_eps", 1e-5)?,
        }),
        text: parse_text(&Fields::new("text_config", &text, Nulls::Error)?)?,
        projection_dim: top.usize("projection_dim", Some(512))?,
        logit_scale_init: top.f64("logit_scale_init_value", 2.6592)? as f32,
    };
    config.validate()?;
    Ok(config)
}

/// A `CLIPTextConfig` (the `text_config` of a `CLIPConfig`, or a standalone text encoder's `config.json`).
fn parse_text(t: &Fields) -> std::result::Result<TextConfig, String> {
    Ok(TextConfig {
        vocab_size: t.usize("vocab_size", Some(49408))?,
        context_length: t.usize("max_position_embeddings", Some(77))?,
        width: t.usize("hidden_size", Some(512))?,
        layers: t.usize("num_hidden_layers", Some(12))?,
        heads: t.usize("num_attention_heads", Some(8))?,
        intermediate_size: t.usize("intermediate_size", Some(2048))?,
        activation: activation(t)?,
        layer_norm_eps: t.f64("layer_norm_eps", 1e-5)?,
        pooling: pooling(t)?,
    })
}

/// The fields of one tower's config. transformers builds the sub-config from `<name>_dict` alone when that is
/// given (published configs such as openai/clip-vit-large-patch14 carry it): defaults fill what it lacks and
/// `<name>` is overridden entirely. A null sub-config is built from defaults, as transformers does.
fn sub_config(top: &Value, name: &str) -> std::result::Result<Value, String> {
    for key in [format!("{name}_dict"), name.to_string()] {
        match top.get(&key) {
            None | Some(Value::Null) => continue,
            Some(Value::Object(map)) => return Ok(Value::Object(map.clone())),
            Some(_) => return Err(format!("{key} is not a JSON object")),
        }
    }
    Ok(Value::Object(Map::new()))
}

/// `hidden_act`; absent means transformers' documented default for CLIP towers, `quick_gelu`.
fn activation(f: &Fields) -> std::result::Result<Activation, String> {
    const KEY: &str = "hidden_act";
    match f.get(KEY)? {
        None => Ok(Activation::QuickGelu),
        Some(v) => v
            .as_str()
            .and_then(Activation::from_hf_name)
            .ok_or_else(|| {
                f.bad(
                    KEY,
                    "one of quick_gelu, gelu, gelu_new, gelu_pytorch_tanh",
                    v,
                )
            }),
    }
}

/// `eos_token_id` (default 49407): the legacy value 2 pools at the argmax id, as transformers does.
fn pooling(f: &Fields) -> std::result::Result<TextPooling, String> {
    const KEY: &str = "eos_token_id";
    let Some(v) = f.get(KEY)? else {
        return Ok(TextPooling::FirstEos(49407));
    };
    let single = match v {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    };
    match as_usize(single) {
        Some(LEGACY_EOS_TOKEN_ID) => Ok(TextPooling::Argmax),
        Some(n) => u32::try_from(n)
            .map(TextPooling::FirstEos)
            .map_err(|_| f.bad(KEY, "one token id", v)),
        None => Err(f.bad(KEY, "one token id", v)),
    }
}

/// A transformers `CLIPTextConfig` JSON (a diffusers `text_encoder/config.json`): the text architecture and
/// `projection_dim` (default 512), read by the same rules (and defaults) as the text part of a `CLIPConfig`.
pub(crate) fn read_text_config(path: &Path) -> Result<(TextConfig, usize)> {
    let value = read_json(path)?;
    let parse = || -> std::result::Result<(TextConfig, usize), String> {
        let t = Fields::new("config", &value, Nulls::Error)?;
        Ok((parse_text(&t)?, t.usize("projection_dim", Some(512))?))
    };
    parse().map_err(|reason| ClipError::Config {
        path: path.to_path_buf(),
        reason,
    })
}

/// Opens a directory's weights: `model.safetensors`, else the shards listed by `model.safetensors.index.json`,
/// else `pytorch_model.bin`.
pub(crate) fn open_weights(dir: &Path, precision: Precision) -> Result<TensorStore> {
    let files = weight_files(dir)?;
    match files.as_slice() {
        [pickle] if pickle.file_name().is_some_and(|n| n == PYTORCH_FILE) => {
            Ok(pytorch::open(pickle, precision)?.1)
        }
        shards => safetensors::open(shards, precision),
    }
}

/// The weight files of a directory, as [`open_weights`] reads them (the shards of an index, without the index).
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(SAFETENSORS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(SAFETENSORS_INDEX_FILE);
    if index.is_file() {
        return safetensors::shard_files(&index);
    }
    let pickle = dir.join(PYTORCH_FILE);
    if pickle.is_file() {
        return Ok(vec![pickle]);
    }
    Err(ClipError::Checkpoint {
        path: dir.to_path_buf(),
        reason: format!(
            "no {SAFETENSORS_FILE}, {SAFETENSORS_INDEX_FILE} or {PYTORCH_FILE} in this directory"
        ),
    })
}

/// The files that determine a Hugging Face model's outputs, in a fixed order: `config.json`, the weights and
/// (when sharded) the index.
pub(crate) fn model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let config = dir.join(CONFIG_FILE);
    if config.is_file() {
        files.push(config);
    }
    files.extend(weight_files(dir)?);
    let index = dir.join(SAFETENSORS_INDEX_FILE);
    if !dir.join(SAFETENSORS_FILE).is_file() && index.is_file() {
        files.push(index);
    }
    Ok(files)
}

/// Opens a Hugging Face `CLIPModel` directory (`config.json` + `model.safetensors` or `pytorch_model.bin`) in
/// `precision`.
pub(crate) fn open(dir: &Path, precision: Precision) -> Result<Opened> {
    let config = read_config(&dir.join(CONFIG_FILE))?;
    let store = open_weights(dir, precision)?;
    Ok(Opened {
        store,
        config,
        names: StoredNames::Model,
    })
}

/// Reads `preprocessor_config.json` (`CLIPImageProcessor` or the older `CLIPFeatureExtractor` format) into the
/// preprocessing parameters; `None` when the directory has no such file.
pub(crate) fn read_preprocessor_config(dir: &Path) -> Result<Option<PreprocessConfig>> {
    let path = dir.join(PREPROCESSOR_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let value = read_json(&path)?;
    let params = parse_preprocessor_config(&value).map_err(|reason| ClipError::Config {
        path: path.clone(),
        reason,
    })?;
    Ok(Some(params.into_config()))
}

/// What a `preprocessor_config.json` says about resizing and normalisation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreprocessorParams {
    /// The shorter side is resized to this (`size.shortest_edge`, or an integer `size`).
    pub resize: u32,
    /// Side of the centre crop (`crop_size`).
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl PreprocessorParams {
    fn into_config(self) -> PreprocessConfig {
        // OpenAI's pipeline resizes the shorter side to the crop size; CLIP checkpoints use one size for both.
        PreprocessConfig {
            size: self.crop,
            mean: self.mean,
            std: self.std,
        }
    }
}

/// Parses `preprocessor_config.json`; `Err` is a message naming the field. Missing fields take
/// `CLIPImageProcessor`'s defaults (224, OpenAI mean and std).
pub(crate) fn parse_preprocessor_config(
    value: &Value,
) -> std::result::Result<PreprocessorParams, String> {
    let top = value
        .as_object()
        .ok_or("the top level is not a JSON object")?;
    let s = Fields::new("preprocessor_config", value, Nulls::Absent)?;
    let side = |key: &str, v: &Value| -> std::result::Result<u32, String> {
        let n = match v {
            Value::Object(m) => match (m.get("shortest_edge"), m.get("height"), m.get("width")) {
                (Some(e), _, _) => as_usize(e),
                (None, Some(h), Some(w)) if as_usize(h).is_some() && as_usize(h) == as_usize(w) => {
                    as_usize(h)
                }
                _ => None,
            },
            other => as_usize(other),
        };
        n.filter(|&n| n > 0)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                s.bad(
                    key,
                    "a positive integer, {\"shortest_edge\": n} or {\"height\": n, \"width\": n}",
                    v,
                )
            })
    };
    // CLIPImageProcessor replaces a null size, crop or mean/std by its default, so null means the default here.
    let given = |key: &str| top.get(key).filter(|v| !v.is_null());
    let resize = match given("size") {
        None => 224,
        Some(v) => side("size", v)?,
    };
    let crop = match given("crop_size") {
        None => resize,
        Some(v) => side("crop_size", v)?,
    };
    for (key, n) in [("size", resize), ("crop_size", crop)] {
        if n > clip_preprocess::MAX_SIZE {
            return Err(format!(
                "preprocessor_config.{key} {n} is larger than the limit of {} pixels",
                clip_preprocess::MAX_SIZE
            ));
        }
    }
    if let Some(v) = given("resample") {
        // Pillow's filters: NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING. Every checkpoint is
        // preprocessed with OpenAI's bicubic pipeline (see ARCHITECTURE.md), but a value outside Pillow's set is a
        // broken config, not a choice.
        if as_usize(v).is_none_or(|n| n > 5) {
            return Err(s.bad("resample", "a Pillow filter number from 0 to 5", v));
        }
    }
    let triple = |key: &str, default: [f32; 3]| -> std::result::Result<[f32; 3], String> {
        let Some(v) = given(key) else {
            return Ok(default);
        };
        let values = match v {
            Value::Array(items) => items.iter().map(Value::as_f64).collect::<Option<Vec<_>>>(),
            // A single number applies to all channels, as in transformers.
            other => other.as_f64().map(|x| vec![x; 3]),
        };
        match values.as_deref() {
            Some(&[a, b, c]) => Ok([a as f32, b as f32, c as f32]),
            _ => Err(s.bad(key, "three numbers (one per RGB channel)", v)),
        }
    };
    let mean = triple("image_mean", OPENAI_MEAN)?;
    let std = triple("image_std", OPENAI_STD)?;
    PreprocessConfig {
        size: crop,
        mean,
        std,
    }
    .validate()
    .map_err(|e| format!("preprocessor_config: image_mean {mean:?} / image_std {std:?}: {e}"))?;
    Ok(PreprocessorParams {
        resize,
        crop,
        mean,
        std,
    })
}

/// A JSON number with the shortest decimal form of an f32 (`0.48145466`, not `0.48145464062690735`), so a
/// value read back as f32 is the same value.
fn f32_number(x: f32) -> Value {
    format!("{x}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn hf_activation(a: Activation) -> &'static str {
    match a {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
    }
}

/// The `config.json` of a transformers `CLIPModel` for `config`, which [`parse_config`] (and transformers) read
/// back as the same architecture. Only ViT image towers have a `CLIPModel` form.
pub(crate) fn config_json(config: &ClipConfig) -> std::result::Result<Value, String> {
    let VisionTowerConfig::Vit(v) = &config.vision else {
        return Err("a ModifiedResNet image tower has no Hugging Face CLIPModel form".into());
    };
    let t = &config.text;
    let eos = match t.pooling {
        TextPooling::Argmax => LEGACY_EOS_TOKEN_ID,
        TextPooling::FirstEos(id) => id as usize,
    };
    Ok(serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "dtype": "float32",
        "initializer_factor": 1.0,
        "logit_scale_init_value": f32_number(config.logit_scale_init),
        "projection_dim": config.projection_dim,
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": t.vocab_size,
            "max_position_embeddings": t.context_length,
            "hidden_size": t.width,
            "num_hidden_layers": t.layers,
            "num_attention_heads": t.heads,
            "intermediate_size": t.intermediate_size,
            "hidden_act": hf_activation(t.activation),
            "layer_norm_eps": t.layer_norm_eps,
            "bos_token_id": 49406,
            "eos_token_id": eos,
            "pad_token_id": 1,
            "projection_dim": config.projection_dim,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "num_channels": 3,
            "hidden_size": v.width,
            "num_hidden_layers": v.layers,
            "num_attention_heads": v.heads,
            "intermediate_size": v.intermediate_size,
            "hidden_act": hf_activation(v.activation),
            "layer_norm_eps": v.layer_norm_eps,
            "projection_dim": config.projection_dim,
        },
    }))
}

/// The `preprocessor_config.json` of a `CLIPImageProcessor` doing `config`'s resize, crop and normalisation.
pub(crate) fn preprocessor_json(config: &PreprocessConfig) -> Value {
    let triple = |v: [f32; 3]| Value::Array(v.iter().map(|&x| f32_number(x)).collect());
    serde_json::json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": true,
        "size": {"shortest_edge": config.size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": config.size, "width": config.size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": triple(config.mean),
        "image_std": triple(config.std),
        "do_convert_rgb": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vit(c: &ClipConfig) -> &VisionConfig {
        match &c.vision {
            VisionTowerConfig::Vit(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn written_configs_read_back_unchanged() {
        for value in [
            json!({}),
            json!({"text_config": {"eos_token_id": 2, "hidden_act": "gelu", "hidden_size": 64},
                   "vision_config": {"image_size": 336, "patch_size": 14, "hidden_act": "gelu_new"},
                   "projection_dim": 20, "logit_scale_init_value": 1.5}),
        ] {
            let config = parse_config(&value).unwrap();
            assert_eq!(
                parse_config(&config_json(&config).unwrap()).unwrap(),
                config
            );
        }
        let pre = PreprocessConfig {
            size: 96,
            ..PreprocessConfig::default()
        };
        let back = parse_preprocessor_config(&preprocessor_json(&pre)).unwrap();
        assert_eq!(back.into_config(), pre);
        // The shortest form of the f32 value, not its f64 expansion (0.48145466298103333).
        let written = preprocessor_json(&pre)["image_mean"][0].to_string();
        assert_eq!(written.parse::<f32>().unwrap(), OPENAI_MEAN[0]);
        assert!(written.len() <= 10, "{written}");
    }

    #[test]
    fn defaults_are_transformers_defaults() {
        let config = parse_config(&json!({})).unwrap();
        let c = &config;
        let v = vit(c);
        assert_eq!(
            (v.image_size, v.patch_size, v.width, v.layers, v.heads),
            (224, 32, 768, 12, 12)
        );
        assert_eq!(v.intermediate_size, 3072);
        assert_eq!(
            (
                c.text.vocab_size,
                c.text.context_length,
                c.text.width,
                c.text.layers
            ),
            (49408, 77, 512, 12)
        );
        assert_eq!(
            (c.text.heads, c.text.intermediate_size, c.text.pooling),
            (8, 2048, TextPooling::FirstEos(49407))
        );
        assert_eq!(
            (v.activation, c.text.activation),
            (Activation::QuickGelu, Activation::QuickGelu)
        );
        assert_eq!((v.layer_norm_eps, c.text.layer_norm_eps), (1e-5, 1e-5));
        assert_eq!(c.projection_dim, 512);
        assert!((c.logit_scale_init - 2.6592).abs() < 1e-6);
    }

    #[test]
    fn dict_overrides_whole_sub_config() {
        // transformers rebuilds text_config from text_config_dict plus defaults (checked with 5.23).
        let c = parse_config(&json!({
            "text_config": {"eos_token_id": 2, "hidden_size": 512, "hidden_act": "gelu"},
            "text_config_dict": {"hidden_size": 768},
            "vision_config": {"image_size": [336, 336], "patch_size": 14, "hidden_act": "gelu_new"},
            "vision_config_dict": null,
        }))
        .unwrap();
        assert_eq!(
            (c.text.width, c.text.pooling, c.text.activation),
            (768, TextPooling::FirstEos(49407), Activation::QuickGelu)
        );
        assert_eq!((vit(&c).image_size, vit(&c).patch_size), (336, 14));
        assert_eq!(vit(&c).activation, Activation::GeluTanh);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = parse_config(&json!({"text_config": {"hidden_act": "relu"}})).unwrap_err();
        assert!(err.contains("text_config.hidden_act"), "{err}");
        let err = parse_config(&json!({"vision_config": {"hidden_size": "big"}})).unwrap_err();
        assert!(err.contains("vision_config.hidden_size"), "{err}");
        let err =
            parse_config(&json!({"vision_config": {"hidden_size": 100, "num_attention_heads": 3}}))
                .unwrap_err();
        assert!(err.contains("multiple"), "{err}");
        let err = parse_config(&json!({"model_type": "siglip"})).unwrap_err();
        assert!(err.contains("siglip"), "{err}");
        assert!(parse_config(&json!([1, 2])).is_err());
        let c = parse_config(&json!({"text_config": {"eos_token_id": [7]}})).unwrap();
        assert_eq!(c.text.pooling, TextPooling::FirstEos(7));
        let c = parse_config(&json!({"text_config": {"eos_token_id": 2}})).unwrap();
        assert_eq!(c.text.pooling, TextPooling::Argmax);
        assert!(parse_config(&json!({"text_config": {"eos_token_id": [7, 8]}})).is_err());
    }

    #[test]
    fn preprocessor_formats() {
        // Published openai/clip-vit-base-patch32 (CLIPFeatureExtractor era): integers.
        let p = parse_preprocessor_config(&json!({"crop_size": 224, "size": 224})).unwrap();
        assert_eq!(
            (p.resize, p.crop, p.mean, p.std),
            (224, 224, OPENAI_MEAN, OPENAI_STD)
        );
        // CLIPImageProcessor: dicts.
        let p = parse_preprocessor_config(&json!({
            "crop_size": {"height": 336, "width": 336},
            "size": {"shortest_edge": 336},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }))
        .unwrap();
        assert_eq!(
            (p.resize, p.crop, p.mean, p.std),
            (336, 336, [0.5; 3], [0.5; 3])
        );
        assert!(
            parse_preprocessor_config(&json!({"crop_size": {"height": 3, "width": 4}})).is_err()
        );
        assert!(parse_preprocessor_config(&json!({"image_mean": [0.5, 0.5]})).is_err());
        assert!(parse_preprocessor_config(&json!({"image_std": [0.5, 0.0, 0.5]})).is_err());
    }

    /// The hostile-input campaign's configs: each refused before anything is allocated, naming the field.
    #[test]
    fn hostile_preprocessor_values_are_refused() {
        let err = |v: serde_json::Value| parse_preprocessor_config(&v).unwrap_err();
        let e = err(json!({"crop_size": {"height": 1000000, "width": 1000000}}));
        assert!(
            e.contains("crop_size 1000000 is larger than the limit of 4096"),
            "{e}"
        );
        let e = err(json!({"size": 100000}));
        assert!(e.contains("preprocessor_config.size"), "{e}");
        let e = err(json!({"image_std": [1e-45, 0.5, 0.5]}));
        assert!(e.contains("overflow float32"), "{e}");
        let e = err(json!({"image_mean": [f64::MAX, 0.5, 0.5]}));
        assert!(e.contains("mean must be a finite number"), "{e}");
        let e = err(json!({"resample": 99}));
        assert!(e.contains("preprocessor_config.resample is 99"), "{e}");
        assert!(parse_preprocessor_config(&json!({"resample": 3})).is_ok());
        // CLIPImageProcessor turns None into its defaults.
        let p = parse_preprocessor_config(&json!({"size": null, "image_std": null})).unwrap();
        assert_eq!((p.crop, p.std), (224, OPENAI_STD));
    }

    #[test]
    fn null_model_fields_are_errors_not_defaults() {
        let e = parse_config(&json!({"text_config": {"hidden_act": null}})).unwrap_err();
        assert_eq!(
            e,
            "text_config.hidden_act is null; give a value or leave the key out for the default"
        );
        let e = parse_config(&json!({"vision_config": {"image_size": null}})).unwrap_err();
        assert!(e.contains("vision_config.image_size is null"), "{e}");
        // A whole sub-config may be null: transformers then builds it from defaults.
        assert!(parse_config(&json!({"text_config": null})).is_ok());
    }
}
