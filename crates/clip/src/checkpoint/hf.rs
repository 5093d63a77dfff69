//! Hugging Face `CLIPModel` directories: `config.json` read the way transformers 5.23's `CLIPConfig` reads it
//! (defaults for missing fields, legacy `*_config_dict` overrides), weights from `model.safetensors` (also
//! sharded) or `pytorch_model.bin`, loaded strictly, and `preprocessor_config.json` as `CLIPImageProcessor`
//! reads its sizes, mean and std.

use std::path::{Path, PathBuf};

use candle_core::Device;
use clip_preprocess::{PreprocessConfig, OPENAI_MEAN, OPENAI_STD};
use serde_json::{Map, Value};

use crate::checkpoint::store::TensorStore;
use crate::error::{ClipError, Result};
use crate::model::config::{Activation, ClipConfig, TextConfig, VisionConfig};
use crate::model::ClipModel;
use crate::model::Precision;

pub const CONFIG_FILE: &str = "config.json";
pub const SAFETENSORS_FILE: &str = "model.safetensors";
pub const SAFETENSORS_INDEX_FILE: &str = "model.safetensors.index.json";
pub const PYTORCH_FILE: &str = "pytorch_model.bin";
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// Buffers that published checkpoints carry but the model recomputes (`torch.arange`); skipped by name.
const HARMLESS_BUFFERS: [&str; 2] = [
    "text_model.embeddings.position_ids",
    "vision_model.embeddings.position_ids",
];

type Fields = Map<String, Value>;

use crate::json::read_json;

/// Reads a `CLIPConfig` JSON (`config.json` of a `CLIPModel`). Fields it does not give take transformers' defaults.
pub fn read_hf_config(config_json: &Path) -> Result<ClipConfig> {
    let value = read_json(config_json)?;
    parse_hf_config(&value).map_err(|reason| ClipError::Config {
        path: config_json.to_path_buf(),
        reason,
    })
}

/// [`read_hf_config`] on parsed JSON; `Err` is a message naming the field.
pub fn parse_hf_config(value: &Value) -> std::result::Result<ClipConfig, String> {
    let top = value
        .as_object()
        .ok_or("the top level is not a JSON object")?;
    if let Some(model_type) = top.get("model_type").and_then(Value::as_str) {
        if model_type != "clip" {
            return Err(format!(
                "model_type is {model_type:?}, expected \"clip\" (a CLIPModel config)"
            ));
        }
    }
    let text = sub_config(top, "text_config")?;
    let vision = sub_config(top, "vision_config")?;
    let t = Section {
        name: "text_config",
        fields: &text,
    };
    let v = Section {
        name: "vision_config",
        fields: &vision,
    };
    let num_channels = v.usize("num_channels", 3)?;
    if num_channels != 3 {
        return Err(format!(
            "vision_config.num_channels is {num_channels}; only RGB (3) is supported"
        ));
    }
    let config = ClipConfig {
        vision: VisionConfig {
            image_size: v.square("image_size", 224)?,
            patch_size: v.square("patch_size", 32)?,
            width: v.usize("hidden_size", 768)?,
            layers: v.usize("num_hidden_layers", 12)?,
            heads: v.usize("num_attention_heads", 12)?,
            intermediate_size: v.usize("intermediate_size", 3072)?,
            activation: v.activation("hidden_act")?,
            layer_norm_eps: v.f64("layer_norm_eps", 1e-5)?,
        },
        text: TextConfig {
            vocab_size: t.usize("vocab_size", 49408)?,
            context_length: t.usize("max_position_embeddings", 77)?,
            width: t.usize("hidden_size", 512)?,
            layers: t.usize("num_hidden_layers", 12)?,
            heads: t.usize("num_attention_heads", 8)?,
            intermediate_size: t.usize("intermediate_size", 2048)?,
            activation: t.activation("hidden_act")?,
            layer_norm_eps: t.f64("layer_norm_eps", 1e-5)?,
            eos_token_id: t.eos_token_id()?,
        },
        projection_dim: Section {
            name: "config",
            fields: top,
        }
        .usize("projection_dim", 512)?,
        logit_scale_init: Section {
            name: "config",
            fields: top,
        }
        .f64("logit_scale_init_value", 2.6592)? as f32,
    };
    config.validate()?;
    Ok(config)
}

/// The fields of one tower's config. transformers builds the sub-config from `<name>_dict` alone when that is
/// given (published configs such as openai/clip-vit-large-patch14 carry it): defaults fill what it lacks and
/// `<name>` is overridden entirely.
fn sub_config(top: &Fields, name: &str) -> std::result::Result<Fields, String> {
    for key in [format!("{name}_dict"), name.to_string()] {
        match top.get(&key) {
            None | Some(Value::Null) => continue,
            Some(Value::Object(map)) => return Ok(map.clone()),
            Some(_) => return Err(format!("{key} is not a JSON object")),
        }
    }
    Ok(Fields::new())
}

