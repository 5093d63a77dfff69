//! open_clip's architecture configs (`open_clip/model_configs/<name>.json`) and pretrained metadata
//! (`open_clip/pretrained.py`: hf-hub id or URL, mean, std, interpolation, resize mode, QuickGELU) for the families
//! this crate supports, as embedded data, and [`resolve_config`], which finds a config by name, file or inline
//! JSON (parsing one is `formats::open_clip`'s).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ClipError, Result};
use crate::formats::open_clip::{parse_config_file, PreprocessCfg};
use crate::model::ClipConfig;

/// The pretrained metadata of one `(architecture, tag)` pair.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PretrainedCfg {
    /// Hugging Face repository (`laion/CLIP-ViT-H-14-laion2B-s32B-b79K`), trailing slash removed.
    #[serde(default)]
    pub hf_hub: Option<String>,
    /// Direct download URL (OpenAI's releases, some early LAION ones).
    #[serde(default)]
    pub url: Option<String>,
    /// Mean, std, filter and resize mode these weights were trained with.
    #[serde(flatten)]
    pub preprocess: PreprocessCfg,
    /// Whether these weights were trained with QuickGELU (then the `-quickgelu` config must be used).
    #[serde(default)]
    pub quick_gelu: bool,
}

fn configs() -> &'static BTreeMap<String, Value> {
    static CONFIGS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        // Embedded data checked by this module's tests.
        serde_json::from_str(include_str!("../../configs/open_clip_models.json"))
            .unwrap_or_default()
    })
}

fn pretrained() -> &'static BTreeMap<String, BTreeMap<String, PretrainedCfg>> {
    static PRETRAINED: OnceLock<BTreeMap<String, BTreeMap<String, PretrainedCfg>>> =
        OnceLock::new();
    PRETRAINED.get_or_init(|| {
        let mut map: BTreeMap<String, BTreeMap<String, PretrainedCfg>> =
            serde_json::from_str(include_str!("../../configs/open_clip_pretrained.json"))
                .unwrap_or_default();
        for tags in map.values_mut() {
            for cfg in tags.values_mut() {
                if let Some(h) = &mut cfg.hf_hub {
                    *h = h.trim_end_matches('/').to_string();
                }
            }
        }
        map
    })
}

/// The supported open_clip architecture names (`ViT-B-32`, `ViT-B-32-quickgelu`, `RN50`, ...), sorted.
pub fn open_clip_model_names() -> Vec<&'static str> {
    configs().keys().map(String::as_str).collect()
}

/// open_clip's model config JSON for `name`.
pub fn open_clip_config(name: &str) -> Option<&'static Value> {
    configs().get(name)
}

/// The pretrained tags known for architecture `name` (`["openai", "laion2b_s34b_b79k", ...]`).
pub fn pretrained_tags(name: &str) -> Vec<&'static str> {
    pretrained()
        .get(name)
        .map(|t| t.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The metadata of pretrained weights `tag` for architecture `name`.
pub fn pretrained_cfg(name: &str, tag: &str) -> Option<&'static PretrainedCfg> {
    pretrained().get(name).and_then(|t| t.get(tag))
}

/// The model config named or given by `spec`: a supported architecture name (`"ViT-H-14"`), a path to a model
/// config JSON or to a Hub repository's `open_clip_config.json` (its `model_cfg`), or inline JSON. Also returns
/// the `preprocess_cfg` of an `open_clip_config.json`, when there is one.
pub fn resolve_config(spec: &str) -> Result<(ClipConfig, Option<PreprocessCfg>)> {
    let (origin, value) = if let Some(v) = open_clip_config(spec) {
        (PathBuf::from(spec), v.clone())
    } else if spec.trim_start().starts_with('{') {
        let origin = PathBuf::from("<inline JSON>");
        let v = serde_json::from_str(spec).map_err(|e| ClipError::Config {
            path: origin.clone(),
            reason: e.to_string(),
        })?;
        (origin, v)
    } else if Path::new(spec).is_file() {
        let path = PathBuf::from(spec);
        let v = crate::json::read_json(&path)?;
        (path, v)
    } else {
        return Err(ClipError::InvalidInput(format!(
            "unknown open_clip config {spec:?}: not a file, and not one of {}",
            open_clip_model_names().join(", ")
        )));
    };
    parse_config_file(&value).map_err(|reason| ClipError::Config {
        path: origin,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_twins_are_present() {
        for base in [
            "ViT-B-32",
            "ViT-B-16",
            "ViT-L-14",
            "ViT-H-14",
            "ViT-bigG-14",
            "RN50",
        ] {
            assert!(open_clip_config(base).is_some(), "{base}");
            let twin = open_clip_config(&format!("{base}-quickgelu")).unwrap();
            assert_eq!(twin["quick_gelu"], Value::Bool(true), "{base}");
        }
        let h = pretrained_cfg("ViT-H-14", "laion2b_s32b_b79k").unwrap();
        assert_eq!(
            h.hf_hub.as_deref(),
            Some("laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
        );
        assert_eq!(
            (
                h.preprocess.interpolation.as_str(),
                h.preprocess.resize_mode.as_str()
            ),
            ("bicubic", "shortest")
        );
        assert!(!h.quick_gelu);
        assert!(pretrained_cfg("RN50", "openai").unwrap().quick_gelu);
        assert!(pretrained_tags("ViT-bigG-14").contains(&"laion2b_s39b_b160k"));
        let p = h.preprocess.to_config(224).unwrap();
        assert_eq!(p.mean, crate::preprocess::OPENAI_MEAN);
    }

    fn arch(name: &str) -> ClipConfig {
        resolve_config(name).unwrap().0
    }

    #[test]
    fn parses_every_embedded_config() {
        use crate::model::Activation;
        for name in open_clip_model_names() {
            let a = resolve_config(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .0;
            let quick = name.ends_with("-quickgelu");
            assert_eq!(a.text.activation == Activation::QuickGelu, quick, "{name}");
        }
    }

    #[test]
    fn bigg_and_h_shapes() {
        use crate::model::{Activation, VisionTowerConfig};
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
            (g.text.width, g.text.heads, g.text.layers, g.projection_dim),
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
        use crate::formats::open_clip::parse_model_config;
        let mut v = open_clip_config("ViT-B-32").unwrap().clone();
        v["vision_cfg"]["ls_init_value"] = serde_json::json!(1e-5);
        let err = parse_model_config(&v).unwrap_err();
        assert!(err.contains("vision_cfg.ls_init_value"), "{err}");
        let mut v = open_clip_config("ViT-B-32").unwrap().clone();
        v["text_cfg"]["hf_model_name"] = serde_json::json!("roberta-base");
        assert!(parse_model_config(&v)
            .unwrap_err()
            .contains("hf_model_name"));
        let mut v = open_clip_config("ViT-B-32").unwrap().clone();
        v["quick_gelu"] = serde_json::json!("yes");
        assert!(parse_model_config(&v)
            .unwrap_err()
            .contains("config.quick_gelu"));
        let err = resolve_config("ViT-Q-99").unwrap_err().to_string();
        assert!(err.contains("ViT-Q-99") && !err.contains('\n'), "{err}");
    }
}