struct Section<'a> {
    name: &'a str,
    fields: &'a Fields,
}

impl Section<'_> {
    /// The value of `key`, `None` when absent (then transformers' default applies). An explicit `null` is an
    /// error: transformers passes `None` on and fails when it builds the model (`ACT2FN[None]`, `None * 4`).
    fn get(&self, key: &str) -> std::result::Result<Option<&Value>, String> {
        match self.fields.get(key) {
            Some(Value::Null) => Err(format!(
                "{}.{key} is null; give a value or leave the key out for the default",
                self.name
            )),
            other => Ok(other),
        }
    }

    fn bad(&self, key: &str, what: &str, value: &Value) -> String {
        format!("{}.{key} is {value}, expected {what}", self.name)
    }

    fn usize(&self, key: &str, default: usize) -> std::result::Result<usize, String> {
        match self.get(key)? {
            None => Ok(default),
            Some(v) => as_usize(v).ok_or_else(|| self.bad(key, "a non-negative integer", v)),
        }
    }

    fn f64(&self, key: &str, default: f64) -> std::result::Result<f64, String> {
        match self.get(key)? {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.bad(key, "a number", v)),
        }
    }

    /// An image or patch size: an integer, or `[height, width]` with equal sides.
    fn square(&self, key: &str, default: usize) -> std::result::Result<usize, String> {
        let Some(v) = self.get(key)? else {
            return Ok(default);
        };
        if let Some(n) = as_usize(v) {
            return Ok(n);
        }
        match v
            .as_array()
            .map(|a| a.iter().map(as_usize).collect::<Option<Vec<_>>>())
        {
            Some(Some(sides)) if sides.len() == 2 && sides[0] == sides[1] => Ok(sides[0]),
            _ => Err(self.bad(key, "an integer or [n, n] (square inputs only)", v)),
        }
    }

    /// `hidden_act`; absent means transformers' documented default for CLIP towers, `quick_gelu`.
    fn activation(&self, key: &str) -> std::result::Result<Activation, String> {
        match self.get(key)? {
            None => Ok(Activation::QuickGelu),
            Some(v) => v
                .as_str()
                .and_then(Activation::from_hf_name)
                .ok_or_else(|| {
                    self.bad(
                        key,
                        "one of quick_gelu, gelu, gelu_new, gelu_pytorch_tanh",
                        v,
                    )
                }),
        }
    }

    fn eos_token_id(&self) -> std::result::Result<u32, String> {
        const KEY: &str = "eos_token_id";
        let Some(v) = self.get(KEY)? else {
            return Ok(49407);
        };
        let single = match v {
            Value::Array(items) if items.len() == 1 => &items[0],
            other => other,
        };
        as_usize(single)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.bad(KEY, "one token id", v))
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// Opens a directory's weights: `model.safetensors`, else the shards listed by `model.safetensors.index.json`,
/// else `pytorch_model.bin`.
pub fn open_weights(dir: &Path, device: &Device) -> Result<TensorStore> {
    let single = dir.join(SAFETENSORS_FILE);
    if single.is_file() {
        return TensorStore::open_safetensors(&[single], device);
    }
    let index = dir.join(SAFETENSORS_INDEX_FILE);
    if index.is_file() {
        let shards = shard_files(&index)?;
        return TensorStore::open_safetensors(&shards, device);
    }
    let pickle = dir.join(PYTORCH_FILE);
    if pickle.is_file() {
        return Ok(crate::checkpoint::torchscript::open_archive(&pickle, device)?.1);
    }
    Err(ClipError::Checkpoint {
        path: dir.to_path_buf(),
        reason: format!(
            "no {SAFETENSORS_FILE}, {SAFETENSORS_INDEX_FILE} or {PYTORCH_FILE} in this directory"
        ),
    })
}

/// The shard files named by a safetensors index's `weight_map`, each once, in a stable order.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let value = read_json(index).map_err(|e| match e {
        ClipError::Config { path, reason } => ClipError::Checkpoint { path, reason },
        other => other,
    })?;
    let bad = |reason: &str| ClipError::Checkpoint {
        path: index.to_path_buf(),
        reason: reason.to_string(),
    };
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no weight_map object"))?;
    let mut files = std::collections::BTreeSet::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| bad("weight_map values must be file names"))?;
        // Shards live beside the index; refuse paths that would leave the directory.
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(bad(&format!(
                "shard name {file:?} is not a plain file name"
            )));
        }
        files.insert(file.to_string());
    }
    let dir = index.parent().unwrap_or(Path::new("."));
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Builds a [`ClipModel`] from a store holding a `CLIPModel` state dict, then rejects leftover tensors.
pub fn model_from_store(store: &TensorStore, config: ClipConfig) -> Result<ClipModel> {
    let model = ClipModel::load(&store.root(), config)?;
    for name in HARMLESS_BUFFERS {
        store.skip(name);
    }
    store.finish()?;
    Ok(model)
}

/// Loads a Hugging Face `CLIPModel` directory (`config.json` + `model.safetensors` or `pytorch_model.bin`),
/// its linear layers packed for `precision`.
pub fn load_hf_model(dir: &Path, device: &Device, precision: Precision) -> Result<ClipModel> {
    let config = read_hf_config(&dir.join(CONFIG_FILE))?;
    let store = open_weights(dir, device)?;
    store.set_precision(precision);
    model_from_store(&store, config)
}

/// Reads `preprocessor_config.json` (`CLIPImageProcessor` or the older `CLIPFeatureExtractor` format) into the
/// preprocessing parameters; `None` when the directory has no such file.
pub fn read_preprocessor_config(dir: &Path) -> Result<Option<PreprocessConfig>> {
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
pub struct PreprocessorParams {
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
pub fn parse_preprocessor_config(value: &Value) -> std::result::Result<PreprocessorParams, String> {
    let top = value
        .as_object()
        .ok_or("the top level is not a JSON object")?;
    let s = Section {
        name: "preprocessor_config",
        fields: top,
    };
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
        // preprocessed with OpenAI's bicubic pipeline (see DESIGN.md), but a value outside Pillow's set is a
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_transformers_defaults() {
        let c = parse_hf_config(&json!({})).unwrap();
        assert_eq!(
            (
                c.vision.image_size,
                c.vision.patch_size,
                c.vision.width,
                c.vision.layers,
                c.vision.heads
            ),
            (224, 32, 768, 12, 12)
        );
        assert_eq!(c.vision.intermediate_size, 3072);
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
            (c.text.heads, c.text.intermediate_size, c.text.eos_token_id),
            (8, 2048, 49407)
        );
        assert_eq!(
            (c.vision.activation, c.text.activation),
            (Activation::QuickGelu, Activation::QuickGelu)
        );
        assert_eq!(
            (c.vision.layer_norm_eps, c.text.layer_norm_eps),
            (1e-5, 1e-5)
        );
        assert_eq!(c.projection_dim, 512);
        assert!((c.logit_scale_init - 2.6592).abs() < 1e-6);
    }

    #[test]
    fn dict_overrides_whole_sub_config() {
        // transformers rebuilds text_config from text_config_dict plus defaults (checked with 5.23).
        let c = parse_hf_config(&json!({
            "text_config": {"eos_token_id": 2, "hidden_size": 512, "hidden_act": "gelu"},
            "text_config_dict": {"hidden_size": 768},
            "vision_config": {"image_size": [336, 336], "patch_size": 14, "hidden_act": "gelu_new"},
            "vision_config_dict": null,
        }))
        .unwrap();
        assert_eq!(
            (c.text.width, c.text.eos_token_id, c.text.activation),
            (768, 49407, Activation::QuickGelu)
        );
        assert_eq!((c.vision.image_size, c.vision.patch_size), (336, 14));
        assert_eq!(c.vision.activation, Activation::GeluTanh);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = parse_hf_config(&json!({"text_config": {"hidden_act": "relu"}})).unwrap_err();
        assert!(err.contains("text_config.hidden_act"), "{err}");
        let err = parse_hf_config(&json!({"vision_config": {"hidden_size": "big"}})).unwrap_err();
        assert!(err.contains("vision_config.hidden_size"), "{err}");
        let err = parse_hf_config(
            &json!({"vision_config": {"hidden_size": 100, "num_attention_heads": 3}}),
        )
        .unwrap_err();
        assert!(err.contains("multiple"), "{err}");
        let err = parse_hf_config(&json!({"model_type": "siglip"})).unwrap_err();
        assert!(err.contains("siglip"), "{err}");
        assert!(parse_hf_config(&json!([1, 2])).is_err());
        let c = parse_hf_config(&json!({"text_config": {"eos_token_id": [7]}})).unwrap();
        assert_eq!(c.text.eos_token_id, 7);
        assert!(parse_hf_config(&json!({"text_config": {"eos_token_id": [7, 8]}})).is_err());
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
        let e = parse_hf_config(&json!({"text_config": {"hidden_act": null}})).unwrap_err();
        assert_eq!(
            e,
            "text_config.hidden_act is null; give a value or leave the key out for the default"
        );
        let e = parse_hf_config(&json!({"vision_config": {"image_size": null}})).unwrap_err();
        assert!(e.contains("vision_config.image_size is null"), "{e}");
        // A whole sub-config may be null: transformers then builds it from defaults.
        assert!(parse_hf_config(&json!({"text_config": null})).is_ok());
    }
}
